package rbac

import (
	"fmt"
	"net/netip"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftmesh/weft/internal/proxy/fielderr"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
)

// FieldError names the field of a filter config weft-proxy cannot honour,
// relative to the filter's typed_config (e.g.
// `rules.policies["p"].permissions[0].matcher`).
type FieldError = fielderr.Error

func fieldErr(field, format string, args ...any) *FieldError {
	return fielderr.New(field, format, args...)
}

// maxDepth bounds the nesting of and/or/not rules; deeper configs are
// refused rather than risking the stack on evaluation.
const maxDepth = 64

// CompileHTTP compiles the config of an envoy.filters.http.rbac filter.
func CompileHTTP(name string, pb *httprbacv3.RBAC) (*Filter, error) {
	if pb.GetMatcher() != nil {
		return nil, fieldErr("matcher", "matcher trees are not supported; use rules")
	}
	if pb.GetShadowMatcher() != nil {
		return nil, fieldErr("shadow_matcher", "matcher trees are not supported; use shadow_rules")
	}
	return compileFilter(name, pb.GetRules(), pb.GetShadowRules(), true)
}

// CompileNetwork compiles the config of an envoy.filters.network.rbac
// filter. HTTP matchers (header, url_path, metadata) are refused: a TCP
// connection has no request to match them against.
func CompileNetwork(pb *netrbacv3.RBAC) (*Filter, error) {
	switch {
	case pb.GetMatcher() != nil:
		return nil, fieldErr("matcher", "matcher trees are not supported; use rules")
	case pb.GetShadowMatcher() != nil:
		return nil, fieldErr("shadow_matcher", "matcher trees are not supported; use shadow_rules")
	case pb.GetDelayDeny() != nil:
		return nil, fieldErr("delay_deny", "not supported")
	}
	// Both enforcement types evaluate to the same result here: every
	// attribute a network policy can match is fixed when the connection
	// is accepted, which is when weft-proxy checks it.
	name := pb.GetStatPrefix()
	if name == "" {
		name = NetworkFilterName
	}
	return compileFilter(name, pb.GetRules(), pb.GetShadowRules(), false)
}

func compileFilter(name string, rules, shadow *rbacv3.RBAC, http bool) (*Filter, error) {
	f := &Filter{Name: name}
	var err error
	if rules != nil {
		if f.rules, err = compileEngine("rules", rules, http); err != nil {
			return nil, err
		}
	}
	if shadow != nil {
		if f.shadow, err = compileEngine("shadow_rules", shadow, http); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// CompileEngine compiles an envoy.config.rbac.v3.RBAC; http says whether
// HTTP matchers are allowed.
func CompileEngine(pb *rbacv3.RBAC, http bool) (*Engine, error) {
	return compileEngine("", pb, http)
}

func compileEngine(field string, pb *rbacv3.RBAC, http bool) (*Engine, error) {
	e := &Engine{}
	switch pb.GetAction() {
	case rbacv3.RBAC_ALLOW:
		e.action = Allow
	case rbacv3.RBAC_DENY:
		e.action = Deny
	case rbacv3.RBAC_LOG:
		e.action = Log
	default:
		return nil, fieldErr(join(field, "action"), "action %v is not supported", pb.GetAction())
	}
	if pb.GetAuditLoggingOptions() != nil {
		return nil, fieldErr(join(field, "audit_logging_options"), "audit loggers are not supported (weft-proxy logs LOG and shadow results itself)")
	}
	for pname, p := range pb.GetPolicies() {
		pf := join(field, "policies["+strconv.Quote(pname)+"]")
		switch {
		case p.GetCondition() != nil || p.GetCheckedCondition() != nil || p.GetCelConfig() != nil:
			return nil, fieldErr(pf+".condition", "CEL conditions are not supported")
		case len(p.GetPermissions()) == 0:
			return nil, fieldErr(pf+".permissions", "at least one permission is required")
		case len(p.GetPrincipals()) == 0:
			return nil, fieldErr(pf+".principals", "at least one principal is required")
		}
		c := compiler{http: http}
		cp := policy{name: pname}
		for i, perm := range p.GetPermissions() {
			n, err := c.permission(fmt.Sprintf("%s.permissions[%d]", pf, i), perm, 0)
			if err != nil {
				return nil, err
			}
			cp.permissions = append(cp.permissions, n)
		}
		for i, pr := range p.GetPrincipals() {
			n, err := c.principal(fmt.Sprintf("%s.principals[%d]", pf, i), pr, 0)
			if err != nil {
				return nil, err
			}
			cp.principals = append(cp.principals, n)
		}
		e.policies = append(e.policies, cp)
	}
	sortPolicies(e.policies)
	return e, nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

type compiler struct{ http bool }

func (c compiler) httpOnly(field, what string) error {
	if c.http {
		return nil
	}
	return fieldErr(field, "%s matches HTTP requests; not supported in %s", what, NetworkFilterName)
}

func (c compiler) permission(field string, p *rbacv3.Permission, depth int) (node, error) {
	if depth > maxDepth {
		return node{}, fieldErr(field, "rules nested deeper than %d", maxDepth)
	}
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return node{}, fieldErr(field+".any", "any must be true")
		}
		return node{kind: kindAny}, nil
	case *rbacv3.Permission_AndRules:
		return c.permissionSet(field+".and_rules", kindAnd, r.AndRules.GetRules(), depth)
	case *rbacv3.Permission_OrRules:
		return c.permissionSet(field+".or_rules", kindOr, r.OrRules.GetRules(), depth)
	case *rbacv3.Permission_NotRule:
		child, err := c.permission(field+".not_rule", r.NotRule, depth+1)
		if err != nil {
			return node{}, err
		}
		return node{kind: kindNot, children: []node{child}}, nil
	case *rbacv3.Permission_Header:
		if err := c.httpOnly(field+".header", "header"); err != nil {
			return node{}, err
		}
		h, err := compileHeader(field+".header", r.Header)
		return node{kind: kindHeader, header: h}, err
	case *rbacv3.Permission_UrlPath:
		if err := c.httpOnly(field+".url_path", "url_path"); err != nil {
			return node{}, err
		}
		pm, ok := r.UrlPath.GetRule().(*matcherv3.PathMatcher_Path)
		if !ok {
			return node{}, fieldErr(field+".url_path", "only path string matchers are supported")
		}
		sm, err := compileString(field+".url_path.path", pm.Path)
		return node{kind: kindURLPath, str: sm}, err
	case *rbacv3.Permission_DestinationIp:
		pfx, err := compileCIDR(field+".destination_ip", r.DestinationIp)
		return node{kind: kindDestinationIP, prefix: pfx}, err
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return node{}, fieldErr(field+".destination_port", "port %d out of range", r.DestinationPort)
		}
		return node{kind: kindDestinationPort, port: r.DestinationPort}, nil
	case *rbacv3.Permission_DestinationPortRange:
		start, end := r.DestinationPortRange.GetStart(), r.DestinationPortRange.GetEnd()
		if start < 0 || end > 65536 || start >= end {
			return node{}, fieldErr(field+".destination_port_range", "invalid range [%d, %d)", start, end)
		}
		return node{kind: kindDestinationPortRange, port: uint32(start), portEnd: uint32(end)}, nil
	case *rbacv3.Permission_RequestedServerName:
		sm, err := compileString(field+".requested_server_name", r.RequestedServerName)
		return node{kind: kindSNI, str: sm}, err
	case *rbacv3.Permission_Metadata:
		if err := c.httpOnly(field+".metadata", "metadata"); err != nil {
			return node{}, err
		}
		m, err := compileMetadata(field+".metadata", r.Metadata)
		return node{kind: kindMetadata, meta: m}, err
	case nil:
		return node{}, fieldErr(field, "permission has no rule")
	default:
		return node{}, fieldErr(field, "permission %s is not supported", oneofName(p, "rule"))
	}
}

func (c compiler) permissionSet(field string, k kind, rules []*rbacv3.Permission, depth int) (node, error) {
	if len(rules) == 0 {
		return node{}, fieldErr(field+".rules", "at least one rule is required")
	}
	n := node{kind: k, children: make([]node, 0, len(rules))}
	for i, r := range rules {
		child, err := c.permission(fmt.Sprintf("%s.rules[%d]", field, i), r, depth+1)
		if err != nil {
			return node{}, err
		}
		n.children = append(n.children, child)
	}
	return n, nil
}

func (c compiler) principal(field string, p *rbacv3.Principal, depth int) (node, error) {
	if depth > maxDepth {
		return node{}, fieldErr(field, "ids nested deeper than %d", maxDepth)
	}
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !id.Any {
			return node{}, fieldErr(field+".any", "any must be true")
		}
		return node{kind: kindAny}, nil
	case *rbacv3.Principal_AndIds:
		return c.principalSet(field+".and_ids", kindAnd, id.AndIds.GetIds(), depth)
	case *rbacv3.Principal_OrIds:
		return c.principalSet(field+".or_ids", kindOr, id.OrIds.GetIds(), depth)
	case *rbacv3.Principal_NotId:
		child, err := c.principal(field+".not_id", id.NotId, depth+1)
		if err != nil {
			return node{}, err
		}
		return node{kind: kindNot, children: []node{child}}, nil
	case *rbacv3.Principal_Authenticated_:
		n := node{kind: kindAuthenticated}
		if sm := id.Authenticated.GetPrincipalName(); sm != nil {
			var err error
			if n.str, err = compileString(field+".authenticated.principal_name", sm); err != nil {
				return node{}, err
			}
		}
		return n, nil
	case *rbacv3.Principal_DirectRemoteIp:
		pfx, err := compileCIDR(field+".direct_remote_ip", id.DirectRemoteIp)
		return node{kind: kindDirectRemoteIP, prefix: pfx}, err
	case *rbacv3.Principal_RemoteIp:
		pfx, err := compileCIDR(field+".remote_ip", id.RemoteIp)
		return node{kind: kindRemoteIP, prefix: pfx}, err
	case *rbacv3.Principal_Header:
		if err := c.httpOnly(field+".header", "header"); err != nil {
			return node{}, err
		}
		h, err := compileHeader(field+".header", id.Header)
		return node{kind: kindHeader, header: h}, err
	case *rbacv3.Principal_UrlPath:
		if err := c.httpOnly(field+".url_path", "url_path"); err != nil {
			return node{}, err
		}
		pm, ok := id.UrlPath.GetRule().(*matcherv3.PathMatcher_Path)
		if !ok {
			return node{}, fieldErr(field+".url_path", "only path string matchers are supported")
		}
		sm, err := compileString(field+".url_path.path", pm.Path)
		return node{kind: kindURLPath, str: sm}, err
	case *rbacv3.Principal_Metadata:
		if err := c.httpOnly(field+".metadata", "metadata"); err != nil {
			return node{}, err
		}
		m, err := compileMetadata(field+".metadata", id.Metadata)
		return node{kind: kindMetadata, meta: m}, err
	case *rbacv3.Principal_SourceIp:
		return node{}, fieldErr(field+".source_ip", "deprecated; use direct_remote_ip")
	case nil:
		return node{}, fieldErr(field, "principal has no identifier")
	default:
		return node{}, fieldErr(field, "principal %s is not supported", oneofName(p, "identifier"))
	}
}

func (c compiler) principalSet(field string, k kind, ids []*rbacv3.Principal, depth int) (node, error) {
	if len(ids) == 0 {
		return node{}, fieldErr(field+".ids", "at least one id is required")
	}
	n := node{kind: k, children: make([]node, 0, len(ids))}
	for i, id := range ids {
		child, err := c.principal(fmt.Sprintf("%s.ids[%d]", field, i), id, depth+1)
		if err != nil {
			return node{}, err
		}
		n.children = append(n.children, child)
	}
	return n, nil
}

// oneofName names the set field of m's oneof for error messages.
func oneofName(m proto.Message, oneof string) string {
	r := m.ProtoReflect()
	if od := r.Descriptor().Oneofs().ByName(protoreflect.Name(oneof)); od != nil {
		if fd := r.WhichOneof(od); fd != nil {
			return string(fd.Name())
		}
	}
	return "(unknown)"
}

func compileString(field string, sm *matcherv3.StringMatcher) (*route.StringMatcher, error) {
	if sm == nil {
		return nil, fieldErr(field, "string matcher is required")
	}
	m, err := route.NewStringMatcher(sm)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	return &m, nil
}

func compileCIDR(field string, c *corev3.CidrRange) (netip.Prefix, error) {
	ip, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fieldErr(field+".address_prefix", "%q is not an IP address", c.GetAddressPrefix())
	}
	ip = ip.Unmap()
	bits := 0 // Envoy: prefix_len defaults to 0
	if c.GetPrefixLen() != nil {
		bits = int(c.GetPrefixLen().GetValue())
	}
	if bits > ip.BitLen() {
		return netip.Prefix{}, fieldErr(field+".prefix_len", "%d is longer than the address", bits)
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fieldErr(field, "%v", err)
	}
	return p, nil
}

// headerMatch is a compiled route.v3.HeaderMatcher as RBAC uses it.
type headerMatch struct {
	name    string
	pseudo  pseudo
	str     *route.StringMatcher
	present int8 // 1: must be present, -1: must be absent, 0: string match
	invert  bool
	missing bool // treat_missing_header_as_empty
}

type pseudo uint8

const (
	pseudoNone pseudo = iota
	pseudoMethod
	pseudoAuthority
	pseudoPath
)

func compileHeader(field string, h *routev3.HeaderMatcher) (*headerMatch, error) {
	hm := &headerMatch{name: h.GetName(), invert: h.GetInvertMatch(), missing: h.GetTreatMissingHeaderAsEmpty()}
	if hm.name == "" {
		return nil, fieldErr(field+".name", "header name is required")
	}
	switch hm.name {
	case ":method":
		hm.pseudo = pseudoMethod
	case ":authority", "host":
		hm.pseudo = pseudoAuthority
	case ":path":
		hm.pseudo = pseudoPath
	}
	var legacy *matcherv3.StringMatcher
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := compileString(field+".string_match", s.StringMatch)
		if err != nil {
			return nil, err
		}
		hm.str = sm
	case *routev3.HeaderMatcher_ExactMatch:
		legacy = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}}
	case *routev3.HeaderMatcher_PrefixMatch:
		legacy = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}}
	case *routev3.HeaderMatcher_SuffixMatch:
		legacy = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}}
	case *routev3.HeaderMatcher_ContainsMatch:
		legacy = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		legacy = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}
	case *routev3.HeaderMatcher_PresentMatch:
		hm.present = -1
		if s.PresentMatch {
			hm.present = 1
		}
	case nil:
		hm.present = 1 // Envoy: no specifier means "present"
	default:
		return nil, fieldErr(field, "header match %T is not supported", s)
	}
	if legacy != nil {
		sm, err := compileString(field, legacy)
		if err != nil {
			return nil, err
		}
		hm.str = sm
	}
	return hm, nil
}

// metaMatch is a compiled MetadataMatcher on the jwt_authn namespace.
type metaMatch struct {
	path   []string
	value  valueMatch
	invert bool
}

type vkind uint8

const (
	vString vkind = iota
	vPresent
	vBool
	vList
	vOr
)

type valueMatch struct {
	kind    vkind
	str     *route.StringMatcher
	present bool
	boolean bool
	elems   []valueMatch // vList: one element (one_of); vOr: alternatives
}

func compileMetadata(field string, m *matcherv3.MetadataMatcher) (*metaMatch, error) {
	if m.GetFilter() != JWTMetadataNamespace {
		return nil, fieldErr(field+".filter", "only %s metadata is supported, not %q", JWTMetadataNamespace, m.GetFilter())
	}
	if len(m.GetPath()) == 0 {
		return nil, fieldErr(field+".path", "at least one path segment is required")
	}
	mm := &metaMatch{invert: m.GetInvert()}
	for i, seg := range m.GetPath() {
		k, ok := seg.GetSegment().(*matcherv3.MetadataMatcher_PathSegment_Key)
		if !ok || k.Key == "" {
			return nil, fieldErr(fmt.Sprintf("%s.path[%d]", field, i), "path segments must be non-empty keys")
		}
		mm.path = append(mm.path, k.Key)
	}
	v, err := compileValue(field+".value", m.GetValue(), 0)
	if err != nil {
		return nil, err
	}
	mm.value = v
	return mm, nil
}

func compileValue(field string, v *matcherv3.ValueMatcher, depth int) (valueMatch, error) {
	if depth > maxDepth {
		return valueMatch{}, fieldErr(field, "value matchers nested deeper than %d", maxDepth)
	}
	switch p := v.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_StringMatch:
		sm, err := compileString(field+".string_match", p.StringMatch)
		return valueMatch{kind: vString, str: sm}, err
	case *matcherv3.ValueMatcher_PresentMatch:
		return valueMatch{kind: vPresent, present: p.PresentMatch}, nil
	case *matcherv3.ValueMatcher_BoolMatch:
		return valueMatch{kind: vBool, boolean: p.BoolMatch}, nil
	case *matcherv3.ValueMatcher_ListMatch:
		one, ok := p.ListMatch.GetMatchPattern().(*matcherv3.ListMatcher_OneOf)
		if !ok {
			return valueMatch{}, fieldErr(field+".list_match", "only one_of is supported")
		}
		elem, err := compileValue(field+".list_match.one_of", one.OneOf, depth+1)
		return valueMatch{kind: vList, elems: []valueMatch{elem}}, err
	case *matcherv3.ValueMatcher_OrMatch:
		vms := p.OrMatch.GetValueMatchers()
		if len(vms) == 0 {
			return valueMatch{}, fieldErr(field+".or_match", "at least one value matcher is required")
		}
		out := valueMatch{kind: vOr}
		for i, sub := range vms {
			e, err := compileValue(fmt.Sprintf("%s.or_match.value_matchers[%d]", field, i), sub, depth+1)
			if err != nil {
				return valueMatch{}, err
			}
			out.elems = append(out.elems, e)
		}
		return out, nil
	case nil:
		return valueMatch{}, fieldErr(field, "value matcher is required")
	default:
		return valueMatch{}, fieldErr(field, "value match %T is not supported (string_match, present_match, bool_match, list_match, or_match are)", p)
	}
}
