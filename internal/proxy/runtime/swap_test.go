package runtime

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// TestConcurrentSwap runs the data path against a Holder while EDS updates
// are published (meaningful under -race).
func TestConcurrentSwap(t *testing.T) {
	res := weftResources()
	h := NewHolder(mustBuild(t, nil, res...))
	var stop atomic.Bool
	var wg sync.WaitGroup
	host, path, method := []byte("reviews"), []byte("/"), []byte("GET")
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint32(0); !stop.Load(); i++ {
				s := h.Load()
				r := s.RouteTable("9080").Select(host, path, method, nil, nil)
				if c := r.PickCluster(i); c != nil {
					if ep := c.Pick(uint64(i), i%2 == 0); ep != nil {
						ep.Begin()
						ep.ReportResult(200, nil)
						ep.End()
					}
				}
			}
		}()
	}
	for i := range 200 {
		next := append([]proto.Message{}, res...)
		next = append(next, cla(reviewsV1, "10.1.0.1", netip.AddrFrom4([4]byte{10, 1, 1, byte(i)}).String()))
		h.Store(mustBuild(t, h.Load(), next...))
	}
	stop.Store(true)
	wg.Wait()
}

func TestRouteExtras(t *testing.T) {
	cors := &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".example.com"}}},
		AllowMethods:           "GET,POST",
		AllowCredentials:       wrapperspb.Bool(true),
	}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "v", Domains: []string{"*"},
		TypedPerFilterConfig: map[string]*anypb.Any{FilterCors: mustAny(cors)},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/API"}, CaseSensitive: wrapperspb.Bool(false)},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: reviewsV1},
				PrefixRewrite:        "/v2",
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend"},
				RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{
					Cluster:         reviewsV3,
					RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 25, Denominator: typev3.FractionalPercent_HUNDRED}},
				}},
				HashPolicy: []*routev3.RouteAction_HashPolicy{
					{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "session"}}, Terminal: true},
					{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}},
				},
			}},
		}},
	}}}
	s := mustBuild(t, nil, append(weftResources(), rc)...)
	r := s.RouteTable("r").Select([]byte("x"), []byte("/api/items"), []byte("GET"), nil, nil)
	if r == nil {
		t.Fatal("case-insensitive prefix did not match")
	}
	if r.PrefixRewrite != "/v2" || r.HostRewrite != "backend" {
		t.Errorf("rewrites = %q %q", r.PrefixRewrite, r.HostRewrite)
	}
	if len(r.Mirrors) != 1 || r.Mirrors[0].Cluster == nil || r.Mirrors[0].PerMillion != 250_000 {
		t.Errorf("mirror = %+v", r.Mirrors)
	}
	if r.Cors == nil || !r.Cors.Enabled || !r.Cors.AllowOrigin([]byte("https://a.example.com")) || r.Cors.AllowOrigin([]byte("https://evil.com")) || !r.Cors.AllowCredentials {
		t.Errorf("cors = %+v", r.Cors)
	}
	src := netip.MustParseAddr("10.0.0.9")
	h1, ok1 := r.RequestHash(headers("cookie", "a=1; session=abc; b=2"), nil, src)
	h2, _ := r.RequestHash(headers("cookie", "session=abc"), nil, netip.MustParseAddr("10.0.0.10"))
	if !ok1 || h1 != h2 || h1 != upstream.Hash64([]byte("abc")) {
		t.Errorf("terminal cookie hash: %v %v %v", h1, h2, ok1)
	}
	h3, ok3 := r.RequestHash(headers(), nil, src)
	if !ok3 || h3 == h1 {
		t.Errorf("source-ip hash when cookie missing: %v %v", h3, ok3)
	}
}
