package xds

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/translate"
	"github.com/weftmesh/weft/internal/xds/xdstest"
)

const (
	cds = translate.ClusterType
	eds = translate.EndpointType
	lds = translate.ListenerType
	rds = translate.RouteType
)

// quiet is how long tests wait to be sure something does NOT arrive.
const quiet = 400 * time.Millisecond

type env struct {
	srv  *Server
	gen  *xdstest.Generator
	reg  *prometheus.Registry
	conn *grpc.ClientConn
}

func startEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{gen: &xdstest.Generator{}, reg: prometheus.NewRegistry()}
	cfg.Generator = e.gen
	cfg.Registerer = e.reg
	if cfg.Debounce == 0 {
		cfg.Debounce = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e.srv = New(cfg)
	g := grpc.NewServer()
	e.srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.srv.Run(ctx); close(done) }()
	e.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		cancel()
		<-done
		g.Stop()
	})
	return e
}

// pushes returns how many pushes have completed.
func (e *env) pushes(t *testing.T) uint64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pilot_xds_push_time_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// metric reads a counter or gauge from the registry, as a scraper would;
// typ selects the "type" label ("" for unlabelled metrics). (prometheus'
// testutil would need a go.sum change outside this package.)
func (e *env) metric(t *testing.T, name, typ string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			lv := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" {
					lv = l.GetValue()
				}
			}
			if lv != typ {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// update pushes m and waits for the push to complete.
func (e *env) update(t *testing.T, m *model.Snapshot) {
	t.Helper()
	before := e.pushes(t)
	e.srv.Update(m)
	waitFor(t, "push", func() bool { return e.pushes(t) > before })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func buildModel(t *testing.T, version uint64, svcs []xdstest.Service) *model.Snapshot {
	t.Helper()
	m, err := xdstest.Model(version, svcs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func baseServices() []xdstest.Service {
	return []xdstest.Service{
		{Name: "a", Namespace: "ns-a", Port: 8080, Endpoints: []string{"10.0.0.1", "10.0.0.2"}},
		{Name: "b", Namespace: "ns-b", Port: 9090, Endpoints: []string{"10.0.1.1"}},
	}
}

func node(id, ns string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns})
	return &corev3.Node{Id: id, Metadata: md, UserAgentName: "envoy"}
}

// sotwClient is a real ADS SotW client.
type sotwClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	node   *corev3.Node
	resps  chan *discovery.DiscoveryResponse
	errs   chan error
}

func (e *env) sotw(t *testing.T, n *corev3.Node) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discovery.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{t: t, stream: st, cancel: cancel, node: n, resps: make(chan *discovery.DiscoveryResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				c.errs <- err
				return
			}
			c.resps <- r
		}
	}()
	t.Cleanup(cancel)
	return c
}

func (c *sotwClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sotwClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		return r
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(5 * time.Second):
		c.t.Fatal("timed out waiting for a response")
	}
	return nil
}

// none asserts nothing arrives for quiet.
func (c *sotwClient) none() {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected %s response version %s", shortType(r.GetTypeUrl()), r.GetVersionInfo())
	case <-time.After(quiet):
	}
}

func (c *sotwClient) ack(r *discovery.DiscoveryResponse, names []string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: names})
}

// fetch subscribes to one type and ACKs the answer.
func (c *sotwClient) fetch(typeURL string, names []string) *discovery.DiscoveryResponse {
	c.t.Helper()
	c.send(&discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names})
	r := c.recv()
	if r.GetTypeUrl() != typeURL {
		c.t.Fatalf("got %s, want %s", r.GetTypeUrl(), typeURL)
	}
	c.ack(r, names)
	return r
}

func resourceNames(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				t.Errorf("invalid resource: %v", err)
			}
		}
		out = append(out, cacheName(m))
	}
	slices.Sort(out)
	return out
}

func cacheName(m any) string {
	switch r := m.(type) {
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

func clusterA() string {
	return translate.ClusterName(translate.Outbound, 8080, "", "a.ns-a.svc.cluster.local")
}
func clusterB() string {
	return translate.ClusterName(translate.Outbound, 9090, "", "b.ns-b.svc.cluster.local")
}

func TestSotWPushes(t *testing.T) {
	e := startEnv(t, Config{})
	svcs := baseServices()
	e.update(t, buildModel(t, 1, svcs))

	c := e.sotw(t, node("sidecar~10.9.0.1~p1.ns-a~ns-a.svc.cluster.local", "ns-a"))
	cr := c.fetch(cds, nil)
	if got, want := resourceNames(t, cr), []string{clusterA(), clusterB()}; !slices.Equal(got, want) {
		t.Fatalf("clusters = %v, want %v", got, want)
	}
	edsNames := []string{clusterA(), clusterB()}
	er := c.fetch(eds, edsNames)
	if len(er.GetResources()) != 2 {
		t.Fatalf("got %d endpoints", len(er.GetResources()))
	}
	lr := c.fetch(lds, nil)
	if got := resourceNames(t, lr); !slices.Equal(got, []string{"0.0.0.0_8080", "0.0.0.0_9090"}) {
		t.Fatalf("listeners = %v", got)
	}
	rr := c.fetch(rds, []string{"8080", "9090"})
	if len(rr.GetResources()) != 2 {
		t.Fatalf("got %d routes", len(rr.GetResources()))
	}
	waitFor(t, "all synced", func() bool {
		st := e.srv.Status()
		if len(st) != 1 {
			return false
		}
		for _, ts := range st[0].PerType {
			if ts.State != StateSynced {
				return false
			}
		}
		return true
	})

	// A new service changes CDS and LDS; the new route and endpoints arrive
	// once re-requested by name, as ADS clients do after CDS/LDS.
	svcs = append(svcs, xdstest.Service{Name: "c", Namespace: "ns-a", Port: 7070, Endpoints: []string{"10.0.2.1"}})
	e.update(t, buildModel(t, 2, svcs))
	seen := map[string]*discovery.DiscoveryResponse{}
	for len(seen) < 2 {
		r := c.recv()
		seen[r.GetTypeUrl()] = r
		c.ack(r, nil)
	}
	for _, typ := range []string{cds, lds} {
		if seen[typ] == nil {
			t.Fatalf("no %s push after a service was added; got %v", shortType(typ), slices.Collect(mapsKeys(seen)))
		}
	}
	if seen[cds].GetVersionInfo() == cr.GetVersionInfo() || seen[lds].GetVersionInfo() == lr.GetVersionInfo() {
		t.Fatal("versions did not change")
	}
	if len(seen[cds].GetResources()) != 3 || len(seen[lds].GetResources()) != 3 {
		t.Fatalf("after add: %d clusters, %d listeners", len(seen[cds].GetResources()), len(seen[lds].GetResources()))
	}
	routeNames := []string{"7070", "8080", "9090"}
	c.send(&discovery.DiscoveryRequest{TypeUrl: rds, VersionInfo: rr.GetVersionInfo(), ResponseNonce: rr.GetNonce(), ResourceNames: routeNames})
	if rr = c.recv(); rr.GetTypeUrl() != rds || len(rr.GetResources()) != 3 {
		t.Fatalf("RDS re-request: %s with %d resources", rr.GetTypeUrl(), len(rr.GetResources()))
	}
	c.ack(rr, routeNames)
	clusterC := translate.ClusterName(translate.Outbound, 7070, "", "c.ns-a.svc.cluster.local")
	edsNames = []string{clusterA(), clusterB(), clusterC}
	c.send(&discovery.DiscoveryRequest{TypeUrl: eds, VersionInfo: er.GetVersionInfo(), ResponseNonce: er.GetNonce(), ResourceNames: edsNames})
	er = c.recv()
	if er.GetTypeUrl() != eds || len(er.GetResources()) != 3 {
		t.Fatalf("EDS re-request: %s with %d resources", er.GetTypeUrl(), len(er.GetResources()))
	}
	c.ack(er, edsNames)
	c.none()

	// Endpoint-only change: only EDS arrives, and LDS/RDS/CDS are not regenerated.
	calls := e.gen.Calls.Load()
	svcs[0].Endpoints = []string{"10.0.0.1", "10.0.0.3"}
	e.update(t, buildModel(t, 3, svcs))
	r := c.recv()
	if r.GetTypeUrl() != eds {
		t.Fatalf("endpoint-only update pushed %s", shortType(r.GetTypeUrl()))
	}
	c.ack(r, edsNames)
	c.none()
	if got := e.gen.Calls.Load(); got != calls {
		t.Errorf("endpoint-only push called Generate %d times", got-calls)
	}
	if e.gen.EndpointCalls.Load() == 0 {
		t.Error("endpoint-only push did not use GenerateEndpoints")
	}

	// NACK: tracked, counted, logged, and not answered with a resend loop.
	svcs = append(svcs, xdstest.Service{Name: "d", Namespace: "ns-a", Port: 6060, Endpoints: []string{"10.0.3.1"}})
	e.update(t, buildModel(t, 4, svcs))
	var nacked *discovery.DiscoveryResponse
	for nacked == nil {
		r := c.recv()
		if r.GetTypeUrl() == cds {
			nacked = r
			c.send(&discovery.DiscoveryRequest{TypeUrl: cds, VersionInfo: seen[cds].GetVersionInfo(), ResponseNonce: r.GetNonce(),
				ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "cluster d: bad config"}})
			continue
		}
		c.ack(r, map[string][]string{rds: routeNames, eds: edsNames}[r.GetTypeUrl()])
	}
	deadline := time.After(quiet)
	for done := false; !done; {
		select {
		case r := <-c.resps:
			if r.GetTypeUrl() == cds {
				t.Fatalf("NACKed CDS was resent (version %s)", r.GetVersionInfo())
			}
			c.ack(r, map[string][]string{rds: routeNames, eds: edsNames}[r.GetTypeUrl()])
		case <-deadline:
			done = true
		}
	}
	st := e.srv.Status()[0].PerType[cds]
	if st.State != StateNacked || st.NackError != "cluster d: bad config" || st.Nacked != nacked.GetVersionInfo() {
		t.Fatalf("CDS status after NACK = %+v", st)
	}
	if got := e.metric(t, "pilot_total_xds_rejects", "cds"); got != 1 {
		t.Errorf("pilot_total_xds_rejects{type=cds} = %v, want 1", got)
	}

	// syncz serves the same state.
	rec := httptest.NewRecorder()
	e.srv.SynczHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/syncz", nil))
	var got []ProxyStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got) != 1 || got[0].PerType[cds].State != StateNacked {
		t.Fatalf("syncz = %s (%v)", rec.Body.String(), err)
	}
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// deltaClient is a real ADS delta client.
type deltaClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discovery.DeltaDiscoveryResponse
	errs   chan error
}

func (e *env) delta(t *testing.T, n *corev3.Node) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discovery.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, stream: st, resps: make(chan *discovery.DeltaDiscoveryResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				c.errs <- err
				return
			}
			c.resps <- r
		}
	}()
	t.Cleanup(cancel)
	c.send(&discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: cds})
	return c
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaClient) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
		return r
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(5 * time.Second):
		c.t.Fatal("timed out waiting for a delta response")
	}
	return nil
}

func (c *deltaClient) none() {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected %s delta response with %d resources", shortType(r.GetTypeUrl()), len(r.GetResources()))
	case <-time.After(quiet):
	}
}

func TestDeltaPushes(t *testing.T) {
	e := startEnv(t, Config{})
	svcs := baseServices()
	e.update(t, buildModel(t, 1, svcs))

	c := e.delta(t, node("delta-1", "ns-a")) // subscribes to CDS (wildcard)
	if r := c.recv(); r.GetTypeUrl() != cds || len(r.GetResources()) != 2 {
		t.Fatalf("CDS: %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesSubscribe: []string{clusterA(), clusterB()}})
	if r := c.recv(); r.GetTypeUrl() != eds || len(r.GetResources()) != 2 {
		t.Fatalf("EDS: %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: lds})
	if r := c.recv(); r.GetTypeUrl() != lds || len(r.GetResources()) != 2 {
		t.Fatalf("LDS: %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: rds, ResourceNamesSubscribe: []string{"8080", "9090"}})
	if r := c.recv(); r.GetTypeUrl() != rds || len(r.GetResources()) != 2 {
		t.Fatalf("RDS: %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	}
	waitFor(t, "delta synced", func() bool {
		st := e.srv.Status()
		return len(st) == 1 && st[0].StreamKind == StreamDelta && st[0].PerType[rds].State == StateSynced && st[0].PerType[eds].State == StateSynced
	})

	// Endpoint-only change of service a: one EDS response with only a's CLA.
	svcs[0].Endpoints = []string{"10.0.0.1", "10.0.0.9"}
	e.update(t, buildModel(t, 2, svcs))
	r := c.recv()
	if r.GetTypeUrl() != eds || len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != clusterA() {
		t.Fatalf("endpoint update: %s with %v", shortType(r.GetTypeUrl()), r.GetResources())
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := r.GetResources()[0].GetResource().UnmarshalTo(cla); err != nil {
		t.Fatal(err)
	}
	if got := cla.GetEndpoints()[0].GetLbEndpoints()[1].GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); got != "10.0.0.9" {
		t.Fatalf("new endpoint = %s", got)
	}
	c.none()

	// Unsubscribe from a: a's changes no longer arrive, b's still do.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesUnsubscribe: []string{clusterA()}})
	c.none()
	svcs[0].Endpoints = []string{"10.0.0.7"}
	e.update(t, buildModel(t, 3, svcs))
	c.none()
	svcs[1].Endpoints = []string{"10.0.1.7"}
	e.update(t, buildModel(t, 4, svcs))
	r = c.recv()
	if r.GetTypeUrl() != eds || len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != clusterB() {
		t.Fatalf("after unsubscribe: %s with %v", shortType(r.GetTypeUrl()), r.GetResources())
	}
	c.none()

	// A delta NACK is tracked and counted.
	svcs = append(svcs, xdstest.Service{Name: "c", Namespace: "ns-a", Port: 7070, Endpoints: []string{"10.0.2.1"}})
	e.update(t, buildModel(t, 5, svcs))
	for {
		select {
		case r := <-c.resps:
			if r.GetTypeUrl() == cds {
				c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: cds, ResponseNonce: r.GetNonce(), ErrorDetail: &status.Status{Message: "nope"}})
				waitFor(t, "delta NACK", func() bool { return e.srv.Status()[0].PerType[cds].State == StateNacked })
				if got := e.metric(t, "pilot_total_xds_rejects", "cds"); got != 1 {
					t.Errorf("rejects = %v", got)
				}
				return
			}
			c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
		case <-time.After(5 * time.Second):
			t.Fatal("no CDS push")
		}
	}
}

func TestDebounce(t *testing.T) {
	e := startEnv(t, Config{Debounce: 50 * time.Millisecond, MaxDebounce: 2 * time.Second})
	svcs := baseServices()
	for i := range 50 {
		svcs[0].Endpoints = []string{"10.0.0.1", "10.0.5." + itoa(i)}
		e.srv.Update(buildModel(t, uint64(i), svcs))
	}
	waitFor(t, "first push", func() bool { return e.pushes(t) >= 1 })
	time.Sleep(quiet)
	if n := e.pushes(t); n > 2 {
		t.Fatalf("50 rapid updates caused %d pushes", n)
	}
	if got := e.metric(t, "weft_xds_push_events_total", ""); got != 50 {
		t.Errorf("push events = %v, want 50", got)
	}
}

// fakeClock advances only when told; After fires when Advance passes it.
type fakeClock struct {
	now     chan time.Time // holds the current time (a 1-slot mutex)
	waiters chan fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func TestMaxDebounceFlushesUnderConstantChange(t *testing.T) {
	clk := newFakeClock()
	e := startEnv(t, Config{Debounce: 100 * time.Millisecond, MaxDebounce: time.Second, Clock: clk})
	svcs := baseServices()
	// An update every 50ms of fake time never lets the 100ms debounce
	// expire; MaxDebounce must still flush once per second.
	for i := range 45 {
		svcs[0].Endpoints = []string{"10.0.6." + itoa(i)}
		e.srv.Update(buildModel(t, uint64(i), svcs))
		clk.Advance(50 * time.Millisecond)
		time.Sleep(2 * time.Millisecond) // let Run observe the kick
	}
	waitFor(t, "two forced pushes", func() bool { return e.pushes(t) >= 2 })
	if n := e.pushes(t); n > 3 {
		t.Fatalf("%d pushes in 2.25s of constant change, want 2", n)
	}
}

func newFakeClock() *fakeClock {
	c := &fakeClock{now: make(chan time.Time, 1), waiters: make(chan fakeWaiter, 1000)}
	c.now <- time.Unix(1_000_000, 0)
	return c
}

func (c *fakeClock) Now() time.Time { t := <-c.now; c.now <- t; return t }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	t := <-c.now
	c.waiters <- fakeWaiter{at: t.Add(d), ch: ch}
	c.now <- t
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	t := (<-c.now).Add(d)
	var keep []fakeWaiter
	for len(c.waiters) > 0 {
		w := <-c.waiters
		if !w.at.After(t) {
			w.ch <- t
		} else {
			keep = append(keep, w)
		}
	}
	for _, w := range keep {
		c.waiters <- w
	}
	c.now <- t
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func TestProxiesSeeTheirNamespace(t *testing.T) {
	e := startEnv(t, Config{})
	svcs := append(baseServices(), xdstest.Service{Name: "private", Namespace: "ns-a", Port: 5050, Endpoints: []string{"10.0.9.1"}, ExportTo: []string{"."}})
	e.update(t, buildModel(t, 1, svcs))
	a := e.sotw(t, node("pa", "ns-a"))
	b := e.sotw(t, node("pb", "ns-b"))
	ra, rb := a.fetch(cds, nil), b.fetch(cds, nil)
	private := translate.ClusterName(translate.Outbound, 5050, "", "private.ns-a.svc.cluster.local")
	if got := resourceNames(t, ra); !slices.Contains(got, private) || len(got) != 3 {
		t.Errorf("ns-a proxy clusters = %v", got)
	}
	if got := resourceNames(t, rb); slices.Contains(got, private) || len(got) != 2 {
		t.Errorf("ns-b proxy clusters = %v", got)
	}
	if ra.GetVersionInfo() == rb.GetVersionInfo() {
		t.Error("different content, same version")
	}
}

func TestIdenticalProxiesShareGeneration(t *testing.T) {
	e := startEnv(t, Config{})
	e.update(t, buildModel(t, 1, baseServices()))
	base := e.gen.Calls.Load()
	for i := range 5 {
		c := e.sotw(t, node("same-"+itoa(i), "ns-a"))
		c.fetch(cds, nil)
	}
	if got := e.gen.Calls.Load() - base; got != 1 {
		t.Fatalf("5 identical proxies joining caused %d generations, want 1", got)
	}
	svcs := append(baseServices(), xdstest.Service{Name: "n", Namespace: "ns-a", Port: 1234, Endpoints: []string{"10.1.0.1"}})
	e.update(t, buildModel(t, 2, svcs))
	if got := e.gen.Calls.Load() - base; got != 2 {
		t.Fatalf("one push for 5 identical proxies caused %d generations, want 1", got-1)
	}
}

func TestStreamCloseRemovesProxy(t *testing.T) {
	e := startEnv(t, Config{})
	e.update(t, buildModel(t, 1, baseServices()))
	c := e.sotw(t, node("closer", "ns-a"))
	c.fetch(cds, nil)
	d := e.delta(t, node("closer-delta", "ns-b"))
	d.recv()
	if n := len(e.srv.Status()); n != 2 {
		t.Fatalf("%d proxies connected, want 2", n)
	}
	if got := e.metric(t, "weft_xds_connected_proxies", "sidecar"); got != 2 {
		t.Errorf("connected gauge = %v", got)
	}
	c.cancel()
	waitFor(t, "sotw proxy removed", func() bool { return len(e.srv.Status()) == 1 })
	if _, err := e.srv.cache.GetSnapshot("closer"); err == nil {
		t.Error("snapshot of a disconnected proxy kept")
	}
	if got := e.metric(t, "weft_xds_connected_proxies", "sidecar"); got != 1 {
		t.Errorf("connected gauge = %v", got)
	}
}

func TestBadInput(t *testing.T) {
	e := startEnv(t, Config{})
	e.update(t, buildModel(t, 1, baseServices()))

	t.Run("nonsense types and names", func(t *testing.T) {
		c := e.sotw(t, node("junk", "ns-a"))
		c.send(&discovery.DiscoveryRequest{TypeUrl: "type.googleapis.com/not.a.Type"})
		c.send(&discovery.DiscoveryRequest{TypeUrl: rds, ResourceNames: []string{"no-such-route"}})
		c.none()
		// The stream still works.
		if r := c.fetch(lds, nil); len(r.GetResources()) != 2 {
			t.Fatalf("LDS after junk: %d listeners", len(r.GetResources()))
		}
		d := e.delta(t, node("junk-delta", "ns-a"))
		d.recv()
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: "type.googleapis.com/not.a.Type", ResourceNamesSubscribe: []string{"x"}})
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: eds, ResourceNamesSubscribe: []string{"nope"}})
		d.none()
	})

	t.Run("no node id", func(t *testing.T) {
		c := e.sotw(t, &corev3.Node{})
		c.send(&discovery.DiscoveryRequest{TypeUrl: cds})
		select {
		case err := <-c.errs:
			if grpcstatus.Code(err) != codes.InvalidArgument {
				t.Fatalf("stream error = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream without node id not refused")
		}
	})

	t.Run("malformed metadata served with defaults", func(t *testing.T) {
		md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": 7.0, "LABELS": "oops"})
		c := e.sotw(t, &corev3.Node{Id: "weird", Metadata: md})
		if r := c.fetch(cds, nil); len(r.GetResources()) != 2 {
			t.Fatalf("clusters: %d", len(r.GetResources()))
		}
		for _, p := range e.srv.Status() {
			if p.ID == "weird" && p.Namespace != DefaultNamespace {
				t.Errorf("namespace = %q", p.Namespace)
			}
		}
	})

	t.Run("stream closed mid-push", func(t *testing.T) {
		before := len(e.srv.Status())
		c := e.sotw(t, node("leaver", "ns-a"))
		c.fetch(cds, nil)
		svcs := append(baseServices(), xdstest.Service{Name: "z", Namespace: "ns-a", Port: 1111, Endpoints: []string{"10.3.0.1"}})
		e.srv.Update(buildModel(t, 9, svcs))
		c.cancel()
		waitFor(t, "leaver gone", func() bool { return len(e.srv.Status()) == before })
	})
}

func TestGeneratedResourcesAreValid(t *testing.T) {
	m := buildModel(t, 1, xdstest.Services(20, 3, 4))
	res, err := (&xdstest.Generator{}).Generate(translate.Input{Model: m, Proxy: &model.Proxy{Namespace: "ns-0"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range xdsTypes {
		if len(res.ByType(typ)) == 0 {
			t.Errorf("no %s resources", shortType(typ))
		}
		for name, r := range res.ByType(typ) {
			if err := r.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
				t.Errorf("%s %s: %v", shortType(typ), name, err)
			}
		}
	}
}

func TestProxylessGRPCGetsRequestedSubset(t *testing.T) {
	e := startEnv(t, Config{})
	e.update(t, buildModel(t, 1, baseServices()))
	c := e.sotw(t, &corev3.Node{Id: "grpc-client", UserAgentName: "grpc-go"})
	r := c.fetch(lds, []string{"0.0.0.0_8080"})
	if got := resourceNames(t, r); !slices.Equal(got, []string{"0.0.0.0_8080"}) {
		t.Fatalf("listeners = %v", got)
	}
	r = c.fetch(cds, []string{clusterB()})
	if got := resourceNames(t, r); !slices.Equal(got, []string{clusterB()}) {
		t.Fatalf("clusters = %v", got)
	}
	if st := e.srv.Status(); len(st) != 1 || st[0].Type != "grpc" || st[0].PerType[lds].State != StateSynced {
		t.Fatalf("status = %+v", st)
	}
	c.cancel()
	waitFor(t, "grpc client removed", func() bool { return len(e.srv.Status()) == 0 })
	if _, err := e.srv.grpc.GetSnapshot("grpc-client"); err == nil {
		t.Error("snapshot kept after disconnect")
	}
}
