package route

import (
	"regexp"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// HTTP filters whose per-route config (typed_per_filter_config) is honoured.
const (
	FilterFault = "envoy.filters.http.fault"
	FilterCors  = "envoy.filters.http.cors"
)

// Table is one compiled RouteConfiguration.
type Table struct {
	Name         string
	VirtualHosts []*VirtualHost

	exact      map[string]*VirtualHost
	suffixes   []domainIndex // longest first
	prefixes   []domainIndex // longest first
	star       *VirtualHost
	ignorePort bool
	src        *routev3.RouteConfiguration
}

type domainIndex struct {
	n int
	m map[string]*VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []*Route
}

// ActionKind says what a Route does.
type ActionKind uint8

// Route actions.
const (
	ActionCluster ActionKind = iota
	ActionWeightedClusters
	ActionDirectResponse
	ActionRedirect
)

// Route is one compiled route. Header mutations are merged in Envoy's order
// (route, then virtual host, then route configuration); fault and CORS are
// the most specific typed_per_filter_config (route over virtual host over
// route configuration).
type Route struct {
	Name        string
	VirtualHost *VirtualHost
	Action      ActionKind

	// ActionCluster
	ClusterName string
	Cluster     *upstream.Cluster // nil when the cluster does not exist (caller answers 503)
	// ActionWeightedClusters
	Weighted    []WeightedCluster
	TotalWeight uint32
	// ActionDirectResponse / ActionRedirect
	Direct   *DirectResponse
	Redirect *Redirect

	Timeout     time.Duration // 0 disables; Envoy's default is 15s
	IdleTimeout time.Duration
	Retry       *RetryPolicy

	RequestHeadersToAdd     []HeaderValue
	RequestHeadersToRemove  []string
	ResponseHeadersToAdd    []HeaderValue
	ResponseHeadersToRemove []string

	PrefixRewrite     string
	RegexRewrite      *regexp.Regexp
	RegexSubstitution string
	HostRewrite       string

	Mirrors []Mirror
	Hash    []HashPolicy
	Fault   *Fault
	Cors    *CorsPolicy

	m routeMatch
}

// WeightedCluster is one entry of weighted_clusters.
type WeightedCluster struct {
	Name    string
	Cluster *upstream.Cluster
	Weight  uint32
	// RequestHeadersToAdd etc. are per-cluster mutations.
	RequestHeadersToAdd    []HeaderValue
	RequestHeadersToRemove []string
	ResponseHeadersToAdd   []HeaderValue
	cum                    uint32
}

// DirectResponse is direct_response.
type DirectResponse struct {
	Status int
	Body   []byte
}

// Redirect is a compiled RedirectAction.
type Redirect struct {
	Scheme        string // "https" for https_redirect
	Host          string
	Port          uint32
	Path          string
	PrefixRewrite string
	Status        int // 301 default
	StripQuery    bool
}

// HeaderValue is one header to add.
type HeaderValue struct {
	Name, Value string
	// Append: true appends to existing values, false overwrites.
	Append bool
	// AddIfAbsent: only add when the header is absent.
	AddIfAbsent bool
}

// Mirror is one request_mirror_policy.
type Mirror struct {
	ClusterName string
	Cluster     *upstream.Cluster
	// PerMillion is the share of requests mirrored (1,000,000 = all).
	PerMillion uint32
}

// HashKind is a hash policy source.
type HashKind uint8

// Hash policy sources.
const (
	HashHeader HashKind = iota
	HashCookie
	HashSourceIP
	HashQueryParam
)

// HashPolicy is one hash_policy entry.
type HashPolicy struct {
	Kind     HashKind
	Name     string // header, cookie or query parameter name
	Terminal bool
	// CookieTTL is recorded; generating cookies is not implemented.
	CookieTTL time.Duration
}

// CorsPolicy is a compiled envoy.filters.http.cors CorsPolicy.
type CorsPolicy struct {
	AllowOrigins []StringMatcher
	// Header values as sent (nil: header not sent).
	AllowMethods     []byte
	AllowHeaders     []byte
	ExposeHeaders    []byte
	MaxAge           []byte
	AllowCredentials bool
	// Enabled is filter_enabled's default (true when unset).
	Enabled bool
	// ForwardNotMatching sends preflights from origins that are not allowed
	// on to the upstream (forward_not_matching_preflights, default true);
	// false answers them locally without CORS headers.
	ForwardNotMatching bool
}

// AllowOrigin reports whether origin is allowed.
func (c *CorsPolicy) AllowOrigin(origin []byte) bool {
	for i := range c.AllowOrigins {
		if c.AllowOrigins[i].Match(origin) {
			return true
		}
	}
	return false
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
)

type routeMatch struct {
	kind       pathKind
	value      string
	re         *regexp.Regexp
	ignoreCase bool
	headers    []headerMatcher
	query      []queryMatcher
	fraction   uint32 // per million; fracAll when unset
}

const fracAll = 1_000_000

// ClusterLookup resolves a cluster name in the snapshot being built; it
// returns nil for unknown clusters (routes to them answer 503).
type ClusterLookup func(name string) *upstream.Cluster

// NewTable compiles a RouteConfiguration; routes link the clusters that
// lookup resolves. Errors are *FieldError naming the offending field.
func NewTable(pb *routev3.RouteConfiguration, lookup ClusterLookup) (*Table, error) {
	name := pb.GetName()
	e := fieldErr
	if pb.GetVhds() != nil {
		return nil, e("vhds", "VHDS is not supported")
	}
	if len(pb.GetClusterSpecifierPlugins()) > 0 {
		return nil, e("cluster_specifier_plugins", "not supported")
	}
	if len(pb.GetRequestMirrorPolicies()) > 0 {
		return nil, e("request_mirror_policies", "route-configuration-level mirrors are not supported; set them on routes")
	}
	rt := &Table{Name: name, exact: map[string]*VirtualHost{}, ignorePort: pb.GetIgnorePortInHostMatching(), src: pb}
	cfgFault, cfgCors, err := perFilter(pb.GetTypedPerFilterConfig())
	if err != nil {
		return nil, e("typed_per_filter_config", "%v", err)
	}
	cfgReqAdd, err := headerValues(pb.GetRequestHeadersToAdd())
	if err != nil {
		return nil, e("request_headers_to_add", "%v", err)
	}
	cfgRespAdd, err := headerValues(pb.GetResponseHeadersToAdd())
	if err != nil {
		return nil, e("response_headers_to_add", "%v", err)
	}
	suffix := map[int]map[string]*VirtualHost{}
	prefix := map[int]map[string]*VirtualHost{}
	for i, vpb := range pb.GetVirtualHosts() {
		vf := "virtual_hosts[" + itoa(i) + "]"
		if vpb.GetRequireTls() != routev3.VirtualHost_NONE {
			return nil, e(vf+".require_tls", "not supported")
		}
		if len(vpb.GetRateLimits()) > 0 {
			return nil, e(vf+".rate_limits", "not supported")
		}
		if vpb.GetRetryPolicyTypedConfig() != nil {
			return nil, e(vf+".retry_policy_typed_config", "not supported")
		}
		vh := &VirtualHost{Name: vpb.GetName(), Domains: vpb.GetDomains()}
		vhFault, vhCors, err := perFilter(vpb.GetTypedPerFilterConfig())
		if err != nil {
			return nil, e(vf+".typed_per_filter_config", "%v", err)
		}
		vhRetry, err := retryPolicy(vpb.GetRetryPolicy())
		if err != nil {
			return nil, e(vf+".retry_policy", "%v", err)
		}
		vhReqAdd, err := headerValues(vpb.GetRequestHeadersToAdd())
		if err != nil {
			return nil, e(vf+".request_headers_to_add", "%v", err)
		}
		vhRespAdd, err := headerValues(vpb.GetResponseHeadersToAdd())
		if err != nil {
			return nil, e(vf+".response_headers_to_add", "%v", err)
		}
		for _, d := range vpb.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if rt.star != nil {
					return nil, e(vf+".domains", "duplicate domain \"*\"")
				}
				rt.star = vh
			case strings.HasPrefix(d, "*"):
				addDomain(suffix, d[1:], vh)
			case strings.HasSuffix(d, "*"):
				addDomain(prefix, d[:len(d)-1], vh)
			default:
				if _, dup := rt.exact[d]; dup {
					return nil, e(vf+".domains", "duplicate domain %q", d)
				}
				rt.exact[d] = vh
			}
		}
		for j, rpb := range vpb.GetRoutes() {
			rf := vf + ".routes[" + itoa(j) + "]"
			r, field, err := buildRoute(rpb, lookup)
			if err != nil {
				return nil, e(rf+field, "%v", err)
			}
			r.VirtualHost = vh
			if r.Fault == nil {
				r.Fault = firstNonNil(vhFault, cfgFault)
			}
			if r.Cors == nil {
				r.Cors = firstNonNil(vhCors, cfgCors)
			}
			if r.Retry == nil && r.Action <= ActionWeightedClusters {
				r.Retry = vhRetry
			}
			r.RequestHeadersToAdd = concat(r.RequestHeadersToAdd, vhReqAdd, cfgReqAdd)
			r.ResponseHeadersToAdd = concat(r.ResponseHeadersToAdd, vhRespAdd, cfgRespAdd)
			r.RequestHeadersToRemove = concat(r.RequestHeadersToRemove, vpb.GetRequestHeadersToRemove(), pb.GetRequestHeadersToRemove())
			r.ResponseHeadersToRemove = concat(r.ResponseHeadersToRemove, vpb.GetResponseHeadersToRemove(), pb.GetResponseHeadersToRemove())
			vh.Routes = append(vh.Routes, r)
		}
		rt.VirtualHosts = append(rt.VirtualHosts, vh)
	}
	rt.suffixes = sortedIndex(suffix)
	rt.prefixes = sortedIndex(prefix)
	return rt, nil
}

func firstNonNil[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func concat[T any](parts ...[]T) []T {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		return nil
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func addDomain(idx map[int]map[string]*VirtualHost, key string, vh *VirtualHost) {
	m := idx[len(key)]
	if m == nil {
		m = map[string]*VirtualHost{}
		idx[len(key)] = m
	}
	if _, dup := m[key]; !dup { // first virtual host wins, like Envoy
		m[key] = vh
	}
}

func sortedIndex(idx map[int]map[string]*VirtualHost) []domainIndex {
	out := make([]domainIndex, 0, len(idx))
	for n, m := range idx {
		out = append(out, domainIndex{n, m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n })
	return out
}

// buildRoute returns the route, or the field path (relative to the route)
// and the problem.
func buildRoute(pb *routev3.Route, lookup ClusterLookup) (*Route, string, error) {
	r := &Route{Name: pb.GetName(), Timeout: 15 * time.Second}
	mpb := pb.GetMatch()
	r.m.fraction = fracAll
	r.m.ignoreCase = mpb.GetCaseSensitive() != nil && !mpb.GetCaseSensitive().GetValue()
	switch p := mpb.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		r.m.kind, r.m.value = pathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		r.m.kind, r.m.value = pathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileFullRegex(p.SafeRegex)
		if err != nil {
			return nil, ".match.safe_regex", err
		}
		r.m.kind, r.m.re = pathRegex, re
	default:
		return nil, ".match", errf("path specifier %T is not supported", p)
	}
	if mpb.GetGrpc() != nil {
		return nil, ".match.grpc", errf("not supported")
	}
	if mpb.GetTlsContext() != nil {
		return nil, ".match.tls_context", errf("not supported")
	}
	if len(mpb.GetDynamicMetadata()) > 0 {
		return nil, ".match.dynamic_metadata", errf("not supported")
	}
	for i, h := range mpb.GetHeaders() {
		hm, err := compileHeaderMatcher(h)
		if err != nil {
			return nil, ".match.headers[" + itoa(i) + "]", err
		}
		r.m.headers = append(r.m.headers, hm)
	}
	for i, q := range mpb.GetQueryParameters() {
		qm, err := compileQueryMatcher(q)
		if err != nil {
			return nil, ".match.query_parameters[" + itoa(i) + "]", err
		}
		r.m.query = append(r.m.query, qm)
	}
	if rf := mpb.GetRuntimeFraction(); rf != nil {
		r.m.fraction = perMillion(rf.GetDefaultValue())
	}
	var err error
	if r.Fault, r.Cors, err = perFilter(pb.GetTypedPerFilterConfig()); err != nil {
		return nil, ".typed_per_filter_config", err
	}
	if r.RequestHeadersToAdd, err = headerValues(pb.GetRequestHeadersToAdd()); err != nil {
		return nil, ".request_headers_to_add", err
	}
	if r.ResponseHeadersToAdd, err = headerValues(pb.GetResponseHeadersToAdd()); err != nil {
		return nil, ".response_headers_to_add", err
	}
	r.RequestHeadersToRemove = pb.GetRequestHeadersToRemove()
	r.ResponseHeadersToRemove = pb.GetResponseHeadersToRemove()
	switch a := pb.GetAction().(type) {
	case *routev3.Route_Route:
		if f, err := routeAction(r, a.Route, lookup); err != nil {
			return nil, ".route" + f, err
		}
	case *routev3.Route_DirectResponse:
		r.Action = ActionDirectResponse
		r.Direct = &DirectResponse{Status: int(a.DirectResponse.GetStatus())}
		if b := a.DirectResponse.GetBody(); b != nil {
			switch {
			case b.GetInlineString() != "":
				r.Direct.Body = []byte(b.GetInlineString())
			case b.GetInlineBytes() != nil:
				r.Direct.Body = b.GetInlineBytes()
			default:
				return nil, ".direct_response.body", errf("only inline bodies are supported")
			}
		}
	case *routev3.Route_Redirect:
		r.Action = ActionRedirect
		red, f, err := redirect(a.Redirect)
		if err != nil {
			return nil, ".redirect" + f, err
		}
		r.Redirect = red
	default:
		return nil, ".action", errf("action %T is not supported", a)
	}
	return r, "", nil
}

func routeAction(r *Route, a *routev3.RouteAction, lookup ClusterLookup) (string, error) {
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		r.Action, r.ClusterName, r.Cluster = ActionCluster, cs.Cluster, lookup(cs.Cluster)
	case *routev3.RouteAction_WeightedClusters:
		r.Action = ActionWeightedClusters
		for i, wc := range cs.WeightedClusters.GetClusters() {
			f := ".weighted_clusters.clusters[" + itoa(i) + "]"
			if wc.GetClusterHeader() != "" {
				return f + ".cluster_header", errf("not supported")
			}
			w := WeightedCluster{Name: wc.GetName(), Cluster: lookup(wc.GetName()), Weight: wc.GetWeight().GetValue()}
			var err error
			if w.RequestHeadersToAdd, err = headerValues(wc.GetRequestHeadersToAdd()); err != nil {
				return f + ".request_headers_to_add", err
			}
			if w.ResponseHeadersToAdd, err = headerValues(wc.GetResponseHeadersToAdd()); err != nil {
				return f + ".response_headers_to_add", err
			}
			w.RequestHeadersToRemove = wc.GetRequestHeadersToRemove()
			if len(wc.GetTypedPerFilterConfig()) > 0 {
				return f + ".typed_per_filter_config", errf("per-cluster filter config is not supported")
			}
			r.TotalWeight += w.Weight
			w.cum = r.TotalWeight
			r.Weighted = append(r.Weighted, w)
		}
		if r.TotalWeight == 0 {
			return ".weighted_clusters", errf("total weight is 0")
		}
	default:
		return ".cluster_specifier", errf("%T is not supported", cs)
	}
	if a.GetMetadataMatch() != nil {
		return ".metadata_match", errf("subset metadata match is not supported")
	}
	if len(a.GetRateLimits()) > 0 {
		return ".rate_limits", errf("not supported")
	}
	if a.GetHedgePolicy() != nil {
		return ".hedge_policy", errf("not supported")
	}
	if a.GetInternalRedirectPolicy() != nil {
		return ".internal_redirect_policy", errf("not supported")
	}
	if a.GetPathRewritePolicy() != nil {
		return ".path_rewrite_policy", errf("not supported")
	}
	if a.GetRetryPolicyTypedConfig() != nil {
		return ".retry_policy_typed_config", errf("not supported")
	}
	for i, u := range a.GetUpgradeConfigs() {
		if u.GetUpgradeType() != "websocket" {
			return ".upgrade_configs[" + itoa(i) + "]", errf("upgrade %q is not supported", u.GetUpgradeType())
		}
	}
	if t := a.GetTimeout(); t != nil {
		r.Timeout = t.AsDuration()
	}
	if t := a.GetIdleTimeout(); t != nil {
		r.IdleTimeout = t.AsDuration()
	}
	r.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return ".regex_rewrite.pattern", errf("invalid RE2 regex: %v", err)
		}
		r.RegexRewrite, r.RegexSubstitution = re, rr.GetSubstitution()
	}
	switch h := a.GetHostRewriteSpecifier().(type) {
	case nil:
	case *routev3.RouteAction_HostRewriteLiteral:
		r.HostRewrite = h.HostRewriteLiteral
	default:
		return ".host_rewrite_specifier", errf("%T is not supported", h)
	}
	rp, err := retryPolicy(a.GetRetryPolicy())
	if err != nil {
		return ".retry_policy", err
	}
	r.Retry = rp
	for i, m := range a.GetRequestMirrorPolicies() {
		mr := Mirror{ClusterName: m.GetCluster(), Cluster: lookup(m.GetCluster()), PerMillion: fracAll}
		if m.GetClusterHeader() != "" {
			return ".request_mirror_policies[" + itoa(i) + "].cluster_header", errf("not supported")
		}
		if rf := m.GetRuntimeFraction(); rf != nil {
			mr.PerMillion = perMillion(rf.GetDefaultValue())
		}
		r.Mirrors = append(r.Mirrors, mr)
	}
	for i, h := range a.GetHashPolicy() {
		hp := HashPolicy{Terminal: h.GetTerminal()}
		switch p := h.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			hp.Kind, hp.Name = HashHeader, strings.ToLower(p.Header.GetHeaderName())
			if p.Header.GetRegexRewrite() != nil {
				return ".hash_policy[" + itoa(i) + "].header.regex_rewrite", errf("not supported")
			}
		case *routev3.RouteAction_HashPolicy_Cookie_:
			hp.Kind, hp.Name = HashCookie, p.Cookie.GetName()
			hp.CookieTTL = p.Cookie.GetTtl().AsDuration()
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if !p.ConnectionProperties.GetSourceIp() {
				return ".hash_policy[" + itoa(i) + "].connection_properties", errf("only source_ip is supported")
			}
			hp.Kind = HashSourceIP
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			hp.Kind, hp.Name = HashQueryParam, p.QueryParameter.GetName()
		default:
			return ".hash_policy[" + itoa(i) + "]", errf("%T is not supported", p)
		}
		r.Hash = append(r.Hash, hp)
	}
	return "", nil
}

func redirect(a *routev3.RedirectAction) (*Redirect, string, error) {
	red := &Redirect{Host: a.GetHostRedirect(), Port: a.GetPortRedirect(), StripQuery: a.GetStripQuery(), Status: 301}
	switch s := a.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			red.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		red.Scheme = s.SchemeRedirect
	}
	switch p := a.GetPathRewriteSpecifier().(type) {
	case nil:
	case *routev3.RedirectAction_PathRedirect:
		red.Path = p.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		red.PrefixRewrite = p.PrefixRewrite
	default:
		return nil, ".path_rewrite_specifier", errf("%T is not supported", p)
	}
	switch a.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		red.Status = 301
	case routev3.RedirectAction_FOUND:
		red.Status = 302
	case routev3.RedirectAction_SEE_OTHER:
		red.Status = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		red.Status = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		red.Status = 308
	}
	return red, "", nil
}

func headerValues(in []*corev3.HeaderValueOption) ([]HeaderValue, error) {
	var out []HeaderValue
	for _, h := range in {
		hv := HeaderValue{Name: strings.ToLower(h.GetHeader().GetKey()), Value: h.GetHeader().GetValue()}
		if h.GetHeader().GetRawValue() != nil {
			hv.Value = string(h.GetHeader().GetRawValue())
		}
		if h.GetAppend() != nil {
			hv.Append = h.GetAppend().GetValue()
		} else {
			switch h.GetAppendAction() {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				hv.Append = true
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				hv.AddIfAbsent = true
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			default:
				return nil, errf("append_action %s is not supported", h.GetAppendAction())
			}
		}
		out = append(out, hv)
	}
	return out, nil
}

func perMillion(f *typev3.FractionalPercent) uint32 {
	n := uint64(f.GetNumerator())
	switch f.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, fracAll))
}

// perFilter decodes the typed_per_filter_config entries weft-proxy honours.
func perFilter(m map[string]*anypb.Any) (*Fault, *CorsPolicy, error) {
	var f *Fault
	var c *CorsPolicy
	for name, a := range m {
		switch name {
		case FilterFault:
			var pb faultv3.HTTPFault
			if err := a.UnmarshalTo(&pb); err != nil {
				return nil, nil, errf("%s: decode HTTPFault: %v", name, err)
			}
			ff, err := faultFrom(&pb)
			if err != nil {
				return nil, nil, errf("%s: %v", name, err)
			}
			f = ff
		case FilterCors:
			var pb corsv3.CorsPolicy
			if err := a.UnmarshalTo(&pb); err != nil {
				return nil, nil, errf("%s: decode CorsPolicy: %v", name, err)
			}
			cc := &CorsPolicy{
				AllowMethods:       nonEmpty(pb.GetAllowMethods()),
				AllowHeaders:       nonEmpty(pb.GetAllowHeaders()),
				ExposeHeaders:      nonEmpty(pb.GetExposeHeaders()),
				MaxAge:             nonEmpty(pb.GetMaxAge()),
				AllowCredentials:   pb.GetAllowCredentials().GetValue(),
				Enabled:            true,
				ForwardNotMatching: pb.GetForwardNotMatchingPreflights() == nil || pb.GetForwardNotMatchingPreflights().GetValue(),
			}
			if fe := pb.GetFilterEnabled(); fe != nil {
				cc.Enabled = perMillion(fe.GetDefaultValue()) > 0
			}
			for i, o := range pb.GetAllowOriginStringMatch() {
				sm, err := NewStringMatcher(o)
				if err != nil {
					return nil, nil, errf("%s: allow_origin_string_match[%d]: %v", name, i, err)
				}
				cc.AllowOrigins = append(cc.AllowOrigins, sm)
			}
			c = cc
		default:
			return nil, nil, errf("per-filter config for %q is not supported", name)
		}
	}
	return f, c, nil
}

func nonEmpty(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// Source returns the RouteConfiguration proto (do not modify).
func (t *Table) Source() *routev3.RouteConfiguration { return t.src }
