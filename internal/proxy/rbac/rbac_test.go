package rbac

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// req is a test HTTP request; its accessors do not allocate.
type req struct {
	method, path, target, host []byte
	headers                    map[string][]byte // lower-case names
}

func newReq(method, path, query, host string, headers ...string) *req {
	r := &req{method: []byte(method), path: []byte(path), target: []byte(path), host: []byte(host), headers: map[string][]byte{}}
	if query != "" {
		r.target = []byte(path + "?" + query)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.headers[strings.ToLower(headers[i])] = []byte(headers[i+1])
	}
	return r
}

func (r *req) Method() []byte { return r.method }
func (r *req) Path() []byte   { return r.path }
func (r *req) Target() []byte { return r.target }
func (r *req) Host() []byte   { return r.host }
func (r *req) Header(name string) ([]byte, bool) {
	for k, v := range r.headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
func prefixM(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}
func regex(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
}

func permAny() *rbacv3.Permission { return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}} }
func prinAny() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func permAnd(ps ...*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}
func permOr(ps ...*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}
func permNot(p *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
}
func permHeader(name string, sm *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}}}
}
func permPath(sm *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: sm}}}}
}
func permPort(p uint32) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: p}}
}
func cidr(s string, bits uint32) *corev3.CidrRange {
	return &corev3.CidrRange{AddressPrefix: s, PrefixLen: wrapperspb.UInt32(bits)}
}
func prinPeer(sm *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: sm}}}
}
func prinOr(ps ...*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}
func prinNot(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}
func prinMeta(path []string, v *matcherv3.ValueMatcher) *rbacv3.Principal {
	var segs []*matcherv3.MetadataMatcher_PathSegment
	for _, k := range path {
		segs = append(segs, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: JWTMetadataNamespace, Path: segs, Value: v}}}
}

func engine(t *testing.T, action rbacv3.RBAC_Action, perm *rbacv3.Permission, prin *rbacv3.Principal) *Engine {
	t.Helper()
	e, err := CompileEngine(&rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{
		"p": {Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{prin}},
	}}, true)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

const reviews = "spiffe://cluster.local/ns/default/sa/reviews"

func TestMatchers(t *testing.T) {
	base := func() *Input {
		return &Input{
			Principal:   reviews,
			Source:      netip.MustParseAddr("10.0.0.7"),
			Remote:      netip.MustParseAddr("10.0.0.7"),
			Destination: netip.MustParseAddrPort("10.0.0.9:9080"),
			SNI:         "outbound_.9080_._.productpage.default.svc.cluster.local",
			HTTP:        newReq("GET", "/api/v1/books", "a=1", "productpage:9080", "x-user", "alice"),
			JWT: map[string]any{"https://issuer.example": map[string]any{
				"iss": "https://issuer.example", "sub": "alice", "groups": []any{"dev", "admin"},
				"nested": map[string]any{"role": "owner"}, "verified": true, "n": 3.0,
			}},
		}
	}
	tcp := func() *Input { in := base(); in.HTTP, in.JWT = nil, nil; return in }
	mtlsless := func() *Input { in := base(); in.Principal = ""; return in }
	stringV := func(sm *matcherv3.StringMatcher) *matcherv3.ValueMatcher {
		return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: sm}}
	}
	present := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}
	oneOf := func(v *matcherv3.ValueMatcher) *matcherv3.ValueMatcher {
		return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
			MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: v}}}}
	}
	const iss = "https://issuer.example"
	tests := []struct {
		name string
		perm *rbacv3.Permission
		prin *rbacv3.Principal
		in   *Input
		want bool
	}{
		{"any", permAny(), prinAny(), base(), true},
		{"method", permHeader(":method", exact("GET")), prinAny(), base(), true},
		{"method other", permHeader(":method", exact("POST")), prinAny(), base(), false},
		{"authority ignore case", permHeader(":authority", &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "PRODUCTPAGE"}, IgnoreCase: true}), prinAny(), base(), true},
		{":path has the query", permHeader(":path", exact("/api/v1/books?a=1")), prinAny(), base(), true},
		{"header", permHeader("X-User", exact("alice")), prinAny(), base(), true},
		{"header absent", permHeader("x-group", exact("alice")), prinAny(), base(), false},
		{"header present", &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: "x-user",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}, prinAny(), base(), true},
		{"header inverted", &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: "x-user",
			InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("alice")}}}}, prinAny(), base(), false},
		{"header on TCP", permHeader(":method", exact("GET")), prinAny(), tcp(), false},
		{"url_path prefix", permPath(prefixM("/api/")), prinAny(), base(), true},
		{"url_path excludes query", permPath(exact("/api/v1/books")), prinAny(), base(), true},
		{"url_path suffix", permPath(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/books"}}), prinAny(), base(), true},
		{"url_path other", permPath(exact("/admin")), prinAny(), base(), false},
		{"port", permPort(9080), prinAny(), base(), true},
		{"port other", permPort(9090), prinAny(), base(), false},
		{"port range", &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPortRange{DestinationPortRange: &typev3.Int32Range{Start: 9000, End: 9081}}}, prinAny(), base(), true},
		{"destination ip", &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr("10.0.0.0", 24)}}, prinAny(), base(), true},
		{"destination ip other", &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr("10.0.1.0", 24)}}, prinAny(), base(), false},
		{"sni", &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".svc.cluster.local"}}}}, prinAny(), base(), true},
		{"and", permAnd(permPort(9080), permHeader(":method", exact("GET"))), prinAny(), base(), true},
		{"and one fails", permAnd(permPort(9080), permHeader(":method", exact("PUT"))), prinAny(), base(), false},
		{"or", permOr(permPort(1), permHeader(":method", exact("GET"))), prinAny(), base(), true},
		{"not", permNot(permPath(prefixM("/admin"))), prinAny(), base(), true},
		{"principal exact", permAny(), prinPeer(exact(reviews)), base(), true},
		{"principal other", permAny(), prinPeer(exact("spiffe://cluster.local/ns/default/sa/ratings")), base(), false},
		{"principal without mTLS", permAny(), prinPeer(exact(reviews)), mtlsless(), false},
		{"any authenticated", permAny(), prinPeer(nil), base(), true},
		{"any authenticated without mTLS", permAny(), prinPeer(nil), mtlsless(), false},
		{"namespace regex", permAny(), prinPeer(regex(`.*/ns/default/.*`)), base(), true},
		{"namespace regex is anchored", permAny(), prinPeer(regex(`/ns/default/`)), base(), false},
		{"not principal without mTLS", permAny(), prinNot(prinPeer(exact(reviews))), mtlsless(), true},
		{"direct remote ip", permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.0.0.7", 32)}}, base(), true},
		{"remote ip", permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr("192.168.0.0", 16)}}, base(), false},
		{"cidr without prefix_len matches all (Envoy default 0)", permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{
			RemoteIp: &corev3.CidrRange{AddressPrefix: "192.168.0.0"}}}, base(), true},
		{"jwt sub", permAny(), prinMeta([]string{iss, "sub"}, stringV(exact("alice"))), base(), true},
		{"jwt sub other", permAny(), prinMeta([]string{iss, "sub"}, stringV(exact("bob"))), base(), false},
		{"jwt other issuer", permAny(), prinMeta([]string{"https://other", "sub"}, stringV(exact("alice"))), base(), false},
		{"jwt missing", permAny(), prinMeta([]string{iss, "sub"}, present), tcp(), false},
		{"jwt present", permAny(), prinMeta([]string{iss, "iss"}, present), base(), true},
		{"jwt present is false on a list", permAny(), prinMeta([]string{iss, "groups"}, present), base(), false},
		{"jwt list one_of", permAny(), prinMeta([]string{iss, "groups"}, oneOf(stringV(exact("admin")))), base(), true},
		{"jwt list one_of other", permAny(), prinMeta([]string{iss, "groups"}, oneOf(stringV(exact("ops")))), base(), false},
		{"jwt string matcher on a list", permAny(), prinMeta([]string{iss, "groups"}, stringV(exact("admin"))), base(), false},
		{"jwt or_match", permAny(), prinMeta([]string{iss, "groups"}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{
			OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{stringV(exact("admin")), oneOf(stringV(exact("admin")))}}}}), base(), true},
		{"jwt nested", permAny(), prinMeta([]string{iss, "nested", "role"}, stringV(exact("owner"))), base(), true},
		{"jwt bool", permAny(), prinMeta([]string{iss, "verified"}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: true}}), base(), true},
		{"jwt number is present", permAny(), prinMeta([]string{iss, "n"}, present), base(), true},
		{"principal or", permAny(), prinOr(prinPeer(exact("x")), prinPeer(exact(reviews))), base(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, rbacv3.RBAC_ALLOW, tc.perm, tc.prin)
			if _, got := e.Match(tc.in); got != tc.want {
				t.Fatalf("match = %v, want %v", got, tc.want)
			}
			d := engine(t, rbacv3.RBAC_DENY, tc.perm, tc.prin)
			if allowed, _ := d.Allowed(tc.in); allowed == tc.want {
				t.Fatalf("DENY engine allowed = %v for match %v", allowed, tc.want)
			}
		})
	}
}

func TestActions(t *testing.T) {
	in := &Input{Destination: netip.MustParseAddrPort("10.0.0.9:9080")}
	// ALLOW with no policies denies everything (Istio's allow-nothing).
	e, err := CompileEngine(&rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}, false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.Allowed(in); ok {
		t.Fatal("ALLOW without policies allowed a request")
	}
	// DENY with no policies denies nothing.
	e, _ = CompileEngine(&rbacv3.RBAC{Action: rbacv3.RBAC_DENY}, false)
	if ok, _ := e.Allowed(in); !ok {
		t.Fatal("DENY without policies denied a request")
	}
	// LOG never denies, even when a policy matches.
	l := engine(t, rbacv3.RBAC_LOG, permPort(9080), prinAny())
	if ok, name := l.Allowed(in); !ok || name != "p" {
		t.Fatalf("LOG: allowed %v policy %q", ok, name)
	}
	// The first matching policy by name is reported.
	e, _ = CompileEngine(&rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"b": {Permissions: []*rbacv3.Permission{permAny()}, Principals: []*rbacv3.Principal{prinAny()}},
		"a": {Permissions: []*rbacv3.Permission{permAny()}, Principals: []*rbacv3.Principal{prinAny()}},
	}}, false)
	if ok, name := e.Allowed(in); ok || name != "a" {
		t.Fatalf("DENY: allowed %v policy %q, want denied by a", ok, name)
	}
}

func TestFilterLogsAuditAndShadow(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	deny := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[dry]-rule[0]": {Permissions: []*rbacv3.Permission{permPath(prefixM("/admin"))}, Principals: []*rbacv3.Principal{prinAny()}},
	}}
	f, err := CompileHTTP(HTTPFilterName, &httprbacv3.RBAC{ShadowRules: deny})
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{HTTP: newReq("GET", "/admin/x", "", "h")}
	if !f.Check(in, log) {
		t.Fatal("shadow rules denied a request")
	}
	if s := buf.String(); !strings.Contains(s, "component=rbac") || !strings.Contains(s, "shadow_result=denied") ||
		!strings.Contains(s, "ns[default]-policy[dry]-rule[0]") || !strings.Contains(s, "path=/admin/x") {
		t.Fatalf("shadow log line: %q", s)
	}
	buf.Reset()
	audit, err := CompileHTTP(HTTPFilterName, &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_LOG, Policies: deny.Policies}})
	if err != nil {
		t.Fatal(err)
	}
	if !audit.Check(in, log) {
		t.Fatal("LOG rules denied a request")
	}
	if s := buf.String(); !strings.Contains(s, `msg="rbac audit"`) || !strings.Contains(s, "component=rbac") {
		t.Fatalf("audit log line: %q", s)
	}
	buf.Reset()
	audit.Check(&Input{HTTP: newReq("GET", "/public", "", "h")}, log)
	if buf.Len() != 0 {
		t.Fatalf("an unmatched request was audited: %q", buf.String())
	}
}

func TestCompileRefuses(t *testing.T) {
	pol := func(perm *rbacv3.Permission, prin *rbacv3.Principal) *rbacv3.RBAC {
		return &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{prin}}}}
	}
	tests := []struct {
		name    string
		compile func() error
		want    string
	}{
		{"header in a network filter", func() error {
			_, err := CompileNetwork(&netrbacv3.RBAC{StatPrefix: "tcp", Rules: pol(permHeader(":method", exact("GET")), prinAny())})
			return err
		}, `rules.policies["p"].permissions[0].header: header matches HTTP requests; not supported in envoy.filters.network.rbac`},
		{"metadata in a network filter", func() error {
			_, err := CompileNetwork(&netrbacv3.RBAC{StatPrefix: "tcp", Rules: pol(permAny(), prinMeta([]string{"i", "sub"},
				&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}))})
			return err
		}, `rules.policies["p"].principals[0].metadata: metadata matches HTTP requests`},
		{"other metadata namespace", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{
				Metadata: &matcherv3.MetadataMatcher{Filter: "istio_authn", Path: []*matcherv3.MetadataMatcher_PathSegment{{
					Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "request.auth.principal"}}},
					Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}}}})})
			return err
		}, `principals[0].metadata.filter: only envoy.filters.http.jwt_authn metadata is supported, not "istio_authn"`},
		{"policy without permissions", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {}}}})
			return err
		}, `rules.policies["p"].permissions: at least one permission is required`},
		{"CEL condition", func() error {
			p := pol(permAny(), prinAny())
			p.Policies["p"].CelConfig = &corev3.CelExpressionConfig{}
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: p})
			return err
		}, `rules.policies["p"].condition: CEL conditions are not supported`},
		{"uri template", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(&rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{}}, prinAny())})
			return err
		}, `permissions[0]: permission uri_template is not supported`},
		{"filter state", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_FilterState{}})})
			return err
		}, `principals[0]: principal filter_state is not supported`},
		{"source_ip", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_SourceIp{SourceIp: cidr("1.2.3.4", 32)}})})
			return err
		}, `source_ip: deprecated; use direct_remote_ip`},
		{"bad regex", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(permPath(regex("(")), prinAny())})
			return err
		}, `permissions[0].url_path.path: invalid RE2 regex`},
		{"bad cidr", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.0.0.1", 33)}})})
			return err
		}, `direct_remote_ip.prefix_len: 33 is longer than the address`},
		{"empty and", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: pol(permAnd(), prinAny())})
			return err
		}, `and_rules.rules: at least one rule is required`},
		{"audit logging options", func() error {
			_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: &rbacv3.RBAC{AuditLoggingOptions: &rbacv3.RBAC_AuditLoggingOptions{}}})
			return err
		}, `rules.audit_logging_options: audit loggers are not supported`},
		{"unknown action", func() error {
			_, err := CompileNetwork(&netrbacv3.RBAC{StatPrefix: "x", Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_Action(9)}})
			return err
		}, `rules.action: action 9 is not supported`},
		{"delay_deny", func() error {
			_, err := CompileNetwork(&netrbacv3.RBAC{StatPrefix: "x", DelayDeny: durationpb.New(time.Second)})
			return err
		}, `delay_deny: not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.compile()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDepthBound(t *testing.T) {
	p := permAny()
	for i := 0; i < maxDepth+5; i++ {
		p = permNot(p)
	}
	_, err := CompileHTTP("f", &httprbacv3.RBAC{Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
		Permissions: []*rbacv3.Permission{p}, Principals: []*rbacv3.Principal{prinAny()}}}}})
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("deep nesting: %v", err)
	}
}

// TestEvaluationDoesNotAllocate: a policy shaped like weftd's output
// (principal, namespace regex, method, path, port, JWT claim) evaluated
// against an HTTP request costs no heap allocation.
func TestEvaluationDoesNotAllocate(t *testing.T) {
	e := engine(t, rbacv3.RBAC_ALLOW,
		permAnd(permOr(permHeader(":method", exact("GET")), permHeader(":method", exact("HEAD"))), permPath(prefixM("/api/")), permPort(9080)),
		prinOr(prinPeer(exact("spiffe://cluster.local/ns/x/sa/y")), prinPeer(regex(`.*/ns/default/.*`)),
			prinMeta([]string{"i", "sub"}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: exact("a")}})))
	in := &Input{Principal: reviews, Destination: netip.MustParseAddrPort("10.0.0.9:9080"),
		HTTP: newReq("GET", "/api/v1", "", "h")}
	if ok, _ := e.Allowed(in); !ok {
		t.Fatal("not allowed")
	}
	if n := testing.AllocsPerRun(1000, func() { e.Allowed(in) }); n != 0 {
		t.Fatalf("%v allocations per evaluation", n)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	e, err := CompileEngine(&rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"p": {Permissions: []*rbacv3.Permission{permAnd(permHeader(":method", exact("GET")), permPath(prefixM("/api/")))},
			Principals: []*rbacv3.Principal{prinOr(prinPeer(exact("spiffe://cluster.local/ns/x/sa/y")), prinPeer(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "/ns/default/"}}))}},
	}}, true)
	if err != nil {
		b.Fatal(err)
	}
	in := &Input{Principal: reviews, Destination: netip.MustParseAddrPort("10.0.0.9:9080"),
		HTTP: newReq("GET", "/api/v1", "", "h")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.Allowed(in)
	}
}
