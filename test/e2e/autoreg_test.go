package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/translate"
	"github.com/weftmesh/weft/internal/xds"
)

const webGroupYAML = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: web, namespace: shop}
spec:
  template:
    serviceAccount: web-sa
    labels: {app: web}
    ports: {http: 8080}
  probe:
    httpGet: {path: /ready, port: 8080}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: web}}
`

const webHost = "web.shop.svc.cluster.local"

// vmStream is a host's proxy: a real ADS stream on weftd's secure port,
// authenticated with a bootstrap token.
type vmStream struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	node   *corev3.Node
	resps  chan *discovery.DiscoveryResponse
	errs   chan error
}

func dialVM(t *testing.T, wd *testenv.Weftd, token, group string) *vmStream {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(wd.CA().TrustBundlePEM())
	conn, err := grpc.NewClient(wd.SecureAddr.String(), grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{
		xds.MetaNamespace: "shop", xds.MetaAutoRegisterGroup: group, xds.MetaInstanceIPs: "10.77.0.5",
		xds.MetaLabels: map[string]any{"host": "vm-1"},
	})
	v := &vmStream{t: t, stream: st, cancel: cancel, node: &corev3.Node{Id: "sidecar~10.77.0.5~vm-1.shop~shop.svc.cluster.local", Metadata: md},
		resps: make(chan *discovery.DiscoveryResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				v.errs <- err
				return
			}
			v.resps <- r
		}
	}()
	return v
}

func (v *vmStream) send(req *discovery.DiscoveryRequest) {
	v.t.Helper()
	req.Node = v.node
	if err := v.stream.Send(req); err != nil {
		v.t.Fatal(err)
	}
}

func (v *vmStream) recv() (*discovery.DiscoveryResponse, error) {
	select {
	case r := <-v.resps:
		return r, nil
	case err := <-v.errs:
		return nil, err
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("no response in 10s")
	}
}

// waitWebHealth reads (and ACKs) responses until an EDS response gives the
// host's endpoint in the web service the wanted health status.
func (v *vmStream) waitWebHealth(want string) {
	v.t.Helper()
	got := "no EDS response"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r, err := v.recv()
		if err != nil {
			v.t.Fatalf("stream: %v (last EDS health %s, want %s)", err, got, want)
		}
		v.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
		if r.GetTypeUrl() != translate.EndpointType {
			continue
		}
		got = "endpoint absent"
		for _, a := range r.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				v.t.Fatal(err)
			}
			if !strings.Contains(cla.GetClusterName(), webHost) {
				continue
			}
			for _, loc := range cla.GetEndpoints() {
				for _, ep := range loc.GetLbEndpoints() {
					if ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == "10.77.0.5" {
						got = ep.GetHealthStatus().String()
					}
				}
			}
		}
		if got == want {
			return
		}
	}
	v.t.Fatalf("EDS health of the host: %s, want %s", got, want)
}

func modelHealth(wd *testenv.Weftd) (model.Health, error) {
	m := wd.Model()
	if m == nil {
		return 0, fmt.Errorf("no model")
	}
	for _, e := range m.Endpoints(webHost) {
		if e.Address == "10.77.0.5" {
			return e.Health, nil
		}
	}
	return 0, fmt.Errorf("endpoint 10.77.0.5 not in %s", webHost)
}

func wantModelHealth(t *testing.T, wd *testenv.Weftd, want model.Health) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		h, err := modelHealth(wd)
		if err != nil {
			return err
		}
		if h != want {
			return fmt.Errorf("health %v, want %v", h, want)
		}
		return nil
	})
}

// TestHostAutoRegistration walks a host through joining: a token bound to
// the WorkloadGroup, xDS on the secure port with AUTO_REGISTER_GROUP, the
// WorkloadEntry in weftctl and in the service's endpoints, health reports
// driving EDS, and removal after the grace period once the host is gone.
func TestHostAutoRegistration(t *testing.T) {
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{
		ConfigFiles:           map[string]string{"web.yaml": webGroupYAML},
		AutoregistrationGrace: 500 * time.Millisecond,
	})
	token, err := wd.CA().IssueToken(ca.TokenSpec{Namespace: "shop", ServiceAccount: "web-sa", WorkloadGroup: "web", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	// A token bound to another group is refused with a clear message.
	other, err := wd.CA().IssueToken(ca.TokenSpec{Namespace: "shop", ServiceAccount: "web-sa", WorkloadGroup: "db", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	bad := dialVM(t, wd, other, "web")
	bad.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType})
	if _, err := bad.recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `bound to WorkloadGroup "db"`) {
		t.Fatalf("token of another group: want PermissionDenied, got %v", err)
	}

	vm := dialVM(t, wd, token, "web")
	vm.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType})
	if r, err := vm.recv(); err != nil || r.GetTypeUrl() != translate.ClusterType {
		t.Fatalf("CDS: %v %v", r.GetTypeUrl(), err)
	} else {
		vm.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
	}

	testenv.Eventually(t, 10*time.Second, func() error {
		code, out, errOut := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
		if code != 0 || !strings.Contains(out, "web-10-77-0-5") || !strings.Contains(out, "autoregistration") {
			return fmt.Errorf("weftctl get workloadentry: %d\n%s%s", code, out, errOut)
		}
		return nil
	})
	code, out, _ := weftctl(t, wd, "", "get", "we", "web-10-77-0-5", "-n", "shop", "-o", "yaml")
	for _, want := range []string{"address: 10.77.0.5", "serviceAccount: web-sa", "app: web", "host: vm-1", "istio.io/autoRegistrationGroup: web"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("entry YAML lacks %q:\n%s", want, out)
		}
	}

	// The group has a probe: the endpoint waits for the first report.
	wantModelHealth(t, wd, model.Unhealthy)
	vm.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType})
	vm.waitWebHealth("UNHEALTHY")
	vm.send(&discovery.DiscoveryRequest{TypeUrl: xds.HealthInfoType})
	wantModelHealth(t, wd, model.Healthy)
	vm.waitWebHealth("HEALTHY")
	vm.send(&discovery.DiscoveryRequest{TypeUrl: xds.HealthInfoType, ErrorDetail: &rpcstatus.Status{Code: int32(codes.Internal), Message: "GET /ready: 503"}})
	wantModelHealth(t, wd, model.Unhealthy)
	vm.waitWebHealth("UNHEALTHY")
	// Operators see the health and the last probe error in weftctl.
	testenv.Eventually(t, 5*time.Second, func() error {
		code, out, _ := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
		if code != 0 || !strings.Contains(out, "HEALTH") || !strings.Contains(out, "unhealthy: GET /ready: 503") || !strings.Contains(out, "10.77.0.5") {
			return fmt.Errorf("weftctl get workloadentry does not show the probe failure:\n%s", out)
		}
		return nil
	})

	// The host goes away: the entry outlives it for the grace period only.
	vm.cancel()
	time.Sleep(100 * time.Millisecond)
	if _, err := modelHealth(wd); err != nil {
		t.Fatalf("entry removed before the grace period: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		code, out, _ := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
		if code != 0 || strings.Contains(out, "web-10-77-0-5") {
			return fmt.Errorf("entry still listed:\n%s", out)
		}
		if _, err := modelHealth(wd); err == nil {
			return fmt.Errorf("endpoint still in the model")
		}
		return nil
	})
}
