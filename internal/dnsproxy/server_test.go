package dnsproxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestMeshAnswers(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		ips   []string // nil: NODATA or NXDOMAIN
	}{
		{"reviews.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.12"}},
		{"reviews.default.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::12"}},
		{"REVIEWS.Default.SVC.cluster.LOCAL.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.12"}},
		// Short names, same namespace.
		{"reviews.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.12"}},
		{"reviews.default.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.12"}},
		{"reviews.default.svc.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.12"}},
		// Search-path expanded forms a ndots:5 resolver sends first.
		{"reviews.default.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.12"}},
		{"ratings.prod.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.13"}},
		// Other namespace: name.ns and name.ns.svc, never the bare name.
		{"ratings.prod.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.13"}},
		{"ratings.prod.svc.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.13"}},
		{"ratings.prod.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.13"}},
		{"ratings.", dns.TypeA, dns.RcodeNameError, nil},
		// NODATA: the host exists but has no address of that type.
		{"ratings.prod.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"v6only.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, nil},
		{"v6only.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::14"}},
		// ServiceEntry hosts, exact and wildcard.
		{"api.external.com.", dns.TypeA, dns.RcodeSuccess, []string{"240.240.0.1", "240.240.0.2"}},
		{"a.wild.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"240.240.0.9"}},
		{"a.b.c.wild.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"240.240.0.9"}},
		{"A.WILD.example.com.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		// Not a mesh host: the upstream says NXDOMAIN.
		{"wild.example.com.", dns.TypeA, dns.RcodeNameError, nil},
		{"nosuch.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		// A mesh host never gets NXDOMAIN, even for types the table does
		// not answer and the upstream does not know.
		{"db.mesh.internal.", dns.TypeMX, dns.RcodeSuccess, nil},
		{"db.mesh.internal.", dns.TypeA, dns.RcodeSuccess, []string{"240.240.0.10"}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
				resp := ask(t, s.Addr(), network, tc.name, tc.qtype)
				if resp.Rcode != tc.rcode {
					t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := answerIPs(resp); !slices.Equal(got, tc.ips) {
					t.Fatalf("answer = %v, want %v", got, tc.ips)
				}
				mesh := tc.rcode == dns.RcodeSuccess && tc.qtype != dns.TypeMX
				if mesh != resp.Authoritative {
					t.Errorf("authoritative = %v, want %v", resp.Authoritative, mesh)
				}
				for _, rr := range resp.Answer {
					if rr.Header().Ttl != meshTTL || rr.Header().Name != tc.name && rr.Header().Name != dns.Fqdn(tc.name) {
						t.Errorf("answer header %v", rr.Header())
					}
				}
			})
		}
	}
	if st := s.Stats(); st.MeshAnswers == 0 || st.Forwarded == 0 || st.Queries < st.MeshAnswers+st.Forwarded {
		t.Errorf("stats = %+v", st)
	}
}

func TestSetTableSwapsAtomically(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	tbl, err := BuildTable([]Host{{Name: "reviews.default.svc.cluster.local", HostEntry: HostEntry{IPv4: addrs("10.96.1.1")}}}, "default", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	s.SetTable(tbl)
	if got := answerIPs(ask(t, s.Addr(), "udp", "reviews.", dns.TypeA)); !slices.Equal(got, []string{"10.96.1.1"}) {
		t.Fatalf("after swap: %v", got)
	}
	if r := ask(t, s.Addr(), "udp", "api.external.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("removed host: rcode %s, want NXDOMAIN from upstream", dns.RcodeToString[r.Rcode])
	}
	s.SetTable(nil)
	if r := ask(t, s.Addr(), "udp", "reviews.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("empty table: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestForwardCacheAndTTL(t *testing.T) {
	up := startUpstream(t)
	clock := newFakeClock()
	s := startProxy(t, Config{Upstreams: []string{up.addr}, Clock: clock.Now})

	r := ask(t, s.Addr(), "udp", "www.example.org.", dns.TypeA)
	if got := answerIPs(r); !slices.Equal(got, []string{"192.0.2.1"}) || r.Answer[0].Header().Ttl != 100 {
		t.Fatalf("first answer: %v", r)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("upstream hits = %d", up.hits.Load())
	}
	clock.Advance(40 * time.Second)
	r = ask(t, s.Addr(), "tcp", "WWW.example.org.", dns.TypeA) // cache is case-insensitive
	if up.hits.Load() != 1 {
		t.Fatalf("cached query went upstream (%d hits)", up.hits.Load())
	}
	if ttl := r.Answer[0].Header().Ttl; ttl != 60 {
		t.Fatalf("cached TTL = %d, want 60 (100 - 40s in cache)", ttl)
	}
	if r.Question[0].Name != "WWW.example.org." {
		t.Errorf("question not echoed as asked: %v", r.Question[0])
	}
	clock.Advance(60 * time.Second) // expired
	ask(t, s.Addr(), "udp", "www.example.org.", dns.TypeA)
	if up.hits.Load() != 2 {
		t.Fatalf("expired entry not refreshed (%d hits)", up.hits.Load())
	}
	// A TTL above the 300s cap is cached for 300s only.
	up.ttl.Store(86400)
	ask(t, s.Addr(), "udp", "long.example.org.", dns.TypeA)
	clock.Advance(299 * time.Second)
	ask(t, s.Addr(), "udp", "long.example.org.", dns.TypeA)
	if up.hits.Load() != 3 {
		t.Fatalf("hits = %d, want 3", up.hits.Load())
	}
	clock.Advance(2 * time.Second)
	ask(t, s.Addr(), "udp", "long.example.org.", dns.TypeA)
	if up.hits.Load() != 4 {
		t.Fatalf("hits = %d, want 4 (cap 300s)", up.hits.Load())
	}
	if st := s.Stats(); st.CacheHits != 2 || st.Forwarded != 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestNegativeCaching(t *testing.T) {
	up := startUpstream(t)
	clock := newFakeClock()
	s := startProxy(t, Config{Upstreams: []string{up.addr}, Clock: clock.Now})
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		ttl   time.Duration // expected cache lifetime
	}{
		// SOA TTL 3600, minimum 120 -> min(3600,120)=120, capped at 60s.
		{"nosuch.test.", dns.TypeA, dns.RcodeNameError, 60 * time.Second},
		// NODATA with SOA minimum 20.
		{"nodata.example.org.", dns.TypeA, dns.RcodeSuccess, 20 * time.Second},
		{"www.example.org.", dns.TypeTXT, dns.RcodeSuccess, 20 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := up.hits.Load()
			if r := ask(t, s.Addr(), "udp", tc.name, tc.qtype); r.Rcode != tc.rcode || len(r.Answer) != 0 {
				t.Fatalf("answer %v", r)
			}
			clock.Advance(tc.ttl - time.Second)
			r := ask(t, s.Addr(), "udp", tc.name, tc.qtype)
			if r.Rcode != tc.rcode || up.hits.Load() != before+1 {
				t.Fatalf("not served from cache: rcode %s, upstream hits %d", dns.RcodeToString[r.Rcode], up.hits.Load()-before)
			}
			clock.Advance(time.Second)
			ask(t, s.Addr(), "udp", tc.name, tc.qtype)
			if up.hits.Load() != before+2 {
				t.Fatalf("negative entry outlived %v", tc.ttl)
			}
		})
	}
}

func TestUpstreamFailures(t *testing.T) {
	good := startUpstream(t)
	// A bound socket that never answers: queries time out.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	// A closed port: the kernel answers ICMP port unreachable.
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	closed.Close()

	tests := []struct {
		name      string
		upstreams []string
		qname     string
		rcode     int
		maxTime   time.Duration
	}{
		{"silent upstream", []string{silent.LocalAddr().String()}, "www.example.org.", dns.RcodeServerFailure, 900 * time.Millisecond},
		{"closed port", []string{closedAddr}, "www.example.org.", dns.RcodeServerFailure, 900 * time.Millisecond},
		{"fallback after timeout", []string{silent.LocalAddr().String(), good.addr}, "www.example.org.", dns.RcodeSuccess, 900 * time.Millisecond},
		{"fallback after refused", []string{closedAddr, good.addr}, "www.example.org.", dns.RcodeSuccess, 900 * time.Millisecond},
		{"fallback after SERVFAIL", []string{good.addr, good.addr}, "servfail.example.org.", dns.RcodeServerFailure, 900 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startProxy(t, Config{Upstreams: tc.upstreams, Timeout: 600 * time.Millisecond})
			start := time.Now()
			r := ask(t, s.Addr(), "udp", tc.qname, dns.TypeA)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if d := time.Since(start); d > tc.maxTime {
				t.Fatalf("took %v, want < %v", d, tc.maxTime)
			}
			// Mesh names still answer while upstreams are down.
			if r := ask(t, s.Addr(), "udp", "reviews.", dns.TypeA); len(r.Answer) != 1 {
				t.Fatalf("mesh answer while upstream down: %v", r)
			}
		})
	}
}

func TestTruncationRetriesOverTCP(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	// Over TCP the client gets all 60 records; the proxy fetched them from
	// the upstream over TCP after a truncated UDP answer.
	r := ask(t, s.Addr(), "tcp", "big.example.org.", dns.TypeA)
	if len(r.Answer) != 60 || r.Truncated {
		t.Fatalf("tcp: %d answers, tc=%v", len(r.Answer), r.Truncated)
	}
	if up.tcp.Load() != 1 {
		t.Fatalf("upstream tcp queries = %d, want 1", up.tcp.Load())
	}
	// A plain UDP client (512 bytes) gets a truncated answer with TC set
	// (served from the cache) and can retry over TCP.
	r = ask(t, s.Addr(), "udp", "big.example.org.", dns.TypeA)
	if !r.Truncated || len(r.Answer) >= 60 {
		t.Fatalf("udp: %d answers, tc=%v", len(r.Answer), r.Truncated)
	}
	// miekg's client with EDNS 4096 gets all of it over UDP.
	m := new(dns.Msg).SetQuestion("big.example.org.", dns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&dns.Client{}).Exchange(m, s.Addr())
	if err != nil || len(r.Answer) != 60 {
		t.Fatalf("edns udp: %v, %d answers", err, len(r.Answer))
	}
}

func TestInflightBound(t *testing.T) {
	up := startUpstream(t)
	up.delay.Store(int64(300 * time.Millisecond))
	s := startProxy(t, Config{Upstreams: []string{up.addr}, MaxInflight: 2, CacheSize: -1})
	var wg sync.WaitGroup
	rcodes := make([]int, 6)
	for i := range rcodes {
		wg.Go(func() {
			c := &dns.Client{Timeout: 5 * time.Second}
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion(fmt.Sprintf("slow%d.example.org.", i), dns.TypeA), s.Addr())
			rcodes[i] = -1
			if err == nil {
				rcodes[i] = r.Rcode
			}
		})
	}
	wg.Wait()
	var ok, fail int
	for _, rc := range rcodes {
		switch rc {
		case dns.RcodeSuccess:
			ok++
		case dns.RcodeServerFailure:
			fail++
		}
	}
	if ok > 2 || ok+fail != 6 || s.Stats().Rejected != uint64(fail) {
		t.Fatalf("ok=%d servfail=%d stats=%+v; want at most 2 forwarded at once", ok, fail, s.Stats())
	}
}

func TestIdenticalQueriesCoalesce(t *testing.T) {
	up := startUpstream(t)
	up.delay.Store(int64(200 * time.Millisecond))
	s := startProxy(t, Config{Upstreams: []string{up.addr}, MaxInflight: 2, CacheSize: -1})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 6 {
		wg.Go(func() {
			c := &dns.Client{Timeout: 5 * time.Second}
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion("hot.example.org.", dns.TypeA), s.Addr())
			if err == nil && len(r.Answer) == 1 && r.Answer[0].Header().Name == "hot.example.org." {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if ok.Load() != 6 || up.hits.Load() != 1 || st.Forwarded != 1 || st.Coalesced != 5 {
		t.Fatalf("answered %d/6, upstream hits %d, stats %+v; want one upstream query", ok.Load(), up.hits.Load(), st)
	}
}

func TestRateLimit(t *testing.T) {
	clock := newFakeClock()
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}, RateLimit: 2, RateBurst: 2, Clock: clock.Now})
	ask(t, s.Addr(), "tcp", "reviews.", dns.TypeA)
	ask(t, s.Addr(), "tcp", "reviews.", dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	if _, _, err := c.Exchange(new(dns.Msg).SetQuestion("reviews.", dns.TypeA), s.Addr()); err == nil {
		t.Fatal("third query within the burst was answered")
	}
	clock.Advance(time.Second)
	ask(t, s.Addr(), "udp", "reviews.", dns.TypeA)
	if st := s.Stats(); st.Dropped != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("search default.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{ResolvConf: rc})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{"10.96.0.10:53", "[fd00::a]:53"}) {
		t.Fatalf("upstreams = %v", got)
	}
	if s.cfg.Addr != DefaultAddr || s.cfg.Timeout != DefaultTimeout || s.cfg.MaxInflight != DefaultMaxInflight || s.cache.max != DefaultCacheSize {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
	if s, err := New(Config{Upstreams: []string{"10.0.0.1", "10.0.0.2:5353", "[fd00::1]:53"}}); err != nil ||
		!slices.Equal(s.Upstreams(), []string{"10.0.0.1:53", "10.0.0.2:5353", "[fd00::1]:53"}) {
		t.Fatalf("explicit upstreams: %v %v", s, err)
	}
	for _, bad := range []Config{
		{Upstreams: []string{"dns.google"}},
		{ResolvConf: filepath.Join(dir, "missing")},
		{Addr: "no-port"},
	} {
		if _, err := New(bad); err == nil || !strings.HasPrefix(err.Error(), "dnsproxy: ") {
			t.Errorf("New(%+v) = %v, want a dnsproxy error", bad, err)
		}
	}
	empty := filepath.Join(dir, "empty.conf")
	_ = os.WriteFile(empty, []byte("search x\n"), 0o644)
	if _, err := New(Config{ResolvConf: empty}); err == nil {
		t.Error("resolv.conf without nameserver accepted")
	}
}

// freeUDPAndTCP returns a loopback address whose port was free for both
// UDP and TCP a moment ago (a port free for UDP alone may be taken for TCP
// by a test running in parallel).
func freeUDPAndTCP(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}

func TestRefusesItselfAsUpstream(t *testing.T) {
	addr := freeUDPAndTCP(t)
	s, err := New(Config{Addr: addr, Upstreams: []string{addr}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "proxy itself") {
		_ = s.Shutdown(context.Background())
		t.Fatalf("Start = %v, want loop error", err)
	}
}

func TestContextCancelStops(t *testing.T) {
	up := startUpstream(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{up.addr}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still listening after ctx cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownLeavesNoGoroutines(t *testing.T) {
	up := startUpstream(t)
	base := runtime.NumGoroutine()
	s, err := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{up.addr}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s.SetTable(testTable(t))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ask(t, s.Addr(), "udp", "reviews.", dns.TypeA)
	ask(t, s.Addr(), "udp", "www.example.org.", dns.TypeA)
	// An idle client TCP connection must not keep the server alive.
	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	m := new(dns.Msg).SetQuestion("reviews.", dns.TypeA)
	m.SetEdns0(1232, false)
	co := &dns.Conn{Conn: idle}
	if err := co.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	r, err := co.ReadMsg()
	if err != nil || len(r.Answer) != 1 || r.IsEdns0() == nil {
		t.Fatalf("tcp answer %v %v (want an OPT record echoed)", r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after shutdown, %d before\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}
