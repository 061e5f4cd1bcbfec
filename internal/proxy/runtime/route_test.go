package runtime

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

func mustBuild(t testing.TB, prev *Snapshot, res ...proto.Message) *Snapshot {
	t.Helper()
	s, err := Build(prev, res...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

// headers returns a header lookup over name/value pairs; values are
// converted once so lookups do not allocate.
func headers(kv ...string) func(string) ([]byte, bool) {
	vals := make([][]byte, len(kv))
	for i := range kv {
		vals[i] = []byte(kv[i])
	}
	return func(name string) ([]byte, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == name {
				return vals[i+1], true
			}
		}
		return nil, false
	}
}

// TestSimulateRequests sends requests through the listener -> route table ->
// route -> cluster path the data plane takes.
func TestSimulateRequests(t *testing.T) {
	s := mustBuild(t, nil, weftResources()...)
	l := s.OutboundListenerFor(netip.MustParseAddr("10.96.0.10"), 9080)
	if l == nil || l.Name != "0.0.0.0_9080" {
		t.Fatalf("listener = %v, want 0.0.0.0_9080", l)
	}
	fc := l.FilterChainFor(ConnInfo{DstPort: 9080})
	if fc == nil || fc.HTTP == nil || fc.HTTP.RouteConfigName != "9080" {
		t.Fatalf("filter chain = %+v", fc)
	}
	rt := s.RouteTable(fc.HTTP.RouteConfigName)
	tests := []struct {
		name, host, path, method, query string
		hdr                             []string
		wantRoute                       string
		wantCluster                     string // for single-cluster routes
		wantAction                      route.ActionKind
	}{
		{name: "jason goes to v2", host: "reviews:9080", path: "/reviews/1", method: "GET", hdr: []string{"end-user", "jason"}, wantRoute: "jason", wantCluster: reviewsV2},
		{name: "FQDN upper-case host", host: "Reviews.Default.SVC.cluster.local", path: "/x", method: "GET", hdr: []string{"end-user", "jason"}, wantRoute: "jason", wantCluster: reviewsV2},
		{name: "regex + method", host: "reviews", path: "/api/v2/reviews/17", method: "GET", wantRoute: "regex", wantCluster: reviewsV3},
		{name: "regex must match whole path", host: "reviews", path: "/api/v2/reviews/17/x", method: "GET", wantRoute: "default", wantAction: route.ActionWeightedClusters},
		{name: "regex wrong method", host: "reviews", path: "/api/v2/reviews/17", method: "POST", wantRoute: "default", wantAction: route.ActionWeightedClusters},
		{name: "query param", host: "reviews", path: "/debug", method: "GET", query: "a=b&canary=1", wantRoute: "query", wantCluster: reviewsV3},
		{name: "query param mismatch", host: "reviews", path: "/debug", method: "GET", query: "canary=2", wantRoute: "default", wantAction: route.ActionWeightedClusters},
		{name: "redirect", host: "reviews", path: "/old/x", method: "GET", wantRoute: "redirect", wantAction: route.ActionRedirect},
		{name: "direct", host: "reviews", path: "/healthz", method: "GET", wantRoute: "direct", wantAction: route.ActionDirectResponse},
		{name: "ratings", host: "ratings.default.svc.cluster.local:9080", path: "/", method: "GET", wantRoute: "default", wantCluster: ratingsAll},
		{name: "unknown host falls to allow_any", host: "example.org", path: "/", method: "GET", wantRoute: "allow_any", wantCluster: "PassthroughCluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rt.Select([]byte(tc.host), []byte(tc.path), []byte(tc.method), headers(tc.hdr...), []byte(tc.query))
			if r == nil {
				t.Fatal("no route")
			}
			if r.Name != tc.wantRoute {
				t.Fatalf("route = %q, want %q", r.Name, tc.wantRoute)
			}
			if r.Action != tc.wantAction {
				t.Fatalf("action = %v, want %v", r.Action, tc.wantAction)
			}
			if tc.wantCluster != "" {
				c := r.PickCluster(0)
				if c == nil || c.Name != tc.wantCluster {
					t.Fatalf("cluster = %v, want %s", c, tc.wantCluster)
				}
			}
		})
	}
	// Route details the data path needs.
	def := rt.Select([]byte("reviews"), []byte("/"), []byte("GET"), nil, nil)
	if def.Timeout.Seconds() != 3 || def.Retry == nil || def.Retry.NumRetries != 2 || !def.Retry.AvoidPreviousHosts {
		t.Errorf("default route timeout/retry = %v %+v", def.Timeout, def.Retry)
	}
	if len(def.RequestHeadersToAdd) != 1 || def.RequestHeadersToAdd[0].Name != "x-route" {
		t.Errorf("headers to add = %+v", def.RequestHeadersToAdd)
	}
	if h, ok := def.RequestHash(headers("x-user", "u1"), nil, netip.Addr{}); !ok || h != upstream.Hash64([]byte("u1")) {
		t.Errorf("hash = %v %v", h, ok)
	}
	red := rt.Select([]byte("reviews"), []byte("/old"), []byte("GET"), nil, nil).Redirect
	if red.PrefixRewrite != "/new" || red.Status != 302 {
		t.Errorf("redirect = %+v", red)
	}
	rat := rt.Select([]byte("ratings"), []byte("/"), []byte("GET"), nil, nil)
	if rat.Fault == nil || rat.Fault.AbortStatus != 418 || rat.Fault.DelayPerMillion != 500_000 {
		t.Errorf("ratings fault from virtual host = %+v", rat.Fault)
	}
}

func TestDomainMatching(t *testing.T) {
	s := mustBuild(t, nil, weftResources()...)
	rt := s.RouteTable("9080")
	tests := []struct{ host, want string }{
		{"reviews", "reviews.default.svc.cluster.local:9080"},
		{"REVIEWS:9080", "reviews.default.svc.cluster.local:9080"},
		{"a.example.com", "wildcard-suffix"},
		{"x.api.example.com", "wildcard-suffix"},
		{"example.com", "allow_any"}, // "*.example.com" needs at least one char before
		{"static.foo", "wildcard-suffix"},
		{"reviews:9081", "allow_any"}, // Envoy does not strip ports by default
		{"", "allow_any"},
	}
	for _, tc := range tests {
		vh := rt.VirtualHostFor([]byte(tc.host))
		if vh == nil || vh.Name != tc.want {
			t.Errorf("host %q -> %v, want %s", tc.host, vh, tc.want)
		}
	}
	// Longest suffix wins.
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{
		{Name: "short", Domains: []string{"*.com"}},
		{Name: "long", Domains: []string{"*.foo.com"}},
		{Name: "prefix", Domains: []string{"foo.*"}},
	}}
	s2 := mustBuild(t, nil, rc)
	for host, want := range map[string]string{"a.foo.com": "long", "a.bar.com": "short", "foo.com": "short", "foo.org": "prefix"} {
		if vh := s2.RouteTable("r").VirtualHostFor([]byte(host)); vh == nil || vh.Name != want {
			t.Errorf("host %q -> %v, want %s", host, vh, want)
		}
	}
	if vh := s2.RouteTable("r").VirtualHostFor([]byte("nope")); vh != nil {
		t.Errorf("no match should be nil, got %s", vh.Name)
	}
	if r := s2.RouteTable("r").Select([]byte("nope"), []byte("/"), nil, nil, nil); r != nil {
		t.Errorf("Select with no virtual host = %v, want nil (404)", r)
	}
}

func TestHeaderMatchers(t *testing.T) {
	hm := func(h *routev3.HeaderMatcher) *routev3.Route {
		return &routev3.Route{Name: "r", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{h}}, Action: clusterRoute("c")}
	}
	tests := []struct {
		name string
		m    *routev3.HeaderMatcher
		hdr  []string
		want bool
	}{
		{"present", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, []string{"x", ""}, true},
		{"present missing", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, nil, false},
		{"absent", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}, nil, true},
		{"prefix", strm("x", &routev3.HeaderMatcher{}, "prefix", "ab"), []string{"x", "abc"}, true},
		{"suffix", strm("x", &routev3.HeaderMatcher{}, "suffix", "bc"), []string{"x", "abc"}, true},
		{"contains", strm("x", &routev3.HeaderMatcher{}, "contains", "b"), []string{"x", "abc"}, true},
		{"regex", strm("x", &routev3.HeaderMatcher{}, "regex", "a.c"), []string{"x", "abc"}, true},
		{"regex partial", strm("x", &routev3.HeaderMatcher{}, "regex", "a"), []string{"x", "abc"}, false},
		{"invert", strm("x", &routev3.HeaderMatcher{InvertMatch: true}, "exact", "abc"), []string{"x", "abc"}, false},
		{"invert missing", strm("x", &routev3.HeaderMatcher{InvertMatch: true}, "exact", "abc"), nil, true},
		{"legacy exact", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "v"}}, []string{"x", "v"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{hm(tc.m)}}}}
			s := mustBuild(t, nil, rc)
			got := s.RouteTable("r").Select([]byte("h"), []byte("/"), []byte("GET"), headers(tc.hdr...), nil) != nil
			if got != tc.want {
				t.Fatalf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWeightedDistribution(t *testing.T) {
	s := mustBuild(t, nil, weftResources()...)
	r := s.RouteTable("9080").Select([]byte("reviews"), []byte("/"), []byte("GET"), nil, nil)
	if r.TotalWeight != 100 {
		t.Fatalf("total weight = %d", r.TotalWeight)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	counts := map[string]int{}
	for range n {
		counts[r.PickCluster(rng.Uint32()).Name]++
	}
	// 80/20 with N=10,000: sd = sqrt(n p q) = 40; allow 5 sd.
	if c := counts[reviewsV1]; c < 8000-200 || c > 8000+200 {
		t.Errorf("v1 picked %d/10000, want ~8000", c)
	}
	if c := counts[reviewsV3]; c < 2000-200 || c > 2000+200 {
		t.Errorf("v3 picked %d/10000, want ~2000", c)
	}
}

func TestOutboundListenerFor(t *testing.T) {
	s := mustBuild(t, nil, weftResources()...)
	tests := []struct {
		ip   string
		port uint16
		want string
	}{
		{"10.96.0.30", 3306, "10.96.0.30_3306"},
		{"10.96.0.99", 9080, "0.0.0.0_9080"},
		{"10.96.0.30", 9080, "0.0.0.0_9080"},
		{"8.8.8.8", 443, "virtualOutbound"},
	}
	for _, tc := range tests {
		l := s.OutboundListenerFor(netip.MustParseAddr(tc.ip), tc.port)
		if l == nil || l.Name != tc.want {
			t.Errorf("%s:%d -> %v, want %s", tc.ip, tc.port, l, tc.want)
		}
	}
	vo := s.OutboundListenerFor(netip.MustParseAddr("8.8.8.8"), 443)
	if fc := vo.FilterChainFor(ConnInfo{DstPort: 443}); fc.TCP == nil || fc.TCP.PickCluster(0) != "PassthroughCluster" {
		t.Errorf("virtualOutbound chain for :443 = %+v, want passthrough", fc)
	}
	if fc := vo.FilterChainFor(ConnInfo{DstPort: 15001}); fc.TCP.Cluster != "BlackHoleCluster" {
		t.Errorf("virtualOutbound chain for :15001 = %+v, want blackhole", fc)
	}
	if !vo.UseOriginalDst || s.Listener("0.0.0.0_9080").BindToPort {
		t.Error("use_original_dst/bind_to_port not recorded")
	}
}

func TestInboundFilterChainMatch(t *testing.T) {
	s := mustBuild(t, nil, weftResources()...)
	l := s.Listener("virtualInbound")
	tests := []struct {
		name string
		ci   ConnInfo
		want string
	}{
		{"http", ConnInfo{DstPort: 9080, TransportProtocol: "raw_buffer", ALPN: []string{"http/1.1"}}, "0.0.0.0_9080_http"},
		{"tcp", ConnInfo{DstPort: 9080, TransportProtocol: "raw_buffer"}, "0.0.0.0_9080_tcp"},
		{"tls goes nowhere specific", ConnInfo{DstPort: 9080, TransportProtocol: "tls"}, "InboundPassthroughFilterChain"},
		{"other port", ConnInfo{DstPort: 8080, TransportProtocol: "raw_buffer"}, "InboundPassthroughFilterChain"},
	}
	for _, tc := range tests {
		fc := l.FilterChainFor(tc.ci)
		if fc == nil || fc.Name != tc.want {
			t.Errorf("%s: chain = %v, want %s", tc.name, fc, tc.want)
		}
	}
	fc := l.FilterChainFor(ConnInfo{DstPort: 9080, TransportProtocol: "raw_buffer", ALPN: []string{"h2c"}})
	r := fc.HTTP.RouteTable.Select([]byte("productpage"), []byte("/"), []byte("GET"), nil, nil)
	if c := r.PickCluster(0); c == nil || c.Name != inbound9080 {
		t.Fatalf("inline route cluster = %v", c)
	}
	if ep := r.PickCluster(0).Pick(0, false); ep == nil || ep.Addr != "127.0.0.1:9080" {
		t.Fatalf("inbound endpoint = %v", ep)
	}
}

func TestEDSOnlyUpdateReusesPointers(t *testing.T) {
	res := weftResources()
	h := NewHolder(mustBuild(t, nil, res...))
	s1 := h.Load()
	// Same resources, new endpoints for reviews v1 (as the xDS client sends
	// it: every other resource keeps its pointer).
	res2 := append([]proto.Message{}, res...)
	for i, r := range res2 {
		if c, ok := r.(interface{ GetClusterName() string }); ok && c.GetClusterName() == reviewsV1 {
			res2[i] = cla(reviewsV1, "10.1.0.11", "10.1.0.12")
		}
	}
	s2 := mustBuild(t, s1, res2...)
	if s2.RouteTables != s1.RouteTables {
		t.Fatal("RouteTables pointer changed on an EDS-only update")
	}
	if s2.Listeners != s1.Listeners {
		t.Fatal("Listeners pointer changed on an EDS-only update")
	}
	c := s1.Cluster(reviewsV1)
	if s2.Cluster(reviewsV1) != c {
		t.Fatal("cluster identity changed on an EDS-only update")
	}
	// Not visible until stored.
	if ep := c.Pick(0, false); ep.Addr != "10.1.0.1:9080" {
		t.Fatalf("endpoints published before Store: %s", ep.Addr)
	}
	h.Store(s2)
	r := h.Load().RouteTable("9080").Select([]byte("reviews"), []byte("/"), []byte("GET"), headers("end-user", "x"), nil)
	w := r.PickCluster(0) // weight 0 -> v1
	if w != c {
		t.Fatalf("route picks %v, want reviews v1", w)
	}
	got := map[string]bool{}
	for range 4 {
		got[w.Pick(0, false).Addr] = true
	}
	if !got["10.1.0.11:9080"] || !got["10.1.0.12:9080"] || len(got) != 2 {
		t.Fatalf("endpoints after EDS update = %v", got)
	}

	// A CDS change rebuilds route tables (they link clusters) but keeps
	// unchanged listeners by identity.
	res3 := append([]proto.Message{}, res2...)
	for i, r := range res3 {
		if c, ok := r.(*clusterv3.Cluster); ok && c.GetName() == reviewsV1 {
			c2 := proto.Clone(c).(*clusterv3.Cluster)
			c2.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			res3[i] = c2
		}
	}
	s3 := mustBuild(t, s2, res3...)
	if s3.RouteTables == s2.RouteTables {
		t.Error("route tables must be relinked after a CDS change")
	}
	if s3.Listener("0.0.0.0_9080") != s2.Listener("0.0.0.0_9080") {
		t.Error("unchanged RDS listener lost identity")
	}
	if ListenerChanged(s2.Listener("virtualInbound"), s3.Listener("virtualInbound")) {
		t.Error("virtualInbound (inline routes, same config) reported changed")
	}
	if s3.Cluster(reviewsV1).Pick(0, false).Addr[:7] != "10.1.0." {
		t.Error("endpoints lost across CDS change")
	}
	// A listener change is reported.
	res4 := append([]proto.Message{}, res3...)
	for i, r := range res4 {
		if l, ok := r.(*listenerv3.Listener); ok && l.GetName() == "0.0.0.0_9080" {
			l2 := proto.Clone(l).(*listenerv3.Listener)
			l2.BindToPort = wrapperspb.Bool(true)
			res4[i] = l2
		}
	}
	s4 := mustBuild(t, s3, res4...)
	if !ListenerChanged(s3.Listener("0.0.0.0_9080"), s4.Listener("0.0.0.0_9080")) {
		t.Error("changed listener not reported")
	}
	if s4.Listener("10.96.0.30_3306") != s3.Listener("10.96.0.30_3306") {
		t.Error("unchanged listener lost identity")
	}
}

func TestValidationErrors(t *testing.T) {
	badHCM := func(filter string) *listenerv3.Listener {
		l := httpListener(9080)
		l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcmv3.HttpConnectionManager{
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "9080"}},
			HttpFilters:    []*hcmv3.HttpFilter{{Name: filter}, {Name: FilterRouter}},
		})}
		return l
	}
	optional := badHCM("istio.stats")
	var h hcmv3.HttpConnectionManager
	_ = optional.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&h)
	h.HttpFilters[0].IsOptional = true
	optional.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&h)}

	lf := httpListener(9080)
	lf.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.proxy_protocol"}}
	strictDNS := edsCluster("dns")
	strictDNS.ClusterDiscoveryType = &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{Name: "envoy.clusters.aggregate"}}
	lb := edsCluster("lb")
	lb.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	rc := routeConfig9080()
	rc.VirtualHosts[0].Routes[1].Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}
	badRe := routeConfig9080()
	badRe.VirtualHosts[0].Routes[1].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(a"}}
	namedEP := cla("outbound|80||x", "10.0.0.1")
	namedEP.Endpoints[0].LbEndpoints[0].HostIdentifier = &endpointv3.LbEndpoint_EndpointName{EndpointName: "e1"}
	inbound := virtualInbound()
	var ih hcmv3.HttpConnectionManager
	_ = inbound.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&ih)
	ih.GetRouteConfig().VirtualHosts[0].Routes[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{}}}
	inbound.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&ih)}
	tests := []struct {
		name string
		res  proto.Message
		want string // substring of the error
	}{
		{"named endpoint", namedEP, `ClusterLoadAssignment "outbound|80||x": endpoints[0].lb_endpoints[0]: endpoint_name (named endpoints) is not supported`},
		{"inline route config", inbound, `Listener "virtualInbound": filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match.headers[0]: header match *routev3.HeaderMatcher_RangeMatch is not supported`},
		{"unknown http filter", badHCM("envoy.filters.http.lua"), `Listener "0.0.0.0_9080": filter_chains[0].filters[0].typed_config.http_filters[0]: HTTP filter "envoy.filters.http.lua" is not supported`},
		{"listener filter", lf, `Listener "0.0.0.0_9080": listener_filters[0]: listener filter "envoy.filters.listener.proxy_protocol" is not supported`},
		{"cluster type", strictDNS, `Cluster "dns": cluster_type: custom cluster type "envoy.clusters.aggregate" is not supported`},
		{"lb policy", lb, `Cluster "lb": lb_policy: CLUSTER_PROVIDED is only supported for ORIGINAL_DST clusters`},
		{"path match", rc, `RouteConfiguration "9080": virtual_hosts[0].routes[1].match: path specifier *routev3.RouteMatch_PathSeparatedPrefix is not supported`},
		{"bad regex", badRe, `RouteConfiguration "9080": virtual_hosts[0].routes[1].match.safe_regex: invalid RE2 regex`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := []proto.Message{tc.res}
			if _, ok := tc.res.(*endpointv3.ClusterLoadAssignment); ok {
				res = append(res, edsCluster("outbound|80||x"))
			}
			_, err := Build(nil, res...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant substring %s", err, tc.want)
			}
			var re *ResourceError
			if !errors.As(err, &re) {
				t.Fatalf("error is not a *ResourceError: %T", err)
			}
		})
	}
	if _, err := Build(nil, optional); err != nil {
		t.Fatalf("optional unknown filter must be skipped: %v", err)
	}
}

// strm builds a HeaderMatcher with a StringMatcher of the given kind.
func strm(name string, base *routev3.HeaderMatcher, kind, v string) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{}
	switch kind {
	case "exact":
		sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: v}
	case "prefix":
		sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: v}
	case "suffix":
		sm.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: v}
	case "contains":
		sm.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: v}
	case "regex":
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	}
	base.Name = name
	base.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	return base
}
