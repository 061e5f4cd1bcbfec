package translate

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	securityv1 "istio.io/api/security/v1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

const jwtAuthnFilter = "envoy.filters.http.jwt_authn"

// defaultJWKSTimeout is Istio's jwtRules[].timeout default.
const defaultJWKSTimeout = 5 * time.Second

// spaceDelimitedByDefault are the claims Istio always splits on spaces
// (OAuth scopes), so "scope: read write" matches claims[scope] "write".
var spaceDelimitedByDefault = []string{"scope", "permission"}

// RequestAuthenticationsFor returns the RequestAuthentications that apply
// to proxy p, scoped like AuthorizationPolicies (root namespace: every
// workload whose labels match; own namespace: no selector or matching
// labels; targetRef(s): gateways only).
func RequestAuthenticationsFor(m *model.Snapshot, p *model.Proxy) []*config.Object {
	return selectPolicies(m.RequestAuthentications(), m.Mesh.RootNamespace, p,
		func(o *config.Object) (*typev1beta1.WorkloadSelector, bool) {
			ra, ok := o.Spec.(*securityv1.RequestAuthentication)
			if !ok {
				return nil, false
			}
			return ra.GetSelector(), ra.GetTargetRef() == nil && len(ra.GetTargetRefs()) == 0
		})
}

// jwtAuthnFilter translates the proxy's RequestAuthentications into one
// jwt_authn filter: a provider per jwtRule whose verified payload is put in
// metadata under its issuer (RBAC matches request principals and claims
// there), and Istio's requirement — any provider's valid token, or no
// token at all; a token that is present but invalid is refused (401).
// It returns nil when no RequestAuthentication applies, and the issuers.
func (g *routeGen) jwtAuthnFilter() (*hcmv3.HttpFilter, []string) {
	ras := RequestAuthenticationsFor(g.in.Model, g.proxy)
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var issuers []string
	var anyOf []*jwtv3.JwtRequirement
	for _, o := range ras {
		ra := o.Spec.(*securityv1.RequestAuthentication)
		for i, r := range ra.GetJwtRules() {
			field := fmt.Sprintf("spec.jwtRules[%d]", i)
			p := &jwtv3.JwtProvider{
				Issuer:               r.GetIssuer(),
				Audiences:            r.GetAudiences(),
				Forward:              r.GetForwardOriginalToken(),
				FromParams:           r.GetFromParams(),
				FromCookies:          r.GetFromCookies(),
				ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
				PayloadInMetadata:    r.GetIssuer(),
				NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{
					SpaceDelimitedClaims: slices.Concat(spaceDelimitedByDefault, r.GetSpaceDelimitedClaims())},
			}
			for _, h := range r.GetFromHeaders() {
				p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
			}
			for _, c := range r.GetOutputClaimToHeaders() {
				p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
			}
			switch {
			case r.GetJwks() != "":
				p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineString{InlineString: r.GetJwks()}}}
			case r.GetJwksUri() != "":
				cluster, err := jwksCluster(r.GetJwksUri())
				if err != nil {
					// Validation refuses such a URL; never send one a proxy must NACK.
					g.diags.warnObject(o, field+".jwksUri", "%v; tokens of issuer %q are refused", err, r.GetIssuer())
					continue
				}
				timeout := defaultJWKSTimeout
				if r.GetTimeout() != nil && r.GetTimeout().AsDuration() > 0 {
					timeout = r.GetTimeout().AsDuration()
				}
				p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
					HttpUri: &corev3.HttpUri{Uri: r.GetJwksUri(), HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster},
						Timeout: durationpb.New(timeout)},
					AsyncFetch: &jwtv3.JwksAsyncFetch{},
				}}
			default:
				// Validation refuses a rule without keys (Weft does no
				// OpenID discovery); its tokens fail as of an unknown issuer.
				continue
			}
			name := fmt.Sprintf("%s/%s[%d]", o.Namespace, o.Name, i)
			cfg.Providers[name] = p
			anyOf = append(anyOf, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
			if !slices.Contains(issuers, r.GetIssuer()) {
				issuers = append(issuers, r.GetIssuer())
			}
		}
	}
	if len(cfg.Providers) == 0 {
		return nil, nil
	}
	slices.SortFunc(anyOf, func(a, b *jwtv3.JwtRequirement) int { return cmp.Compare(a.GetProviderName(), b.GetProviderName()) })
	anyOf = append(anyOf, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: nil}})
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
			RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: anyOf}}}},
	}}
	slices.Sort(issuers)
	return typedHTTPFilter(jwtAuthnFilter, cfg), issuers
}

// jwksCluster names the cluster an Envoy would fetch jwksUri through
// (Istio's outbound|PORT||HOST). weft-proxy ignores it and fetches the URL
// itself; an Envoy needs a ServiceEntry for the JWKS host.
func jwksCluster(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("jwksUri %q is not an http(s) URL", uri)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("outbound|%s||%s", port, host), nil
}
