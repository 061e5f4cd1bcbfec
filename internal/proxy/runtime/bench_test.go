package runtime

import (
	"fmt"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// bigRouteConfig is a 1,000-virtual-host table like a sidecar in a large mesh.
func bigRouteConfig() *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "80"}
	for i := range 1000 {
		h := fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%20)
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    h + ":80",
			Domains: []string{h, h + ":80", fmt.Sprintf("svc-%d", i), fmt.Sprintf("svc-%d:80", i), fmt.Sprintf("10.96.%d.%d", i/250, i%250)},
			Routes: []*routev3.Route{
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/admin"}, Headers: []*routev3.HeaderMatcher{strm("x-role", &routev3.HeaderMatcher{}, "exact", "admin")}}, Action: clusterRoute("outbound|80|admin|" + h)},
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: clusterRoute("outbound|80||" + h)},
			},
		})
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: clusterRoute("PassthroughCluster")}}})
	return rc
}

func BenchmarkSelect(b *testing.B) {
	s := mustBuild(b, nil, bigRouteConfig())
	rt := s.RouteTable("80")
	host, path, method := []byte("svc-777.ns-17.svc.cluster.local:80"), []byte("/api/v1/items"), []byte("GET")
	hdr := headers("x-role", "user")
	if r := rt.Select(host, path, method, hdr, nil); r == nil || r.ClusterName != "outbound|80||svc-777.ns-17.svc.cluster.local" {
		b.Fatalf("wrong route %v", r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rt.Select(host, path, method, hdr, nil)
	}
}

func BenchmarkSelectMixedCaseHost(b *testing.B) {
	s := mustBuild(b, nil, bigRouteConfig())
	rt := s.RouteTable("80")
	host, path, method := []byte("SVC-777.ns-17.svc.cluster.local:80"), []byte("/"), []byte("GET")
	b.ReportAllocs()
	for b.Loop() {
		if rt.Select(host, path, method, nil, nil) == nil {
			b.Fatal("no route")
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, p := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST, clusterv3.Cluster_RANDOM, clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		b.Run(p.String(), func(b *testing.B) {
			_, c := lbCluster(b, p, 50, outlier)
			key := upstream.HashString("user-42")
			b.ReportAllocs()
			for b.Loop() {
				if c.Pick(key, true) == nil {
					b.Fatal("nil")
				}
			}
		})
	}
}

func TestHotPathAllocs(t *testing.T) {
	s := mustBuild(t, nil, append(weftResources(), bigRouteConfig())...)
	rt := s.RouteTable("9080")
	hdr := headers("end-user", "bob", "x-user", "u")
	rte := rt.Select([]byte("Reviews:9080"), []byte("/api/v1/reviews/1"), []byte("GET"), hdr, []byte("a=b"))
	c := rte.PickCluster(12345)
	host, path, method, query := []byte("Reviews:9080"), []byte("/api/v1/reviews/1"), []byte("GET"), []byte("a=b")
	checks := map[string]func(){
		"Select":      func() { rt.Select(host, path, method, hdr, query) },
		"PickCluster": func() { rte.PickCluster(77) },
		"Pick":        func() { c.Pick(0, false) },
		"RequestHash": func() { rte.RequestHash(hdr, nil, s.Cluster(reviewsV1).Endpoints()[0].Address.Addr()) },
		"OutboundListenerFor": func() {
			s.OutboundListenerFor(s.Cluster(reviewsV1).Endpoints()[0].Address.Addr(), 9080)
		},
	}
	long := strings.Repeat("Abc", 20)
	var sms []route.StringMatcher
	for _, pat := range []*matcherv3.StringMatcher{
		{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: long}, IgnoreCase: true},
		{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: long}, IgnoreCase: true},
		{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: long}, IgnoreCase: true},
		{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: long}, IgnoreCase: true},
		{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: long}},
	} {
		sm, err := route.NewStringMatcher(pat)
		if err != nil {
			t.Fatal(err)
		}
		sms = append(sms, sm)
	}
	in := []byte("x" + strings.ToLower(long) + long)
	checks["StringMatcher"] = func() {
		for i := range sms {
			sms[i].Match(in)
		}
	}
	for i, want := range []bool{false, false, true, true, true} {
		if got := sms[i].Match(in); got != want {
			t.Errorf("string matcher %d = %v, want %v", i, got, want)
		}
	}
	for name, f := range checks {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %.1f times per call", name, n)
		}
	}
}
