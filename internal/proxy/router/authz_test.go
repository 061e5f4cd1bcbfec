package router_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/router"
	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

const (
	inboundCluster = "inbound|9080||productpage.default.svc.cluster.local"
	reviewsID      = "spiffe://cluster.local/ns/default/sa/reviews"
	jwtIssuer      = "https://issuer.example"
)

// inboundSource serves virtualInbound's chain for port 9080, as the
// listener's chainSource does.
type inboundSource struct{}

func (inboundSource) HCM(s *wrt.Snapshot, _ router.Request) *wrt.HTTPConnectionManager {
	l := s.Listener("virtualInbound")
	if l == nil {
		return nil
	}
	fc := l.FilterChainFor(wrt.ConnInfo{DstPort: 9080, TransportProtocol: "raw_buffer"})
	if fc == nil {
		return nil
	}
	return fc.HTTP
}
func (s inboundSource) Table(snap *wrt.Snapshot, req router.Request) *wrt.RouteTable {
	if h := s.HCM(snap, req); h != nil {
		return h.RouteTable
	}
	return nil
}
func (inboundSource) Passthrough(router.Request) string { return "" }
func (inboundSource) Destination() netip.AddrPort       { return netip.MustParseAddrPort("127.0.0.1:9080") }

// peerConn is an accepted connection the test pretends carried mTLS.
type peerConn struct {
	net.Conn
	id string
}

func (p *peerConn) PeerPrincipal() string { return p.id }
func (p *peerConn) ServerName() string    { return "" }

func typed(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

func pathPerm(p string) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{
		Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}}}}}}
}

// authzHolder: virtualInbound shaped like weftd's output for
//
//	DENY  paths /admin*
//	ALLOW principals cluster.local/ns/default/sa/reviews, or requestPrincipals ["*"]
//
// plus, when jwks is set, a RequestAuthentication for jwtIssuer.
func authzHolder(t testing.TB, upstream, jwks string) *wrt.Holder {
	t.Helper()
	anyPrin := []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
	anyPerm := []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}
	var filters []*hcmv3.HttpFilter
	if jwks != "" {
		filters = append(filters, typed(wrt.FilterJWTAuthn, &jwtv3.JwtAuthentication{
			Providers: map[string]*jwtv3.JwtProvider{"p": {Issuer: jwtIssuer, PayloadInMetadata: jwtIssuer, ForwardPayloadHeader: "x-jwt-payload",
				JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}}}},
			Rules: []*jwtv3.RequirementRule{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
					RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{
						{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "p"}},
						{RequiresType: &jwtv3.JwtRequirement_AllowMissing{}}}}}}}}},
		}))
	}
	filters = append(filters,
		typed(wrt.FilterRBAC, &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
			"ns[default]-policy[deny-admin]-rule[0]": {Permissions: []*rbacv3.Permission{pathPerm("/admin")}, Principals: anyPrin}}}}),
		typed(wrt.FilterRBAC, &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
			"ns[default]-policy[allow]-rule[0]": {Permissions: anyPerm, Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{
				Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: reviewsID}}}}}}},
			"ns[default]-policy[allow]-rule[1]": {Permissions: anyPerm, Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Metadata{
				Metadata: &matcherv3.MetadataMatcher{Filter: "envoy.filters.http.jwt_authn",
					Path:  []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: jwtIssuer}}, {Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "iss"}}},
					Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}}}}}},
		}}}),
	)
	return inboundHolder(t, upstream, filters)
}

func noAuthzHolder(t testing.TB, upstream string) *wrt.Holder { return inboundHolder(t, upstream, nil) }

// inboundHolder: virtualInbound with one HTTP chain for port 9080 whose
// HCM has filters, then the router, and routes everything to upstream.
func inboundHolder(t testing.TB, upstream string, filters []*hcmv3.HttpFilter) *wrt.Holder {
	t.Helper()
	filters = append(filters, typed(wrt.FilterRouter, &routerv3.Router{}))
	h := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_9080", HttpFilters: filters,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound|9080||",
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"},
				Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(inboundCluster)}}}}}}}
	l := &listenerv3.Listener{Name: "virtualInbound", TrafficDirection: corev3.TrafficDirection_INBOUND,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0",
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15006}}}},
		FilterChains: []*listenerv3.FilterChain{{FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080)},
			Filters: []*listenerv3.Filter{{Name: wrt.FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}}}}}
	s, err := wrt.Build(nil, edsCluster(inboundCluster, 1024), cla(inboundCluster, upstream), l)
	if err != nil {
		t.Fatal(err)
	}
	return wrt.NewHolder(s)
}

// serveInbound serves the inbound router on two sockets: connections on
// the first carry the reviews identity, on the second no identity.
func serveInbound(t testing.TB, h *wrt.Holder, m *telemetry.Metrics) (mtls, plain string) {
	rt := router.New(router.Config{Holder: h, Source: inboundSource{}, Metrics: m, Reporter: telemetry.Destination})
	srv, err := h1.NewServer(h1.Config{Router: rt, Observer: rt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	listen := func(id string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if id != "" {
					c = &peerConn{Conn: c, id: id}
				}
				go srv.ServeConn(c)
			}
		}()
		return ln.Addr().String()
	}
	return listen(reviewsID), listen("")
}

type jwtSigner struct {
	s    jose.Signer
	jwks string
}

func newJWTSigner(t testing.TB) *jwtSigner {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	return &jwtSigner{s: s, jwks: string(b)}
}

func (j *jwtSigner) token(t testing.TB, iss string) string {
	b, _ := json.Marshal(map[string]any{"iss": iss, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	jws, err := j.s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func TestInboundAuthorization(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "app %s authorization=%q payload=%t", r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Jwt-Payload") != "")
	}))
	defer up.Close()
	signer := newJWTSigner(t)
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	mtls, plain := serveInbound(t, authzHolder(t, strings.TrimPrefix(up.URL, "http://"), signer.jwks), m)
	other := newJWTSigner(t)

	tests := []struct {
		name   string
		addr   string
		path   string
		token  string
		status int
		body   string // prefix
	}{
		{"allowed principal", mtls, "/books", "", 200, `app /books authorization="" payload=false`},
		{"DENY beats ALLOW", mtls, "/admin/users", "", 403, "RBAC: access denied"},
		{"no principal, no token: ALLOW matches nothing", plain, "/books", "", 403, "RBAC: access denied"},
		{"valid JWT (requestPrincipals *), token not forwarded", plain, "/books", signer.token(t, jwtIssuer), 200, `app /books authorization="" payload=true`},
		{"invalid JWT", plain, "/books", other.token(t, jwtIssuer), 401, "Jwt verification fails"},
		{"JWT of an unknown issuer", plain, "/books", signer.token(t, "https://elsewhere"), 401, "Jwt issuer is not configured"},
		{"valid JWT does not lift DENY", plain, "/admin", signer.token(t, jwtIssuer), 403, "RBAC: access denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			req, _ := http.NewRequest("GET", "http://"+tc.addr+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), tc.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			reached := hits.Load() != before
			if reached != (tc.status == 200) {
				t.Fatalf("upstream reached = %v for status %d", reached, tc.status)
			}
			switch tc.status {
			case 403:
				if resp.Header.Get("X-Weft-Reason") != router.ReasonRBACDenied || string(body) != "RBAC: access denied" {
					t.Fatalf("403 answer: reason %q body %q", resp.Header.Get("X-Weft-Reason"), body)
				}
			case 401:
				if w := resp.Header.Get("Www-Authenticate"); !strings.HasPrefix(w, `Bearer realm="http://`) || !strings.Contains(w, `error="invalid_token"`) {
					t.Fatalf("www-authenticate %q", w)
				}
			}
		})
	}
	// The engine records a request after its answer went out: the last
	// one may still be on its way into the metrics.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && (requests(t, m, "403", "RBAC") != 3 || requests(t, m, "401", "-") != 2); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := requests(t, m, "403", "RBAC"); n != 3 {
		t.Fatalf("istio_requests_total{response_code=403,response_flags=RBAC} = %v, want 3", n)
	}
	if n := requests(t, m, "401", "-"); n != 2 {
		t.Fatalf("istio_requests_total{response_code=401,response_flags=-} = %v, want 2", n)
	}
}

// requests reads istio_requests_total of the inbound cluster for a
// response code and flag.
func requests(t testing.TB, m *telemetry.Metrics, code, flag string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "istio_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["response_code"] == code && l["response_flags"] == flag && l["reporter"] == "destination" &&
				l["destination_service"] == "productpage.default.svc.cluster.local" {
				sum += mt.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestInboundAuthorizationAllocations: an allowed keep-alive request
// through jwt_authn (no token) and two RBAC filters to the upstream
// allocates nothing, like the outbound happy path.
func TestInboundAuthorizationAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	up := rawUpstream(t)
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	mtls, _ := serveInbound(t, authzHolder(t, up, newJWTSigner(t).jwks), m)
	rc := newRawClient(t, mtls, "/books")
	for i := 0; i < 200; i++ {
		rc.roundTrip(t)
	}
	const n = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		rc.roundTrip(t)
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.3f allocations per request (jwt_authn without token, RBAC deny+allow, route, telemetry, h1)", per)
	if per > 0.5 {
		t.Errorf("inbound authorized path allocates %.2f times per request, want ~0", per)
	}
}

// BenchmarkRoundTripInboundRBAC: BenchmarkRoundTrip through an inbound
// chain with jwt_authn (request without token) and DENY + ALLOW RBAC
// filters matching the caller's principal.
func BenchmarkRoundTripInboundRBAC(b *testing.B) {
	up := rawUpstream(b)
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	mtls, _ := serveInbound(b, authzHolder(b, up, newJWTSigner(b).jwks), m)
	rc := newRawClient(b, mtls, "/books")
	for i := 0; i < 200; i++ {
		rc.roundTrip(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc.roundTrip(b)
	}
}

// BenchmarkRoundTripInboundNoAuthz is the same inbound chain without any
// authn/authz filter, the baseline for BenchmarkRoundTripInboundRBAC.
func BenchmarkRoundTripInboundNoAuthz(b *testing.B) {
	up := rawUpstream(b)
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	mtls, _ := serveInbound(b, noAuthzHolder(b, up), m)
	rc := newRawClient(b, mtls, "/books")
	for i := 0; i < 200; i++ {
		rc.roundTrip(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc.roundTrip(b)
	}
}
