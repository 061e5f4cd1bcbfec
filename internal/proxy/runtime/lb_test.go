package runtime

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// fakeClock is an injected clock for outlier detection.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ips(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
	}
	return out
}

func lbCluster(t testing.TB, policy clusterv3.Cluster_LbPolicy, n int, mut ...func(*clusterv3.Cluster)) (*Holder, *Cluster) {
	t.Helper()
	c := edsCluster("c")
	c.LbPolicy = policy
	for _, m := range mut {
		m(c)
	}
	h := NewHolder(mustBuild(t, nil, c, cla("c", ips(n)...)))
	return h, h.Load().Cluster("c")
}

func TestRoundRobinEven(t *testing.T) {
	_, c := lbCluster(t, clusterv3.Cluster_ROUND_ROBIN, 4)
	counts := map[string]int{}
	for range 400 {
		counts[c.Pick(0, false).Addr]++
	}
	for a, n := range counts {
		if n != 100 {
			t.Errorf("%s picked %d/400, want 100", a, n)
		}
	}
	if len(counts) != 4 {
		t.Fatalf("hosts = %d", len(counts))
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	a := cla("c", "10.0.0.1", "10.0.0.2")
	a.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(3)
	s := mustBuild(t, nil, edsCluster("c"), a)
	counts := map[string]int{}
	for range 400 {
		counts[s.Cluster("c").Pick(0, false).Addr]++
	}
	if counts["10.0.0.1:9080"] != 300 || counts["10.0.0.2:9080"] != 100 {
		t.Errorf("weighted RR = %v, want 300/100", counts)
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	_, c := lbCluster(t, clusterv3.Cluster_LEAST_REQUEST, 2)
	eps := c.Endpoints()
	busy, idle := eps[0], eps[1]
	for range 10 {
		busy.Begin()
	}
	counts := map[*Endpoint]int{}
	for range 1000 {
		counts[c.Pick(0, false)]++
	}
	// P2C over two hosts: the idle host wins whenever both are drawn or it is
	// drawn twice: 3/4 of picks.
	if counts[idle] < 700 {
		t.Errorf("idle picked %d/1000, busy %d; want idle preferred", counts[idle], counts[busy])
	}
	for range 10 {
		busy.End()
	}
	if busy.Active() != 0 {
		t.Fatal("active counter leak")
	}
}

func TestRingHash(t *testing.T) {
	_, c := lbCluster(t, clusterv3.Cluster_RING_HASH, 5)
	first := map[uint64]string{}
	for k := range uint64(1000) {
		key := upstream.HashString(fmt.Sprint("user-", k))
		ep := c.Pick(key, true)
		for range 3 {
			if again := c.Pick(key, true); again != ep {
				t.Fatalf("key %d not stable: %s vs %s", k, ep.Addr, again.Addr)
			}
		}
		first[key] = ep.Addr
	}
	// Remove one host: keys on it move; keys on survivors mostly stay. Like
	// Envoy, each host's share of points grows when the ring is rebuilt for
	// fewer hosts (minimum_ring_size is spread over them), so a small share
	// of survivor keys moves too — compare with ~80% for hash mod N.
	s2 := mustBuild(t, nil, func() *clusterv3.Cluster { x := edsCluster("c"); x.LbPolicy = clusterv3.Cluster_RING_HASH; return x }(), cla("c", ips(5)[:4]...))
	removed := ips(5)[4] + ":9080"
	moved := 0
	for key, addr := range first {
		now := s2.Cluster("c").Pick(key, true).Addr
		if addr != removed && now != addr {
			moved++
		}
	}
	if moved > len(first)/8 {
		t.Errorf("%d/%d keys not on the removed host were remapped", moved, len(first))
	}
}

func TestMaglev(t *testing.T) {
	mag := func(x *clusterv3.Cluster) {
		x.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(65537)}}
	}
	_, c := lbCluster(t, clusterv3.Cluster_MAGLEV, 5, mag)
	counts := map[string]int{}
	first := map[uint64]string{}
	for k := range uint64(10000) {
		key := upstream.HashString(fmt.Sprint("conn-", k))
		ep := c.Pick(key, true)
		if c.Pick(key, true) != ep {
			t.Fatal("maglev not stable")
		}
		counts[ep.Addr]++
		first[key] = ep.Addr
	}
	for a, n := range counts {
		if n < 1600 || n > 2400 {
			t.Errorf("%s got %d/10000, want ~2000", a, n)
		}
	}
	c2 := edsCluster("c")
	c2.LbPolicy = clusterv3.Cluster_MAGLEV
	mag(c2)
	s2 := mustBuild(t, nil, c2, cla("c", ips(5)[:4]...))
	removed := ips(5)[4] + ":9080"
	moved := 0
	for key, addr := range first {
		if addr != removed && s2.Cluster("c").Pick(key, true).Addr != addr {
			moved++
		}
	}
	// Maglev gives minimal disruption, not zero: allow a few percent.
	if moved > 10000*5/100 {
		t.Errorf("%d/8000 keys on surviving hosts moved", moved)
	}
}

func outlier(x *clusterv3.Cluster) {
	x.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:    wrapperspb.UInt32(3),
		BaseEjectionTime:   durationpb.New(30 * time.Second),
		MaxEjectionPercent: wrapperspb.UInt32(50),
		Interval:           durationpb.New(10 * time.Second),
	}
}

func TestOutlierEjection(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c0 := edsCluster("c")
	outlier(c0)
	h := NewHolder(mustBuild(t, Empty(Options{Now: clk.Now}), c0, cla("c", ips(4)...)))
	c := h.Load().Cluster("c")
	bad := c.Endpoints()[0]
	bad.ReportResult(500, nil)
	bad.ReportResult(200, nil) // success resets the streak
	bad.ReportResult(500, nil)
	bad.ReportResult(503, nil)
	if bad.Ejected() {
		t.Fatal("ejected before 3 consecutive 5xx")
	}
	bad.ReportResult(0, route.ErrConnectFailure) // local-origin failure counts as 503
	if !bad.Ejected() {
		t.Fatal("not ejected after 3 consecutive errors")
	}
	for range 100 {
		if c.Pick(0, false) == bad {
			t.Fatal("picked an ejected host")
		}
	}
	// max_ejection_percent 50 of 4 hosts: a second ejection is allowed, a
	// third is not.
	for _, ep := range c.Endpoints()[1:] {
		for range 3 {
			ep.ReportResult(502, nil)
		}
	}
	ejected := 0
	for _, ep := range c.Endpoints() {
		if ep.Ejected() {
			ejected++
		}
	}
	if ejected != 2 {
		t.Fatalf("ejected = %d, want 2 (max_ejection_percent)", ejected)
	}
	// EDS update keeps the state of endpoints that stay (by address).
	s2 := mustBuild(t, h.Load(), c0, cla("c", append(ips(4), "10.9.9.9")...))
	h.Store(s2)
	if !c.Endpoints()[0].Ejected() || c.Endpoints()[0].Addr != bad.Addr {
		t.Fatal("ejection lost across EDS update")
	}
	clk.Advance(29 * time.Second)
	if !bad.Ejected() {
		t.Fatal("un-ejected early")
	}
	clk.Advance(2 * time.Second)
	if bad.Ejected() || c.Endpoints()[0].Ejected() {
		t.Fatal("still ejected after base_ejection_time")
	}
	// Second ejection lasts 2 x base.
	for range 3 {
		bad.ReportResult(500, nil)
	}
	clk.Advance(45 * time.Second)
	if !bad.Ejected() {
		t.Fatal("second ejection should last 60s")
	}
	clk.Advance(16 * time.Second)
	if bad.Ejected() {
		t.Fatal("second ejection did not end")
	}
	// Healthy for two intervals: the multiplier decays from 2 to 0, so the
	// next ejection lasts base_ejection_time again.
	clk.Advance(20 * time.Second)
	for range 3 {
		bad.ReportResult(500, nil)
	}
	clk.Advance(31 * time.Second)
	if bad.Ejected() {
		t.Fatal("ejection multiplier did not decay")
	}
}

func TestPriorityFailover(t *testing.T) {
	a := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{Priority: 0, LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("10.0.0.1", 80), lbEndpoint("10.0.0.2", 80)}},
		{Priority: 1, LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("10.1.0.1", 80)}},
	}}
	pick := func(a *endpointv3.ClusterLoadAssignment) map[string]int {
		s := mustBuild(t, nil, edsCluster("c"), a)
		got := map[string]int{}
		for range 1000 {
			got[s.Cluster("c").Pick(0, false).Addr]++
		}
		return got
	}
	if got := pick(a); got["10.1.0.1:80"] != 0 {
		t.Errorf("healthy P0 must take all traffic: %v", got)
	}
	// One of two P0 hosts unhealthy: P0 health = 1.4*50 = 70%, P1 takes 30%.
	a.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
	got := pick(a)
	if got["10.0.0.1:80"] != 0 {
		t.Errorf("unhealthy host picked: %v", got)
	}
	if p1 := got["10.1.0.1:80"]; p1 < 220 || p1 > 380 {
		t.Errorf("P1 share = %d/1000, want ~300 (overprovisioning 1.4)", p1)
	}
	a.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_DRAINING
	if got := pick(a); got["10.1.0.1:80"] != 1000 {
		t.Errorf("all P0 unhealthy: P1 must take all traffic: %v", got)
	}
}

func TestCircuitBreaker(t *testing.T) {
	c := edsCluster("c")
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(2)}}}
	s := mustBuild(t, nil, c)
	cl := s.Cluster("c")
	if !cl.Acquire(upstream.Requests) || !cl.Acquire(upstream.Requests) {
		t.Fatal("under threshold refused")
	}
	if cl.Acquire(upstream.Requests) {
		t.Fatal("over threshold accepted (want upstream overflow)")
	}
	cl.Release(upstream.Requests)
	if !cl.Acquire(upstream.Requests) {
		t.Fatal("released slot not reusable")
	}
	if !cl.Acquire(upstream.Retries) || !cl.Acquire(upstream.Retries) || !cl.Acquire(upstream.Retries) || cl.Acquire(upstream.Retries) {
		t.Fatal("max_retries default 3 not enforced")
	}
}

func TestRetryPolicy(t *testing.T) {
	s := mustBuild(t, nil, weftResources()...)
	p := s.RouteTable("9080").Select([]byte("reviews"), []byte("/"), []byte("GET"), nil, nil).Retry
	tests := []struct {
		status int
		err    error
		want   bool
	}{
		{503, nil, true}, // retriable-status-codes
		{500, nil, false},
		{0, route.ErrConnectFailure, true},
		{0, route.ErrRefusedStream, true},
		{0, route.ErrReset, false},
		{200, nil, false},
	}
	for _, tc := range tests {
		if got := p.Retriable(tc.status, tc.err); got != tc.want {
			t.Errorf("Retriable(%d, %v) = %v, want %v", tc.status, tc.err, got, tc.want)
		}
	}
	if !p.RetriableGRPC(14) || p.RetriableGRPC(13) {
		t.Error("gRPC retry_on: unavailable yes, internal no")
	}
	for attempt := 1; attempt < 8; attempt++ {
		for _, r := range []uint64{0, 1 << 40, ^uint64(0)} {
			d := p.Backoff(attempt, r)
			limit := min(25*time.Millisecond<<(attempt-1), 250*time.Millisecond)
			if d < 0 || d >= limit {
				t.Errorf("Backoff(%d) = %v, want [0,%v)", attempt, d, limit)
			}
		}
	}
}

func TestFaultDecide(t *testing.T) {
	f := &route.Fault{Delay: time.Second, DelayPerMillion: 500_000, AbortStatus: 418, AbortPerMillion: 100_000}
	delays, aborts := 0, 0
	for i := range uint32(10000) {
		d, a := f.Decide(i*100, (i*7919)%1_000_000)
		if d > 0 {
			delays++
		}
		if a {
			aborts++
		}
	}
	if delays != 5000 {
		t.Errorf("delays = %d, want 5000", delays)
	}
	if aborts < 900 || aborts > 1100 {
		t.Errorf("aborts = %d, want ~1000", aborts)
	}
	var nilFault *route.Fault
	if d, a := nilFault.Decide(0, 0); d != 0 || a {
		t.Error("nil fault must inject nothing")
	}
}

// A retry budget replaces max_retries: active retries may be budget_percent
// of the active requests, never fewer than min_retry_concurrency.
func TestRetryBudget(t *testing.T) {
	c := edsCluster("c")
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRetries:  wrapperspb.UInt32(100), // ignored once a budget is set, as in Envoy
		RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 25}, MinRetryConcurrency: wrapperspb.UInt32(2)},
	}}}
	cl := mustBuild(t, nil, c).Cluster("c")
	acquire := func(n int) int {
		got := 0
		for i := 0; i < n; i++ {
			if cl.Acquire(upstream.Retries) {
				got++
			}
		}
		return got
	}
	if got := acquire(5); got != 2 {
		t.Fatalf("idle cluster allowed %d retries, want the minimum 2", got)
	}
	for i := 0; i < 20; i++ { // 20 active requests: budget 25% = 5 retries
		cl.Acquire(upstream.Requests)
	}
	if got := acquire(10); got != 3 {
		t.Fatalf("with 20 active requests %d more retries allowed, want 3 (5 in all)", got)
	}

	bad := edsCluster("bad")
	bad.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 150}}}}}
	if _, err := Build(nil, bad); err == nil || !strings.Contains(err.Error(), "budget_percent") {
		t.Fatalf("budget 150%% accepted: %v", err)
	}
}
