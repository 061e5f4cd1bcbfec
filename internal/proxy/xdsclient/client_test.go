package xdsclient

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/proxy/runtime"
)

const nodeID = "sidecar~10.0.0.5~productpage-v1-abc.default~default.svc.cluster.local"

// xdsServer is go-control-plane's real ADS server on loopback, recording
// every request it receives.
type xdsServer struct {
	addr  string
	cache cachev3.SnapshotCache
	grpc  *grpc.Server

	mu    sync.Mutex
	sotw  []*discoveryv3.DiscoveryRequest
	delta []*discoveryv3.DeltaDiscoveryRequest
}

func startServer(t *testing.T, addr string, cache cachev3.SnapshotCache) *xdsServer {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the previous server's port may take a moment to free
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &xdsServer{addr: lis.Addr().String(), cache: cache, grpc: grpc.NewServer()}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			s.sotw = append(s.sotw, r)
			s.mu.Unlock()
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			s.mu.Lock()
			s.delta = append(s.delta, r)
			s.mu.Unlock()
			return nil
		},
	}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, serverv3.NewServer(context.Background(), cache, cb))
	go s.grpc.Serve(lis)
	t.Cleanup(s.grpc.Stop)
	return s
}

// requests returns (typeURL, version/initial versions, nonce, error detail)
// summaries of what the server received.
type seenRequest struct {
	typeURL, version, nonce, errDetail string
	initialVersions                    map[string]string
}

func (s *xdsServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []seenRequest
	for _, r := range s.sotw {
		out = append(out, seenRequest{r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), nil})
	}
	for _, r := range s.delta {
		out = append(out, seenRequest{r.GetTypeUrl(), "", r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetInitialResourceVersions()})
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func setSnapshot(t *testing.T, c cachev3.SnapshotCache, s *cachev3.Snapshot) {
	t.Helper()
	if err := c.SetSnapshot(context.Background(), nodeID, s); err != nil {
		t.Fatal(err)
	}
}

func allACKed(c *Client, version string) bool {
	st := c.Status()
	for _, tu := range typeOrder {
		if st.Types[tu].Version != version {
			return false
		}
	}
	return true
}

func TestADS(t *testing.T) {
	for _, mode := range []struct {
		name string
		sotw bool
	}{{"delta", false}, {"sotw", true}} {
		t.Run(mode.name, func(t *testing.T) { testADS(t, mode.sotw) })
	}
}

func testADS(t *testing.T, sotw bool) {
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	b := bookinfo()
	setSnapshot(t, cache, b.snapshot("v1"))
	srv := startServer(t, "127.0.0.1:0", cache)

	holder := runtime.NewHolder(nil)
	var lastWarming atomic.Pointer[map[string][]string]
	var sawWarming atomic.Bool
	c, err := New(Config{
		ServerAddr:      srv.addr,
		Node:            &corev3.Node{Id: nodeID, Cluster: "productpage.default"},
		StateOfTheWorld: sotw,
		Backoff:         Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Apply: func(u Update) error {
			if len(u.Warming[EndpointType]) > 0 || len(u.Warming[RouteType]) > 0 {
				sawWarming.Store(true)
			}
			s, err := runtime.Build(holder.Load(), u.Resources...)
			if err != nil {
				return err
			}
			holder.Store(s)
			lastWarming.Store(&u.Warming)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// 1. Initial config: everything ACKed and routable.
	waitFor(t, "v1 ACKed for all types", func() bool { return allACKed(c, "v1") })
	s1 := holder.Load()
	route := func(s *runtime.Snapshot, user string) *runtime.Cluster {
		hdr := func(n string) ([]byte, bool) {
			if n == "end-user" {
				return []byte(user), true
			}
			return nil, false
		}
		r := s.RouteTable("9080").Select([]byte("reviews:9080"), []byte("/reviews/1"), []byte("GET"), hdr, nil)
		if r == nil {
			t.Fatal("no route")
		}
		return r.PickCluster(0)
	}
	if c := route(s1, "jason"); c == nil || c.Name != reviewsV2 || c.Pick(0, false).Addr != "10.1.0.2:9080" {
		t.Fatalf("jason -> %v", c)
	}
	if l := s1.Listener("0.0.0.0_9080"); l == nil || l.BindToPort {
		t.Fatalf("listener = %+v", l)
	}
	st := c.Status()
	if !st.Connected || st.Types[ListenerType].ACKs == 0 || st.Types[ListenerType].NACKs != 0 {
		t.Fatalf("status = %+v", st)
	}
	if got := st.Types[EndpointType].Subscribed; len(got) != 3 {
		t.Fatalf("EDS subscription = %v", got)
	}

	if !sawWarming.Load() {
		t.Error("startup never reported warming dependencies (CDS before EDS, LDS before RDS)")
	}

	// 2. EDS-only update keeps route tables and listeners by pointer.
	b.endpoints[0] = cla(reviewsV1, "10.1.0.11")
	setSnapshot(t, cache, b.snapshot("v2"))
	waitFor(t, "v2 endpoints", func() bool {
		return holder.Load().Cluster(reviewsV1).Pick(0, false).Addr == "10.1.0.11:9080"
	})
	waitFor(t, "v2 ACKed for all types", func() bool { return allACKed(c, "v2") || (!sotw && c.Status().Types[EndpointType].Version == "v2") })
	s2 := holder.Load()
	if s2.RouteTables != s1.RouteTables || s2.Listeners != s1.Listeners {
		t.Fatal("EDS-only update rebuilt route tables or listeners")
	}

	// 3. An unsupported HTTP filter is NACKed with a precise reason and the
	// last good config keeps serving.
	bad := bookinfo()
	bad.endpoints = b.endpoints
	bad.listeners[0] = listener9080("envoy.filters.http.lua")
	setSnapshot(t, cache, bad.snapshot("v3"))
	const wantDetail = `Listener "0.0.0.0_9080": filter_chains[0].filters[0].typed_config.http_filters[0]: HTTP filter "envoy.filters.http.lua" is not supported`
	waitFor(t, "NACK on the server", func() bool {
		for _, r := range srv.requests() {
			if r.typeURL == ListenerType && strings.Contains(r.errDetail, wantDetail) {
				if sotw && r.version != "v2" {
					t.Errorf("NACK version_info = %q, want last good v2", r.version)
				}
				return true
			}
		}
		return false
	})
	if st := c.Status().Types[ListenerType]; st.NACKs == 0 || !strings.Contains(st.NACKDetail, wantDetail) {
		t.Fatalf("listener status after NACK = %+v", st)
	}
	if l := holder.Load().Listener("0.0.0.0_9080"); l != s2.Listener("0.0.0.0_9080") {
		t.Fatal("rejected listener replaced the last good one")
	}
	if c := route(holder.Load(), "jason"); c.Name != reviewsV2 {
		t.Fatal("routing changed after NACK")
	}

	// 4. A good config after the NACK is accepted.
	setSnapshot(t, cache, b.snapshot("v4"))
	waitFor(t, "v4 listener ACK", func() bool {
		return c.Status().Types[ListenerType].Version == "v4" || (!sotw && c.Status().Types[ListenerType].ACKs >= 2)
	})

	// 5. The server goes away: the proxy keeps serving; a new server on the
	// same address gets the client back with its known versions.
	before := holder.Load()
	srv.grpc.Stop()
	waitFor(t, "disconnected", func() bool { return !c.Status().Connected })
	time.Sleep(50 * time.Millisecond)
	if holder.Load() != before {
		t.Fatal("snapshot changed while disconnected")
	}
	if cl := route(holder.Load(), "jason"); cl.Pick(0, false) == nil {
		t.Fatal("no endpoint while disconnected")
	}
	cache2 := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	b.endpoints[2] = cla(reviewsV3, "10.1.0.33")
	setSnapshot(t, cache2, b.snapshot("v5"))
	srv2 := startServer(t, srv.addr, cache2)
	waitFor(t, "reconnected and v5 endpoints applied", func() bool {
		return c.Status().Connected && holder.Load().Cluster(reviewsV3).Pick(0, false).Addr == "10.1.0.33:9080"
	})
	var first *seenRequest
	for _, r := range srv2.requests() {
		if r.typeURL == ClusterType {
			first = &r
			break
		}
	}
	if first == nil {
		t.Fatal("no CDS request on the new server")
	}
	if sotw && first.version == "" {
		t.Error("SotW reconnect did not announce the known version")
	}
	if !sotw && len(first.initialVersions) != 4 {
		t.Errorf("delta reconnect initial_resource_versions = %v, want the 4 known clusters", first.initialVersions)
	}
	if c.Status().Reconnects == 0 {
		t.Error("reconnect not counted")
	}

	// 6. Removing a cluster (and the route to it) unsubscribes its EDS.
	b.clusters = b.clusters[1:] // drop reviews v1
	b.endpoints = b.endpoints[1:]
	b.routes[0] = routes9080NoV1()
	setSnapshot(t, cache2, b.snapshot("v6"))
	waitFor(t, "reviews v1 removed", func() bool {
		return holder.Load().Cluster(reviewsV1) == nil && len(c.Status().Types[EndpointType].Subscribed) == 2
	})
	if !sotw {
		waitFor(t, "EDS unsubscribe on the server", func() bool {
			srv2.mu.Lock()
			defer srv2.mu.Unlock()
			for _, r := range srv2.delta {
				for _, n := range r.GetResourceNamesUnsubscribe() {
					if n == reviewsV1 {
						return true
					}
				}
			}
			return false
		})
	}
	if w := lastWarming.Load(); w != nil && len(*w) != 0 {
		t.Errorf("fully delivered config reports warming %v", *w)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Config{ServerAddr: "x:1", Node: &corev3.Node{Id: "n"}, Apply: func(Update) error { return nil }}
	for name, mut := range map[string]func(*Config){
		"addr":  func(c *Config) { c.ServerAddr = "" },
		"node":  func(c *Config) { c.Node = nil },
		"apply": func(c *Config) { c.Apply = nil },
	} {
		c := ok
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{}.withDefaults()
	for n := range 20 {
		d := b.delay(n)
		want := min(500*time.Millisecond<<min(n, 10), 30*time.Second)
		if d < time.Duration(float64(want)*0.8) || d > time.Duration(float64(want)*1.2) {
			t.Errorf("delay(%d) = %v, want %v ±20%%", n, d, want)
		}
	}
}
