package translate

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	securityv1 "istio.io/api/security/v1"

	"github.com/weftmesh/weft/internal/config"
)

// jwtMetadataNamespace is where envoy.filters.http.jwt_authn puts verified
// payloads; each provider's payload_in_metadata key is its issuer.
const jwtMetadataNamespace = "envoy.filters.http.jwt_authn"

// authzBuilder turns AuthorizationPolicy rules into Envoy RBAC policies for
// one proxy.
type authzBuilder struct {
	trustDomain string
	// issuers are the JWT issuers of the RequestAuthentications that apply
	// to the proxy: a request principal "<iss>/<sub>" can only come from
	// one of them, and its claims sit under that issuer's metadata key.
	issuers []string
}

// policy translates one AuthorizationPolicy into one Envoy policy per rule
// (named like Istio's). A policy without rules yields none: for ALLOW that
// still creates the ALLOW filter, which then matches nothing (deny all).
func (b *authzBuilder) policy(o *config.Object, ap *securityv1.AuthorizationPolicy, action rbacv3.RBAC_Action, tcp bool, d *diagSet) map[string]*rbacv3.Policy {
	out := map[string]*rbacv3.Policy{}
	for i, r := range ap.GetRules() {
		t := &ruleTranslator{b: b, o: o, tcp: tcp, allow: action == rbacv3.RBAC_ALLOW, d: d, field: fmt.Sprintf("spec.rules[%d]", i)}
		perm, prin := t.rule(r)
		if t.dropped {
			continue
		}
		out[policyName(o, i)] = &rbacv3.Policy{Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{prin}}
	}
	return out
}

// ruleTranslator translates one rule. Anything it cannot express — an
// HTTP-only field on a TCP chain, a value or key Weft does not support —
// fails closed the way Istio documents it for TCP: an ALLOW rule is
// dropped (it allows nothing), a DENY (or CUSTOM, AUDIT) rule loses that
// condition and so matches more broadly.
type ruleTranslator struct {
	b       *authzBuilder
	o       *config.Object
	tcp     bool
	allow   bool
	d       *diagSet
	field   string
	dropped bool
}

func (t *ruleTranslator) unsupported(field, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	if t.allow {
		t.dropped = true
		t.d.warnObject(t.o, field, "%s: the ALLOW rule is ignored there (it allows nothing)", what)
		return
	}
	t.d.warnObject(t.o, field, "%s: the condition is left out there, so the rule matches more requests (fails closed)", what)
}

func (t *ruleTranslator) httpOnly(field string) bool {
	if t.tcp {
		t.unsupported(field, "HTTP-only field on a TCP port")
		return true
	}
	return false
}

func (t *ruleTranslator) rule(r *securityv1.Rule) (*rbacv3.Permission, *rbacv3.Principal) {
	var perms []*rbacv3.Permission
	var prins []*rbacv3.Principal
	if len(r.GetFrom()) > 0 {
		var ors []*rbacv3.Principal
		for j, f := range r.GetFrom() {
			ors = append(ors, t.source(fmt.Sprintf("%s.from[%d].source", t.field, j), f.GetSource()))
		}
		prins = append(prins, orIDs(ors))
	}
	if len(r.GetTo()) > 0 {
		var ors []*rbacv3.Permission
		for j, to := range r.GetTo() {
			ors = append(ors, t.operation(fmt.Sprintf("%s.to[%d].operation", t.field, j), to.GetOperation()))
		}
		perms = append(perms, orRules(ors))
	}
	for j, c := range r.GetWhen() {
		perm, prin := t.condition(fmt.Sprintf("%s.when[%d]", t.field, j), c)
		if perm != nil {
			perms = append(perms, perm)
		}
		if prin != nil {
			prins = append(prins, prin)
		}
	}
	return andRules(perms), andIDs(prins)
}

func (t *ruleTranslator) source(field string, s *securityv1.Source) *rbacv3.Principal {
	var and []*rbacv3.Principal
	add := func(p *rbacv3.Principal) {
		if p != nil {
			and = append(and, p)
		}
	}
	add(t.principals(field+".principals", s.GetPrincipals(), false, false, t.peerPrincipal))
	add(t.principals(field+".notPrincipals", s.GetNotPrincipals(), true, false, t.peerPrincipal))
	add(t.principals(field+".requestPrincipals", s.GetRequestPrincipals(), false, true, t.requestPrincipal))
	add(t.principals(field+".notRequestPrincipals", s.GetNotRequestPrincipals(), true, true, t.requestPrincipal))
	add(t.principals(field+".namespaces", s.GetNamespaces(), false, false, t.namespace))
	add(t.principals(field+".notNamespaces", s.GetNotNamespaces(), true, false, t.namespace))
	add(t.principals(field+".ipBlocks", s.GetIpBlocks(), false, false, directRemoteIP))
	add(t.principals(field+".notIpBlocks", s.GetNotIpBlocks(), true, false, directRemoteIP))
	add(t.principals(field+".remoteIpBlocks", s.GetRemoteIpBlocks(), false, false, remoteIP))
	add(t.principals(field+".notRemoteIpBlocks", s.GetNotRemoteIpBlocks(), true, false, remoteIP))
	return andIDs(and)
}

func (t *ruleTranslator) operation(field string, op *securityv1.Operation) *rbacv3.Permission {
	var and []*rbacv3.Permission
	add := func(p *rbacv3.Permission) {
		if p != nil {
			and = append(and, p)
		}
	}
	add(t.permissions(field+".hosts", op.GetHosts(), false, true, hostPermission))
	add(t.permissions(field+".notHosts", op.GetNotHosts(), true, true, hostPermission))
	add(t.permissions(field+".ports", op.GetPorts(), false, false, portPermission))
	add(t.permissions(field+".notPorts", op.GetNotPorts(), true, false, portPermission))
	add(t.permissions(field+".methods", op.GetMethods(), false, true, methodPermission))
	add(t.permissions(field+".notMethods", op.GetNotMethods(), true, true, methodPermission))
	add(t.permissions(field+".paths", op.GetPaths(), false, true, pathPermission))
	add(t.permissions(field+".notPaths", op.GetNotPaths(), true, true, pathPermission))
	return andRules(and)
}

// principals translates one value list: any value matches (or_ids), a not*
// list is negated. nil means "no condition".
func (t *ruleTranslator) principals(field string, vals []string, negate, httpOnly bool, conv func(string) (*rbacv3.Principal, string)) *rbacv3.Principal {
	if len(vals) == 0 || httpOnly && t.httpOnly(field) {
		return nil
	}
	var ids []*rbacv3.Principal
	for _, v := range vals {
		p, why := conv(v)
		if why != "" {
			t.unsupported(field, "%s", why)
			return nil
		}
		ids = append(ids, p)
	}
	if negate {
		return notID(orIDs(ids))
	}
	return orIDs(ids)
}

func (t *ruleTranslator) permissions(field string, vals []string, negate, httpOnly bool, conv func(string) (*rbacv3.Permission, string)) *rbacv3.Permission {
	if len(vals) == 0 || httpOnly && t.httpOnly(field) {
		return nil
	}
	var rules []*rbacv3.Permission
	for _, v := range vals {
		p, why := conv(v)
		if why != "" {
			t.unsupported(field, "%s", why)
			return nil
		}
		rules = append(rules, p)
	}
	if negate {
		return notRule(orRules(rules))
	}
	return orRules(rules)
}

// condition translates one when condition into a permission (destination
// attributes) or a principal (source and request attributes).
func (t *ruleTranslator) condition(field string, c *securityv1.Condition) (*rbacv3.Permission, *rbacv3.Principal) {
	key := c.GetKey()
	prin := func(httpOnly bool, conv func(string) (*rbacv3.Principal, string)) *rbacv3.Principal {
		var and []*rbacv3.Principal
		if p := t.principals(field+".values", c.GetValues(), false, httpOnly, conv); p != nil {
			and = append(and, p)
		}
		if p := t.principals(field+".notValues", c.GetNotValues(), true, httpOnly, conv); p != nil {
			and = append(and, p)
		}
		if len(and) == 0 {
			return nil
		}
		return andIDs(and)
	}
	perm := func(conv func(string) (*rbacv3.Permission, string)) *rbacv3.Permission {
		var and []*rbacv3.Permission
		if p := t.permissions(field+".values", c.GetValues(), false, false, conv); p != nil {
			and = append(and, p)
		}
		if p := t.permissions(field+".notValues", c.GetNotValues(), true, false, conv); p != nil {
			and = append(and, p)
		}
		if len(and) == 0 {
			return nil
		}
		return andRules(and)
	}
	switch {
	case strings.HasPrefix(key, "request.headers["):
		name, ok := bracketed(strings.TrimPrefix(key, "request.headers"))
		if !ok || len(name) != 1 || name[0] == "" {
			t.unsupported(field+".key", "condition key %q is not request.headers[<name>]", key)
			return nil, nil
		}
		return nil, prin(true, func(v string) (*rbacv3.Principal, string) {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: authzHeaderMatcher(strings.ToLower(name[0]), v, false)}}, ""
		})
	case key == "source.ip":
		return nil, prin(false, directRemoteIP)
	case key == "remote.ip":
		return nil, prin(false, remoteIP)
	case key == "source.namespace":
		return nil, prin(false, t.namespace)
	case key == "source.principal":
		return nil, prin(false, t.peerPrincipal)
	case key == "request.auth.principal":
		return nil, prin(true, t.requestPrincipal)
	case key == "request.auth.audiences":
		return nil, prin(true, t.claim([]string{"aud"}))
	case key == "request.auth.presenter":
		return nil, prin(true, t.claim([]string{"azp"}))
	case strings.HasPrefix(key, "request.auth.claims["):
		path, ok := bracketed(strings.TrimPrefix(key, "request.auth.claims"))
		if !ok {
			t.unsupported(field+".key", "condition key %q is not request.auth.claims[<name>]([<nested>]...)", key)
			return nil, nil
		}
		return nil, prin(true, t.claim(path))
	case key == "destination.ip":
		return perm(destinationIP), nil
	case key == "destination.port":
		return perm(portPermission), nil
	case key == "connection.sni":
		return perm(func(v string) (*rbacv3.Permission, string) {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: istioStringMatcher(v, false)}}, ""
		}), nil
	}
	t.unsupported(field+".key", "condition key %q is not supported", key)
	return nil, nil
}

// bracketed parses "[a][b]..." into its parts.
func bracketed(s string) ([]string, bool) {
	var out []string
	for s != "" {
		if s[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, false
		}
		out = append(out, s[1:end])
		s = s[end+1:]
	}
	return out, len(out) > 0
}

// matchKind is how Istio reads a value: "abc" exact, "abc*" prefix, "*abc"
// suffix, "*" presence.
type matchKind uint8

const (
	matchExact matchKind = iota
	matchPrefix
	matchSuffix
	matchPresence
)

func istioValue(v string) (matchKind, string) {
	switch {
	case v == "*":
		return matchPresence, ""
	case strings.HasPrefix(v, "*"):
		return matchSuffix, v[1:]
	case strings.HasSuffix(v, "*"):
		return matchPrefix, v[:len(v)-1]
	}
	return matchExact, v
}

// istioStringMatcher is a value as an Envoy string matcher; presence is a
// regex for "not empty" (Envoy's prefix matcher refuses "").
func istioStringMatcher(v string, ignoreCase bool) *matcherv3.StringMatcher {
	k, s := istioValue(v)
	m := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch k {
	case matchPresence:
		m.MatchPattern, m.IgnoreCase = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}, false
	case matchPrefix:
		m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: s}
	case matchSuffix:
		m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: s}
	default:
		m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: s}
	}
	return m
}

func authzHeaderMatcher(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	if k, _ := istioValue(v); k == matchPresence {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: istioStringMatcher(v, ignoreCase)}}
}

// peerPrincipal matches the caller's SPIFFE ID ("cluster.local/ns/x/sa/y"
// in Istio's notation, "spiffe://cluster.local/ns/x/sa/y" on the wire).
func (t *ruleTranslator) peerPrincipal(v string) (*rbacv3.Principal, string) {
	k, s := istioValue(v)
	if k == matchExact || k == matchPrefix {
		if !strings.HasPrefix(s, "spiffe://") {
			s = "spiffe://" + s
		}
		if k == matchExact {
			v = s
		} else {
			v = s + "*"
		}
	}
	return authenticated(istioStringMatcher(v, false)), ""
}

// namespace matches the namespace segment of the caller's SPIFFE ID. An
// exact namespace is a "contains" (no regex on the hot path).
func (t *ruleTranslator) namespace(v string) (*rbacv3.Principal, string) {
	k, s := istioValue(v)
	if strings.Contains(s, "/") {
		return nil, fmt.Sprintf("namespace %q contains a '/'", v)
	}
	var m *matcherv3.StringMatcher
	switch k {
	case matchExact:
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "/ns/" + s + "/"}}
	case matchPrefix:
		m = regexMatcher(`.*/ns/` + regexp.QuoteMeta(s) + `[^/]*/.*`)
	case matchSuffix:
		m = regexMatcher(`.*/ns/[^/]*` + regexp.QuoteMeta(s) + `/.*`)
	default:
		m = regexMatcher(`.*/ns/[^/]+/.*`)
	}
	return authenticated(m), ""
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func cidr(v string) (*corev3.CidrRange, string) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return &corev3.CidrRange{AddressPrefix: p.Masked().Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, ""
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return nil, fmt.Sprintf("%q is not an IP address or CIDR", v)
	}
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}, ""
}

func directRemoteIP(v string) (*rbacv3.Principal, string) {
	c, why := cidr(v)
	if why != "" {
		return nil, why
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: c}}, ""
}

func remoteIP(v string) (*rbacv3.Principal, string) {
	c, why := cidr(v)
	if why != "" {
		return nil, why
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: c}}, ""
}

func destinationIP(v string) (*rbacv3.Permission, string) {
	c, why := cidr(v)
	if why != "" {
		return nil, why
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: c}}, ""
}

func portPermission(v string) (*rbacv3.Permission, string) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Sprintf("%q is not a port", v)
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, ""
}

// hostPermission: hosts are matched case-insensitively against the
// request's authority as sent (a port in it is part of the value, as in
// Istio: list "example.com:*" to allow any port).
func hostPermission(v string) (*rbacv3.Permission, string) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeaderMatcher(":authority", v, true)}}, ""
}

func methodPermission(v string) (*rbacv3.Permission, string) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeaderMatcher(":method", v, false)}}, ""
}

// pathPermission matches the path without the query. Istio's path
// templates ("/{*}/x", "/{**}") are not supported.
func pathPermission(v string) (*rbacv3.Permission, string) {
	if strings.ContainsAny(v, "{}") {
		return nil, fmt.Sprintf("path template %q is not supported", v)
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: istioStringMatcher(v, false)}}}}, ""
}

// requestPrincipal matches "<iss>/<sub>" against the verified JWT. Envoy's
// jwt_authn keeps issuer and subject apart (payload_in_metadata is the
// issuer, so the issuer is which key the payload sits under), hence the
// value is split against each configured issuer: exact and prefix values
// fix the issuer and match the subject; a suffix may reach back into the
// issuer. A value no configured issuer can produce matches nothing.
func (t *ruleTranslator) requestPrincipal(v string) (*rbacv3.Principal, string) {
	k, s := istioValue(v)
	var ors []*rbacv3.Principal
	for _, iss := range t.b.issuers {
		head := iss + "/"
		switch k {
		case matchPresence:
			ors = append(ors, jwtClaim(iss, []string{"iss"}, presentValue()))
		case matchExact:
			if sub, ok := strings.CutPrefix(s, head); ok {
				ors = append(ors, jwtClaim(iss, []string{"sub"}, stringValue(exactString(sub))))
			}
		case matchPrefix:
			switch {
			case strings.HasPrefix(head, s):
				ors = append(ors, jwtClaim(iss, []string{"iss"}, presentValue()))
			case strings.HasPrefix(s, head):
				ors = append(ors, jwtClaim(iss, []string{"sub"}, stringValue(&matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s[len(head):]}})))
			}
		case matchSuffix:
			// The whole suffix inside the subject, or a tail of "iss/"
			// followed by the entire subject.
			if s != "" {
				ors = append(ors, jwtClaim(iss, []string{"sub"}, stringValue(&matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}})))
			}
			for i := 1; i <= len(s); i++ {
				if strings.HasSuffix(head, s[:i]) {
					ors = append(ors, jwtClaim(iss, []string{"sub"}, stringValue(exactString(s[i:]))))
				}
			}
		}
	}
	if len(ors) == 0 {
		return neverID(), ""
	}
	return orIDs(ors), ""
}

// claim matches a JWT claim (nested by path) of any configured issuer. A
// claim may be a string or a list of strings; a list matches when one of
// its elements does.
func (t *ruleTranslator) claim(path []string) func(string) (*rbacv3.Principal, string) {
	return func(v string) (*rbacv3.Principal, string) {
		for _, p := range path {
			if p == "" {
				return nil, "empty claim name"
			}
		}
		var elem *matcherv3.ValueMatcher
		if k, _ := istioValue(v); k == matchPresence {
			elem = presentValue()
		} else {
			elem = stringValue(istioStringMatcher(v, false))
		}
		value := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{
			ValueMatchers: []*matcherv3.ValueMatcher{elem, {MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
				MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: elem}}}}}}}}
		var ors []*rbacv3.Principal
		for _, iss := range t.b.issuers {
			ors = append(ors, jwtClaim(iss, path, value))
		}
		if len(ors) == 0 {
			return neverID(), ""
		}
		return orIDs(ors), ""
	}
}

func jwtClaim(issuer string, path []string, v *matcherv3.ValueMatcher) *rbacv3.Principal {
	segs := []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: issuer}}}
	for _, p := range path {
		segs = append(segs, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: p}})
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: jwtMetadataNamespace, Path: segs, Value: v}}}
}

func presentValue() *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}
}

func stringValue(m *matcherv3.StringMatcher) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}}
}

func exactString(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// The combinators collapse single-element sets and use any for empty ones
// (an absent condition matches everything).

func anyRule() *rbacv3.Permission { return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}} }
func anyID() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}
func neverID() *rbacv3.Principal { return notID(anyID()) }

func andRules(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return anyRule()
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func orRules(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func notRule(p *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
}

func andIDs(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return anyID()
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orIDs(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func notID(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}
