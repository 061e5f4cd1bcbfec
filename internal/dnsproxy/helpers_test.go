package dnsproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUpstream is a real DNS server on 127.0.0.1:0 (UDP and TCP, same port)
// playing the host's resolver. Names it knows:
//
//	*.example.org.        A 192.0.2.1 (TTL from ttl)
//	big.example.org.      60 A records; over UDP it answers TC=1 only
//	nodata.example.org.   NOERROR, no answer, SOA minimum 20
//	servfail.example.org. SERVFAIL
//	anything else         NXDOMAIN with SOA (TTL 3600, minimum 120)
type fakeUpstream struct {
	addr  string
	hits  atomic.Int64
	tcp   atomic.Int64
	ttl   atomic.Uint32
	delay atomic.Int64 // nanoseconds to sleep before answering
	mu    sync.Mutex
	seen  []string
}

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	u.ttl.Store(100)
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

func (u *fakeUpstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	u.hits.Add(1)
	isTCP := w.LocalAddr().Network() == "tcp"
	if isTCP {
		u.tcp.Add(1)
	}
	if d := u.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	q := req.Question[0]
	u.mu.Lock()
	u.seen = append(u.seen, q.Name)
	u.mu.Unlock()
	resp := new(dns.Msg).SetReply(req)
	resp.RecursionAvailable = true
	name := strings.ToLower(q.Name)
	soa := func(ttl, minttl uint32) dns.RR {
		return &dns.SOA{Hdr: dns.RR_Header{Name: "example.org.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.example.org.", Mbox: "root.example.org.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: minttl}
	}
	switch {
	case name == "servfail.example.org.":
		resp.Rcode = dns.RcodeServerFailure
	case name == "nodata.example.org.":
		resp.Ns = []dns.RR{soa(3600, 20)}
	case name == "big.example.org." && q.Qtype == dns.TypeA:
		if !isTCP {
			resp.Truncated = true
			break
		}
		for i := range 60 {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 50},
				A: net.IPv4(198, 51, 100, byte(i+1))})
		}
	case strings.HasSuffix(name, ".example.org.") && q.Qtype == dns.TypeA:
		resp.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: u.ttl.Load()},
			A: net.IPv4(192, 0, 2, 1)}}
	case strings.HasSuffix(name, ".example.org."):
		resp.Ns = []dns.RR{soa(3600, 20)}
	default:
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{soa(3600, 120)}
	}
	_ = w.WriteMsg(resp)
}

// fakeClock is an injected clock for cache and rate-limit tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testTable is the mesh as seen by a proxy in namespace "default".
func testTable(t testing.TB) *NameTable {
	t.Helper()
	tbl, err := BuildTable([]Host{
		{Name: "reviews.default.svc.cluster.local", HostEntry: HostEntry{
			IPv4: addrs("10.96.0.12"), IPv6: addrs("fd00::12"), Namespace: "default"}},
		{Name: "ratings.prod.svc.cluster.local", HostEntry: HostEntry{IPv4: addrs("10.96.0.13"), Namespace: "prod"}},
		{Name: "v6only.default.svc.cluster.local", HostEntry: HostEntry{IPv6: addrs("fd00::14"), Namespace: "default"}},
		{Name: "api.external.com", HostEntry: HostEntry{IPv4: addrs("240.240.0.1", "240.240.0.2")}},
		{Name: "*.wild.example.com", HostEntry: HostEntry{IPv4: addrs("240.240.0.9")}},
		// Mesh hosts the upstream knows nothing about, for the
		// never-NXDOMAIN rule.
		{Name: "db.mesh.internal", HostEntry: HostEntry{IPv4: addrs("240.240.0.10")}},
	}, "default", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startProxy runs a Server on 127.0.0.1:0 with the test table.
func startProxy(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.SetTable(testTable(t))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// ask sends one query with the miekg client.
func ask(t testing.TB, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return resp
}

// answerIPs lists the A/AAAA addresses of a response.
func answerIPs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}
