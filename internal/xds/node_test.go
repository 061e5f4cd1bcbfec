package xds

import (
	"errors"
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProxyFromNode(t *testing.T) {
	tests := []struct {
		name    string
		node    *corev3.Node
		want    *model.Proxy
		wantErr bool // a *NodeMetadataError alongside a usable proxy
	}{
		{
			name: "metadata wins over id",
			node: &corev3.Node{Id: "sidecar~10.1.1.1~reviews-1.idns~idns.svc.cluster.local", Metadata: mustStruct(t, map[string]any{
				"NAMESPACE": "bookinfo", "SERVICE_ACCOUNT": "reviews", "INSTANCE_IPS": "10.2.2.2, 10.2.2.3",
				"LABELS": map[string]any{"app": "reviews", "version": "v1"}, "WORKLOAD_NAME": "reviews-v1", "CLUSTER_ID": "c1",
			})},
			want: &model.Proxy{ID: "sidecar~10.1.1.1~reviews-1.idns~idns.svc.cluster.local", Type: model.ProxySidecar,
				Namespace: "bookinfo", ServiceAccount: "reviews", Labels: map[string]string{"app": "reviews", "version": "v1"},
				IPs: []string{"10.2.2.2", "10.2.2.3"}, Metadata: map[string]string{"CLUSTER_ID": "c1"},
				Workload: config.Key{Kind: config.KindWorkloadEntry, Namespace: "bookinfo", Name: "reviews-v1"}},
		},
		{
			name: "istio sidecar id only",
			node: &corev3.Node{Id: "sidecar~10.1.1.1~reviews-1.ns1~ns1.svc.cluster.local"},
			want: &model.Proxy{ID: "sidecar~10.1.1.1~reviews-1.ns1~ns1.svc.cluster.local", Type: model.ProxySidecar, Namespace: "ns1", IPs: []string{"10.1.1.1"}},
		},
		{
			name: "istio router id, namespace from name",
			node: &corev3.Node{Id: "router~10.0.0.9~gw-abc.istio-system~"},
			want: &model.Proxy{ID: "router~10.0.0.9~gw-abc.istio-system~", Type: model.ProxyRouter, Namespace: "istio-system", IPs: []string{"10.0.0.9"}},
		},
		{
			name: "grpc generator metadata",
			node: &corev3.Node{Id: "x", Metadata: mustStruct(t, map[string]any{"GENERATOR": "grpc", "NAMESPACE": "a"})},
			want: &model.Proxy{ID: "x", Type: model.ProxyGRPC, Namespace: "a", Metadata: map[string]string{"GENERATOR": "grpc"}},
		},
		{
			name: "grpc-go user agent",
			node: &corev3.Node{Id: "x", UserAgentName: "grpc-go"},
			want: &model.Proxy{ID: "x", Type: model.ProxyGRPC, Namespace: "default"},
		},
		{
			name: "grpc-java user agent",
			node: &corev3.Node{Id: "sidecar~1.2.3.4~a.b~b.svc.cluster.local", UserAgentName: "grpc-java"},
			want: &model.Proxy{ID: "sidecar~1.2.3.4~a.b~b.svc.cluster.local", Type: model.ProxyGRPC, Namespace: "b", IPs: []string{"1.2.3.4"}},
		},
		{
			name: "envoy with plain id",
			node: &corev3.Node{Id: "my-proxy", UserAgentName: "envoy"},
			want: &model.Proxy{ID: "my-proxy", Type: model.ProxySidecar, Namespace: "default"},
		},
		{
			name: "malformed metadata falls back to defaults",
			node: &corev3.Node{Id: "bad", Metadata: mustStruct(t, map[string]any{
				"NAMESPACE": 42.0, "LABELS": "app=x", "INSTANCE_IPS": "not-an-ip,10.0.0.1", "OTHER": []any{"a", 1.0},
			})},
			want: &model.Proxy{ID: "bad", Type: model.ProxySidecar, Namespace: "default", IPs: []string{"10.0.0.1"},
				Metadata: map[string]string{"OTHER": `["a",1]`}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProxyFromNode(tt.node)
			var me *NodeMetadataError
			if tt.wantErr != errors.As(err, &me) || (!tt.wantErr && err != nil) {
				t.Fatalf("err = %v, want metadata error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestProxyFromNodeNoID(t *testing.T) {
	for _, n := range []*corev3.Node{nil, {}, {Cluster: "c"}} {
		if p, err := ProxyFromNode(n); !errors.Is(err, ErrNoNodeID) || p != nil {
			t.Errorf("ProxyFromNode(%v) = %v, %v; want nil, ErrNoNodeID", n, p, err)
		}
	}
}

func TestClassKeyIgnoresIDAndPrivateMetadata(t *testing.T) {
	a := &model.Proxy{ID: "a", Namespace: "ns", Labels: map[string]string{"app": "x"}, Metadata: map[string]string{"POD_NAME": "a-1", "CLUSTER_ID": "c"}}
	b := &model.Proxy{ID: "b", Namespace: "ns", Labels: map[string]string{"app": "x"}, Metadata: map[string]string{"POD_NAME": "b-1", "CLUSTER_ID": "c"}}
	c := &model.Proxy{ID: "c", Namespace: "ns", Labels: map[string]string{"app": "y"}}
	if ClassKey(a, DefaultClassMetadata) != ClassKey(b, DefaultClassMetadata) {
		t.Error("proxies differing only in id and pod name should share a class")
	}
	if ClassKey(a, DefaultClassMetadata) == ClassKey(c, DefaultClassMetadata) {
		t.Error("proxies with different labels must not share a class")
	}
	rep := classProxy(a, DefaultClassMetadata)
	if rep.ID != "" || rep.Metadata["POD_NAME"] != "" || rep.Metadata["CLUSTER_ID"] != "c" {
		t.Errorf("class proxy leaks per-proxy fields: %+v", rep)
	}
}
