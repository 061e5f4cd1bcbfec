package upstream

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/workloadmeta"
)

// TestEndpointWorkload: the workload weftd describes in an endpoint's
// filter_metadata["istio"] is recorded per endpoint for telemetry, with a
// key that is the same in the next EDS version.
func TestEndpointWorkload(t *testing.T) {
	c, err := NewCluster(&clusterv3.Cluster{Name: "outbound|9080||reviews.default.svc.cluster.local",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep := func(ip string, istio map[string]any) *endpointv3.LbEndpoint {
		lb := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}}}}}
		if istio != nil {
			s, err := structpb.NewStruct(istio)
			if err != nil {
				t.Fatal(err)
			}
			lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": s}}
		}
		return lb
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		ep("10.0.0.1", map[string]any{"workload": "reviews-v2;default;reviews;v2;", "app": "reviews", "version": "v2"}),
		ep("10.0.0.2", map[string]any{"version": "v3"}),
		ep("10.0.0.3", nil),
		ep("10.0.0.4", map[string]any{"workload": "not the workload form"}),
	}}}}
	set, err := NewEndpointSet(c, cla, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []*workloadmeta.Workload{
		{Name: "reviews-v2", Namespace: "default", App: "reviews", Version: "v2", CanonicalService: "reviews", CanonicalRevision: "v2", Cluster: "unknown"},
		{Name: "unknown", Namespace: "unknown", App: "unknown", Version: "v3", CanonicalService: "unknown", CanonicalRevision: "v3", Cluster: "unknown"},
		nil,
		nil,
	}
	for i, e := range set.all {
		switch {
		case (e.Workload == nil) != (want[i] == nil):
			t.Errorf("%s: workload %+v, want %+v", e.Addr, e.Workload, want[i])
		case e.Workload != nil && *e.Workload != *want[i]:
			t.Errorf("%s: workload %+v, want %+v", e.Addr, *e.Workload, *want[i])
		case (e.Workload == nil) != (e.WorkloadKey == ""):
			t.Errorf("%s: key %q with workload %v", e.Addr, e.WorkloadKey, e.Workload)
		}
	}
	again, err := NewEndpointSet(c, cla, set)
	if err != nil {
		t.Fatal(err)
	}
	if again.all[0].WorkloadKey != set.all[0].WorkloadKey || set.all[0].WorkloadKey == set.all[1].WorkloadKey {
		t.Errorf("keys: %q then %q; other workload %q", set.all[0].WorkloadKey, again.all[0].WorkloadKey, set.all[1].WorkloadKey)
	}
}
