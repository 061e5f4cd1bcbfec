package model

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func obj(kind config.Kind, ns, name string, age int, spec proto.Message) *config.Object {
	return &config.Object{Kind: kind, Meta: config.Meta{Name: name, Namespace: ns, CreationTimestamp: epoch.Add(time.Duration(age) * time.Second)}, Spec: spec}
}

func build(t *testing.T, vips VIPAllocator, objs ...*config.Object) *Snapshot {
	t.Helper()
	s, err := Build(config.NewSnapshot(1, objs, nil), BuildOptions{VIPs: vips})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHostMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"*", "a.b", true},
		{"a.b", "a.b", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "*.example.com", true},
		{"*.com", "*.example.com", true},
		{"*.example.com", "*.com", false},
		{"a.example.com", "b.example.com", false},
	} {
		if got := HostMatches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("HostMatches(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
	if p, ok := MostSpecific("a.example.com", []string{"*", "*.com", "*.example.com"}); !ok || p != "*.example.com" {
		t.Errorf("MostSpecific = %q %v, want *.example.com", p, ok)
	}
}

func TestResolveHost(t *testing.T) {
	m := DefaultMeshConfig()
	for in, want := range map[string]string{
		"reviews":         "reviews.bookinfo.svc.cluster.local",
		"reviews.other":   "reviews.other",
		"*":               "*",
		"*.example.com":   "*.example.com",
		"api.example.com": "api.example.com",
	} {
		if got := m.ResolveHost(in, "bookinfo"); got != want {
			t.Errorf("ResolveHost(%q) = %q, want %q", in, got, want)
		}
	}
}

type memVIPStore struct {
	mu    sync.Mutex
	m     map[string]string
	saves int
}

func (s *memVIPStore) LoadVIPs() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.m {
		out[k] = v
	}
	return out, nil
}

func (s *memVIPStore) SaveVIPs(m map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	s.saves++
	return nil
}

func TestVIPTableStableAndPersisted(t *testing.T) {
	store := &memVIPStore{}
	tab, err := NewVIPTable(store)
	if err != nil {
		t.Fatal(err)
	}
	hosts := make([]string, 500)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("svc-%d.example.com", i)
	}
	first, err := tab.VIPs(hosts)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for h, ip := range first {
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s share VIP %s", h, other, ip)
		}
		seen[ip] = h
		if ip[:8] != "240.240." {
			t.Fatalf("VIP %s outside 240.240.0.0/16", ip)
		}
	}
	// Adding a host keeps everyone else's address; a new table from the
	// same store (a restart) gives the same answers.
	more := append(append([]string{}, hosts...), "new.example.com")
	second, _ := tab.VIPs(more)
	restarted, err := NewVIPTable(store)
	if err != nil {
		t.Fatal(err)
	}
	third, _ := restarted.VIPs(more)
	for _, h := range hosts {
		if second[h] != first[h] || third[h] != first[h] {
			t.Fatalf("VIP of %s changed: %s -> %s -> %s", h, first[h], second[h], third[h])
		}
	}
	savesBefore := store.saves
	if _, err := restarted.VIPs(more); err != nil {
		t.Fatal(err)
	}
	if store.saves != savesBefore {
		t.Fatalf("an unchanged host set was persisted again")
	}
}

func TestBuildServicesAndEndpoints(t *testing.T) {
	se := obj(config.KindServiceEntry, "default", "reviews", 0, &networkingv1.ServiceEntry{
		Hosts:            []string{"reviews.default.svc.cluster.local"},
		Ports:            []*networkingv1.ServicePort{{Number: 9080, Name: "http", Protocol: "http", TargetPort: 8080}},
		Resolution:       networkingv1.ServiceEntry_STATIC,
		WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "reviews"}},
		Endpoints:        []*networkingv1.WorkloadEntry{{Address: "10.0.0.9", Ports: map[string]uint32{"http": 7000}}},
	})
	weV1 := obj(config.KindWorkloadEntry, "default", "reviews-v1", 0, &networkingv1.WorkloadEntry{
		Address: "10.0.0.1", Labels: map[string]string{"app": "reviews", "version": "v1"}, ServiceAccount: "reviews"})
	weOtherNS := obj(config.KindWorkloadEntry, "other", "reviews-x", 0, &networkingv1.WorkloadEntry{
		Address: "10.0.0.2", Labels: map[string]string{"app": "reviews"}})
	dup := obj(config.KindServiceEntry, "default", "reviews-dup", 5, &networkingv1.ServiceEntry{
		Hosts: []string{"reviews.default.svc.cluster.local"}, Ports: []*networkingv1.ServicePort{{Number: 1, Name: "x", Protocol: "TCP"}}})
	dns := obj(config.KindServiceEntry, "default", "ext", 0, &networkingv1.ServiceEntry{
		Hosts: []string{"api.example.com"}, Ports: []*networkingv1.ServicePort{{Number: 443, Name: "tls", Protocol: "TLS"}},
		Resolution: networkingv1.ServiceEntry_DNS, ExportTo: []string{"."}})
	vips, _ := NewVIPTable(nil)
	s := build(t, vips, se, weV1, weOtherNS, dup, dns)

	svc := s.Service("reviews.default.svc.cluster.local")
	if svc == nil || svc.Source.Name != "reviews" {
		t.Fatalf("reviews: want the older ServiceEntry to define the host, got %+v", svc)
	}
	if svc.Ports[0].Protocol != ProtocolHTTP || !svc.AutoAllocated || len(svc.Addresses) != 1 {
		t.Fatalf("reviews service: %+v", svc)
	}
	eps := s.Endpoints(svc.Hostname)
	if len(eps) != 2 {
		t.Fatalf("want 2 endpoints (inline + selected WorkloadEntry in the same namespace), got %d", len(eps))
	}
	byAddr := map[string]*Endpoint{}
	for _, e := range eps {
		byAddr[e.Address] = e
	}
	if e := byAddr["10.0.0.9"]; e == nil || e.Port != 7000 {
		t.Fatalf("inline endpoint port from ports map: %+v", e)
	}
	if e := byAddr["10.0.0.1"]; e == nil || e.Port != 8080 || e.ServiceAccount != "reviews" || e.Workload.Name != "reviews-v1" {
		t.Fatalf("WorkloadEntry endpoint uses targetPort and carries identity: %+v", e)
	}
	ext := s.Service("api.example.com")
	if ext.Resolution != ResolutionDNS || len(s.Endpoints("api.example.com")) != 1 || s.Endpoints("api.example.com")[0].Address != "api.example.com" {
		t.Fatalf("DNS service without endpoints resolves its own host: %+v %+v", ext, s.Endpoints("api.example.com"))
	}
	if ext.VisibleTo("other") || !ext.VisibleTo("default") {
		t.Fatalf("exportTo '.' must limit visibility to the namespace: %v", ext.ExportTo)
	}
	if got := len(s.ServicesFor(&Proxy{Namespace: "other"})); got != 1 {
		t.Fatalf("proxy in other namespace sees %d services, want 1", got)
	}
}

func TestEndpointOnlyChangeKeepsServicesHash(t *testing.T) {
	se := obj(config.KindServiceEntry, "default", "a", 0, &networkingv1.ServiceEntry{
		Hosts: []string{"a.example.com"}, Addresses: []string{"10.1.1.1"},
		Ports: []*networkingv1.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}, Resolution: networkingv1.ServiceEntry_STATIC,
		WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "a"}}})
	we := func(addr string) *config.Object {
		return obj(config.KindWorkloadEntry, "default", "a-1", 0, &networkingv1.WorkloadEntry{Address: addr, Labels: map[string]string{"app": "a"}})
	}
	s1 := build(t, nil, se, we("10.0.0.1"))
	s2 := build(t, nil, se, we("10.0.0.2"))
	if s1.ServicesHash != s2.ServicesHash {
		t.Fatalf("services hash changed on an endpoint-only change")
	}
	if s1.EndpointsHash == s2.EndpointsHash {
		t.Fatalf("endpoints hash did not change when an endpoint moved")
	}
}

func TestDestinationRuleLookupOrder(t *testing.T) {
	se := obj(config.KindServiceEntry, "prod", "r", 0, &networkingv1.ServiceEntry{
		Hosts: []string{"reviews.prod.svc.cluster.local"}, Ports: []*networkingv1.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}})
	drIn := func(ns, name, host string) *config.Object {
		return obj(config.KindDestinationRule, ns, name, 0, &networkingv1.DestinationRule{Host: host})
	}
	s := build(t, nil, se,
		drIn("istio-system", "root", "*.svc.cluster.local"),
		drIn("prod", "svcns", "reviews"),
		drIn("client", "clientns-wild", "*.prod.svc.cluster.local"),
		drIn("client", "clientns-exact", "reviews.prod.svc.cluster.local"),
	)
	host := "reviews.prod.svc.cluster.local"
	for _, tc := range []struct{ proxyNS, want string }{
		{"client", "clientns-exact"}, // proxy namespace first, most specific host wins
		{"prod", "svcns"},            // then the service's namespace
		{"elsewhere", "svcns"},
	} {
		dr := s.DestinationRuleFor(&Proxy{Namespace: tc.proxyNS}, host)
		if dr == nil || dr.Object.Name != tc.want {
			t.Errorf("proxy in %s: got %v, want %s", tc.proxyNS, dr, tc.want)
		}
	}
	s2 := build(t, nil, se, drIn("istio-system", "root", "*.svc.cluster.local"))
	if dr := s2.DestinationRuleFor(&Proxy{Namespace: "x"}, host); dr == nil || dr.Object.Name != "root" {
		t.Errorf("root namespace fallback: got %v", dr)
	}
}

func TestSidecarScoping(t *testing.T) {
	mk := func(ns, host string) *config.Object {
		return obj(config.KindServiceEntry, ns, host, 0, &networkingv1.ServiceEntry{
			Hosts: []string{host}, Addresses: []string{"10.9.9.9"}, Ports: []*networkingv1.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}})
	}
	sc := obj(config.KindSidecar, "shop", "default", 0, &networkingv1.Sidecar{
		Egress: []*networkingv1.IstioEgressListener{{Hosts: []string{"./*", "istio-system/*"}}}})
	selected := obj(config.KindSidecar, "shop", "payments", 0, &networkingv1.Sidecar{
		WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "payments"}},
		Egress:           []*networkingv1.IstioEgressListener{{Hosts: []string{"bank/*"}}}})
	s := build(t, nil, mk("shop", "cart.shop"), mk("bank", "ledger.bank"), mk("istio-system", "telemetry.istio-system"), sc, selected)
	names := func(p *Proxy) []string {
		var out []string
		for _, svc := range s.ServicesFor(p) {
			out = append(out, svc.Hostname)
		}
		return out
	}
	if got := fmt.Sprint(names(&Proxy{Namespace: "shop"})); got != "[cart.shop telemetry.istio-system]" {
		t.Errorf("namespace default Sidecar: %s", got)
	}
	if got := fmt.Sprint(names(&Proxy{Namespace: "shop", Labels: map[string]string{"app": "payments"}})); got != "[ledger.bank]" {
		t.Errorf("selector Sidecar wins over namespace default: %s", got)
	}
	if got := len(names(&Proxy{Namespace: "bank"})); got != 3 {
		t.Errorf("namespace without Sidecar sees everything, got %d", got)
	}
}
