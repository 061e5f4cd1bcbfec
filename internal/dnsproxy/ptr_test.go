package dnsproxy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func TestReverseAddr(t *testing.T) {
	tests := []struct {
		name string
		want string // "" : not an address
	}{
		{"12.0.96.10.in-addr.arpa", "10.96.0.12"},
		{"0.0.0.0.in-addr.arpa", "0.0.0.0"},
		{"255.255.255.255.in-addr.arpa", "255.255.255.255"},
		{"2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", "fd00::12"},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa", "4321:0:1:2:3:4:567:89ab"},
		{"0.96.10.in-addr.arpa", ""},      // a zone, not an address
		{"1.12.0.96.10.in-addr.arpa", ""}, // too many labels
		{"012.0.96.10.in-addr.arpa", ""},  // leading zero
		{"256.0.96.10.in-addr.arpa", ""},
		{"-1.0.96.10.in-addr.arpa", ""},
		{"a.0.96.10.in-addr.arpa", ""},
		{"..0.10.in-addr.arpa", ""},
		{"in-addr.arpa", ""},
		{"2.1.0.0.d.f.ip6.arpa", ""},
		{"21.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", ""},
		{"g.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", ""},
		{"reviews.default.svc.cluster.local", ""},
	}
	for _, tc := range tests {
		got, ok := reverseAddr(tc.name)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: got %s, want no address", tc.name, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: got %s %v, want %s", tc.name, got, ok, tc.want)
		}
	}
}

// TestPTR: reverse lookups of mesh addresses are answered from the table
// with the canonical hosts (never generated short names or wildcards);
// everything else goes to the upstream.
func TestPTR(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	shared, err := BuildTable([]Host{
		{Name: "reviews.default.svc.cluster.local", HostEntry: HostEntry{IPv4: addrs("10.96.0.12"), IPv6: addrs("fd00::12"), Namespace: "default"}},
		{Name: "reviews-legacy.example.com", HostEntry: HostEntry{IPv4: addrs("10.96.0.12")}},
		{Name: "*.wild.example.com", HostEntry: HostEntry{IPv4: addrs("240.240.0.9")}},
	}, "default", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	ptrs := func(m *dns.Msg) []string {
		var out []string
		for _, rr := range m.Answer {
			if p, ok := rr.(*dns.PTR); ok {
				out = append(out, p.Ptr)
			}
		}
		return out
	}
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
		mesh  bool
	}{
		{"12.0.96.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"reviews.default.svc.cluster.local."}, true},
		{"12.0.96.10.IN-ADDR.ARPA.", dns.TypePTR, dns.RcodeSuccess, []string{"reviews.default.svc.cluster.local."}, true},
		{"2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"reviews.default.svc.cluster.local."}, true},
		{"1.0.240.240.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"api.external.com."}, true},
		// A mesh address has a name, so other types are NODATA, not NXDOMAIN.
		{"12.0.96.10.in-addr.arpa.", dns.TypeTXT, dns.RcodeSuccess, nil, false},
		// Wildcards have no single name; unknown addresses and zones are
		// the upstream's (which says NXDOMAIN here).
		{"9.0.240.240.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil, false},
		{"99.0.96.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil, false},
		{"0.96.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil, false},
	}
	for _, tc := range tests {
		resp := ask(t, s.Addr(), "udp", tc.name, tc.qtype)
		if resp.Rcode != tc.rcode || !slices.Equal(ptrs(resp), tc.want) || resp.Authoritative != tc.mesh {
			t.Errorf("%s %s: rcode %s aa=%v %v, want %s aa=%v %v", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[resp.Rcode], resp.Authoritative, ptrs(resp), dns.RcodeToString[tc.rcode], tc.mesh, tc.want)
		}
		for _, rr := range resp.Answer {
			if rr.Header().Ttl != meshTTL {
				t.Errorf("%s: TTL %d", tc.name, rr.Header().Ttl)
			}
		}
	}
	// An address shared by two hosts answers both, sorted.
	s.SetTable(shared)
	if got := ptrs(ask(t, s.Addr(), "tcp", "12.0.96.10.in-addr.arpa.", dns.TypePTR)); !slices.Equal(got,
		[]string{"reviews-legacy.example.com.", "reviews.default.svc.cluster.local."}) {
		t.Errorf("shared address: %v", got)
	}
}
