package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/weftmesh/weft/internal/testenv"
)

// echoServer answers UnaryCall with its own name, so the client sees which
// backend (subset) served each request.
type echoServer struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (e *echoServer) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: e.name}, nil
}

func startEcho(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, &echoServer{name: name})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().(*net.TCPAddr).Port
}

const echoServices = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

const echoHeaderRoute = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {x-variant: {exact: canary}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
`

const echoWeighted = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route:
    - {destination: {host: echo, subset: v1}, weight: 50}
    - {destination: {host: echo, subset: v2}, weight: 50}
`

// TestProxylessGRPC drives grpc-go's real xDS client (the xds:/// resolver)
// against weftd and checks that VirtualService and DestinationRule decide
// where each call lands.
func TestProxylessGRPC(t *testing.T) {
	v1, v2 := startEcho(t, "v1"), startEcho(t, "v2")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"echo.yaml":    fmt.Sprintf(echoServices, v1, v2),
		"echo-vs.yaml": echoHeaderRoute,
	}})

	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local",
           "metadata": {"NAMESPACE": "default", "GENERATOR": "grpc"}}
}`, wd.XDSAddr.String())
	res, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xds resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///echo.default.svc.cluster.local:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	call := func(md ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if len(md) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
		}
		r, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		if err != nil {
			return "", err
		}
		return r.GetHostname(), nil
	}
	count := func(n int, md ...string) (map[string]int, error) {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			h, err := call(md...)
			if err != nil {
				return got, err
			}
			got[h]++
		}
		return got, nil
	}

	got, err := count(20)
	if err != nil {
		t.Fatalf("call without header: %v", err)
	}
	if got["v1"] != 20 {
		t.Fatalf("default route: want all 20 calls on v1, got %v", got)
	}
	got, err = count(20, "x-variant", "canary")
	if err != nil {
		t.Fatalf("call with header: %v", err)
	}
	if got["v2"] != 20 {
		t.Fatalf("header route: want all 20 calls on v2, got %v", got)
	}

	// Change the VirtualService on disk: weftd picks it up and pushes; the
	// client splits 50/50 between subsets.
	testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "echo-vs.yaml"), echoWeighted)
	testenv.Eventually(t, 15*time.Second, func() error {
		got, err := count(200)
		if err != nil {
			return err
		}
		if got["v1"] < 60 || got["v2"] < 60 {
			return fmt.Errorf("want a roughly even split over 200 calls, got %v", got)
		}
		return nil
	})

	// The proxy shows up in weftd's status as a gRPC proxy, in sync.
	testenv.Eventually(t, 5*time.Second, func() error {
		for _, p := range wd.XDS().Status() {
			if strings.HasPrefix(p.ID, "sidecar~127.0.0.1~client-1") {
				if p.Type != "grpc" {
					return fmt.Errorf("proxy type %q, want grpc", p.Type)
				}
				return nil
			}
		}
		return fmt.Errorf("client not in xDS status")
	})
}
