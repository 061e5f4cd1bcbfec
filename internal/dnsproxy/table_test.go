package dnsproxy

import (
	"slices"
	"strings"
	"testing"
)

func TestBuildTableShortNames(t *testing.T) {
	hosts := []Host{
		{Name: "reviews.default.svc.cluster.local", HostEntry: HostEntry{IPv4: addrs("10.0.0.1"), Namespace: "default"}},
		{Name: "ratings.prod.svc.cluster.local.", HostEntry: HostEntry{IPv4: addrs("10.0.0.2")}},
		// A ServiceEntry in namespace "other" declaring a host shaped like
		// prod's service gets no short names.
		{Name: "fake.prod.svc.cluster.local", HostEntry: HostEntry{IPv4: addrs("10.0.0.3"), Namespace: "other"}},
		// Another cluster's domain: no short names.
		{Name: "remote.default.svc.east.local", HostEntry: HostEntry{IPv4: addrs("10.0.0.4")}},
		{Name: "API.Example.com", HostEntry: HostEntry{IPv4: addrs("10.0.0.5")}},
		{Name: "*.wild.example.com", HostEntry: HostEntry{IPv4: addrs("10.0.0.6")}},
		// A canonical host that collides with a generated short name wins.
		{Name: "reviews.default", HostEntry: HostEntry{IPv4: addrs("10.0.0.7")}},
	}
	tbl, err := BuildTable(hosts, "default", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c := compile(tbl)
	tests := []struct {
		query string
		want  string // "" = not answered
	}{
		{"reviews.default.svc.cluster.local", "10.0.0.1"},
		{"reviews", "10.0.0.1"},
		{"reviews.default.svc", "10.0.0.1"},
		{"reviews.default", "10.0.0.7"},
		{"reviews.default.svc.default.svc.cluster.local", "10.0.0.1"},
		{"reviews.svc.cluster.local", ""},
		{"reviews.cluster.local", ""},
		{"ratings.prod", "10.0.0.2"},
		{"ratings.prod.svc", "10.0.0.2"},
		{"ratings.prod.default.svc.cluster.local", "10.0.0.2"},
		{"ratings.prod.svc.svc.cluster.local", ""},
		{"ratings", ""},
		{"ratings.default.svc.cluster.local", ""},
		{"fake.prod.svc.cluster.local", "10.0.0.3"},
		{"fake.prod", ""},
		{"remote.default.svc.east.local", "10.0.0.4"},
		{"remote", ""},
		{"remote.default", ""},
		{"api.example.com", "10.0.0.5"},
		{"x.wild.example.com", "10.0.0.6"},
		{"x.y.wild.example.com", "10.0.0.6"},
		{"wild.example.com", ""},
		{"example.com", ""},
		{"", ""},
		{"com", ""},
	}
	for _, tc := range tests {
		e := c.lookup(normalize(tc.query))
		got := ""
		if e != nil {
			got = e.IPv4[0].String()
		}
		if got != tc.want {
			t.Errorf("lookup(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
	// Another namespace's proxy: no bare "reviews".
	other, err := BuildTable(hosts, "prod", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	oc := compile(other)
	if oc.lookup("reviews") != nil || oc.lookup("ratings") == nil || oc.lookup("ratings.prod.svc.cluster.local") == nil {
		t.Errorf("namespace prod view wrong: %v", other.List())
	}
	if oc.lookup("reviews.default.prod.svc.cluster.local") == nil {
		t.Errorf("search-expanded cross-namespace form missing")
	}
	// No suffix: no short names at all.
	plain, err := BuildTable(hosts, "default", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Hosts) != len(hosts) {
		t.Errorf("without a domain suffix got %d names, want %d", len(plain.Hosts), len(hosts))
	}
}

func TestBuildTableMergesAndValidates(t *testing.T) {
	tbl, err := BuildTable([]Host{
		{Name: "a.example.com", HostEntry: HostEntry{IPv4: addrs("10.0.0.2", "10.0.0.1")}},
		{Name: "A.example.com.", HostEntry: HostEntry{IPv4: addrs("10.0.0.1"), IPv6: addrs("::ffff:10.0.0.3", "fd00::1")}},
	}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	e := tbl.Hosts["a.example.com"]
	if got := slices.Concat(e.IPv4, e.IPv6); len(got) != 4 || got[0].String() != "10.0.0.1" || got[2].String() != "10.0.0.3" {
		t.Fatalf("merged entry = %+v", e)
	}
	for _, bad := range []Host{
		{Name: ""},
		{Name: "a..b"},
		{Name: "a.*.b"},
		{Name: "has space.com"},
		{Name: "example.com", HostEntry: HostEntry{Wildcard: true}},
		{Name: strings.Repeat("a", 64) + ".com"},
		{Name: strings.Repeat("abcdefghi.", 30) + "com"},
	} {
		if _, err := BuildTable([]Host{bad}, "", ""); err == nil {
			t.Errorf("BuildTable(%q) accepted", bad.Name)
		} else if !strings.Contains(err.Error(), "host ") {
			t.Errorf("error %q does not name the host", err)
		}
	}
}

func TestCompileSkipsHostsWithoutAddresses(t *testing.T) {
	c := compile(&NameTable{Hosts: map[string]HostEntry{
		"noaddr.example.com": {},
		"Mixed.Example.com.": {IPv4: addrs("10.0.0.1")},
		"example.net":        {IPv4: addrs("10.0.0.2"), Wildcard: true},
	}})
	if c.lookup("noaddr.example.com") != nil {
		t.Error("host without addresses should be forwarded")
	}
	if c.lookup("mixed.example.com") == nil {
		t.Error("keys are not normalized")
	}
	if c.lookup("x.example.net") == nil || c.lookup("example.net") != nil {
		t.Error("Wildcard flag without *. prefix")
	}
}
