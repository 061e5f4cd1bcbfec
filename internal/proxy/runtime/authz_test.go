package runtime

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const testJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`

func denyAdmin() *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{"deny-admin": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: 9080}}},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
	}}}
}

func jwtConfig() *jwtv3.JwtAuthentication {
	return &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{"p": {Issuer: "https://issuer.example", PayloadInMetadata: "https://issuer.example",
			JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: testJWKS}}}}},
		Rules: []*jwtv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
				RequiresType: &jwtv3.JwtRequirement_AllowMissing{}}},
		}},
	}
}

func httpFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

// authzInbound is virtualInbound shaped like weftd's output with an
// AuthorizationPolicy and a RequestAuthentication: an HTTP chain with
// jwt_authn and RBAC filters and a TCP chain with a network RBAC filter.
func authzInbound(httpFilters []*hcmv3.HttpFilter, netFilters ...*listenerv3.Filter) *listenerv3.Listener {
	h := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_9080",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound|9080||"}},
		HttpFilters:    append(httpFilters, httpFilter(FilterRouter, &routerv3.Router{}))}
	tp := &listenerv3.Filter{Name: FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(
		&tcpv3.TcpProxy{StatPrefix: "inbound_0.0.0.0_3306", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "inbound|3306||"}})}}
	return &listenerv3.Listener{
		Name: "virtualInbound", TrafficDirection: corev3.TrafficDirection_INBOUND,
		Address: socketAddr("0.0.0.0", 15006),
		FilterChains: []*listenerv3.FilterChain{
			{Name: "http", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080)},
				Filters: []*listenerv3.Filter{{Name: FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}}},
			{Name: "tcp", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(3306)},
				Filters: append(netFilters, tp)},
		},
	}
}

func netRBAC(cfg *netrbacv3.RBAC) *listenerv3.Filter {
	return &listenerv3.Filter{Name: FilterNetworkRBAC, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

func TestAuthzFiltersCompiled(t *testing.T) {
	l := authzInbound([]*hcmv3.HttpFilter{
		httpFilter(FilterJWTAuthn, jwtConfig()),
		httpFilter(FilterRBAC, &httprbacv3.RBAC{Rules: denyAdmin()}),
		httpFilter(FilterRBAC, &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}}),
	}, netRBAC(&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: denyAdmin()}))
	s, err := Build(nil, l)
	if err != nil {
		t.Fatal(err)
	}
	li := s.Listener("virtualInbound")
	if !li.Inbound {
		t.Fatal("listener not marked inbound")
	}
	h := li.FilterChains[0].HTTP
	if h.JWT == nil || len(h.RBAC) != 2 || !h.HasAuth() || h.RBAC[1].Rules() == nil {
		t.Fatalf("HCM filters: jwt %v rbac %d", h.JWT != nil, len(h.RBAC))
	}
	if got := li.FilterChains[1].RBAC; len(got) != 1 || got[0].Name != "tcp." || li.FilterChains[1].TCP == nil {
		t.Fatalf("network RBAC: %+v", li.FilterChains[1])
	}
}

func TestAuthzFiltersRejected(t *testing.T) {
	outbound := authzInbound([]*hcmv3.HttpFilter{httpFilter(FilterRBAC, &httprbacv3.RBAC{Rules: denyAdmin()})})
	outbound.TrafficDirection = corev3.TrafficDirection_OUTBOUND
	outboundTCP := authzInbound(nil, netRBAC(&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: denyAdmin()}))
	outboundTCP.TrafficDirection = corev3.TrafficDirection_UNSPECIFIED
	headerOnTCP := denyAdmin()
	headerOnTCP.Policies["deny-admin"].Permissions = []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":method"}}}}
	badJWT := jwtConfig()
	badJWT.Providers["p"].Issuer = ""
	for _, tc := range []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"rbac on an outbound listener", outbound,
			`filter_chains[0].filters[0].typed_config.http_filters[0]: envoy.filters.http.rbac is only supported on inbound listeners (traffic_direction INBOUND)`},
		{"network rbac without direction", outboundTCP,
			`filter_chains[1].filters[0]: envoy.filters.network.rbac is only supported on inbound listeners`},
		{"jwt after rbac", authzInbound([]*hcmv3.HttpFilter{httpFilter(FilterRBAC, &httprbacv3.RBAC{Rules: denyAdmin()}), httpFilter(FilterJWTAuthn, jwtConfig())}),
			`http_filters[1]: envoy.filters.http.jwt_authn must come before envoy.filters.http.rbac`},
		{"header matcher in a network filter", authzInbound(nil, netRBAC(&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: headerOnTCP})),
			`filter_chains[1].filters[0].typed_config.rules.policies["deny-admin"].permissions[0].header: header matches HTTP requests; not supported in envoy.filters.network.rbac`},
		{"jwt provider without issuer", authzInbound([]*hcmv3.HttpFilter{httpFilter(FilterJWTAuthn, badJWT)}),
			`http_filters[0].typed_config.providers["p"].issuer: an issuer is required`},
		{"other network filter in front", authzInbound(nil, &listenerv3.Filter{Name: "envoy.filters.network.ext_authz"}),
			`filter_chains[1].filters[0]: network filter "envoy.filters.network.ext_authz" is not supported (only envoy.filters.network.rbac in front of`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(nil, tc.l)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
