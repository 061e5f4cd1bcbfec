package translate

// These tests drive requests through what weftd generates AND what
// weft-proxy builds from it: AuthorizationPolicies and
// RequestAuthentications are translated for a proxy, the resulting
// virtualInbound is compiled by weft-proxy's runtime, and each simulated
// request or connection is decided by the proxy's own jwtauthn and rbac
// packages. The expectations are Istio's documented semantics.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/proxy/rbac"
	"github.com/weftmesh/weft/internal/proxy/runtime"
)

const (
	simIssuer = "https://auth.example.com"
	reviewsSA = "spiffe://cluster.local/ns/default/sa/reviews"
	ratingsSA = "spiffe://cluster.local/ns/default/sa/ratings"
	otherNSSA = "spiffe://cluster.local/ns/other/sa/details"
)

// simKey signs the tests' JWTs; simJWKS is its public key set.
var simKey, simJWKS = func() (jose.Signer, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "sim"}}, nil)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "sim", Algorithm: "ES256", Use: "sig"}}})
	return s, string(b)
}()

func simToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": simIssuer, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	jws, err := simKey.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

// requestAuthn is a RequestAuthentication for simIssuer on productpage.
func requestAuthn() string {
	jwks, _ := json.Marshal(simJWKS)
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  jwtRules:
  - issuer: %s
    jwks: %s
    outputPayloadToHeader: x-jwt-payload
`, simIssuer, jwks)
}

func policyObjects(t *testing.T, yaml string) []*config.Object {
	t.Helper()
	if strings.TrimSpace(yaml) == "" {
		return nil
	}
	objs, diags := config.Decode([]byte(yaml), config.Origin{File: "policies.yaml"})
	if diags.HasErrors() {
		t.Fatalf("decode: %v", diags.Errors())
	}
	for _, o := range objs {
		if ds := config.Validate(o); ds.HasErrors() {
			t.Fatalf("validate %s: %v", o.Key(), ds.Errors())
		}
	}
	return objs
}

// authzWorld is one proxy's virtualInbound as weft-proxy compiled it.
type authzWorld struct {
	l        *runtime.Listener
	warnings config.Diagnostics
}

func newAuthzWorld(t *testing.T, p *model.Proxy, yaml string) *authzWorld {
	t.Helper()
	snap := rtModel(t, append(bookinfoObjects(), policyObjects(t, yaml)...)...)
	res, err := Generator{}.GenerateInbound(Input{Model: snap, Proxy: p})
	if err != nil {
		t.Fatal(err)
	}
	validateRouteResources(t, res.Listeners) // go-control-plane's ValidateAll, Anys included
	var msgs []proto.Message
	for _, m := range res.Listeners {
		msgs = append(msgs, m)
	}
	for _, m := range res.Clusters {
		msgs = append(msgs, m)
	}
	s, err := runtime.Build(nil, msgs...)
	if err != nil {
		t.Fatalf("weft-proxy refuses the generated config: %v", err)
	}
	return &authzWorld{l: s.Listener(VirtualInboundListener), warnings: res.Warnings}
}

// call is one simulated request (HTTP port) or connection (TCP port).
type call struct {
	port    uint32
	peer    string // the caller's SPIFFE ID over mTLS; "" plaintext
	sni     string
	source  string // caller IP, default 10.1.9.9
	method  string
	path    string
	host    string
	headers map[string]string
	token   string // sent as Authorization: Bearer
}

// simReq implements what weft-proxy's jwtauthn and rbac read of a request.
type simReq struct {
	method, path, query, host []byte
	headers                   map[string]string
}

func (r *simReq) Method() []byte   { return r.method }
func (r *simReq) Path() []byte     { return r.path }
func (r *simReq) RawQuery() []byte { return r.query }
func (r *simReq) Target() []byte {
	if len(r.query) == 0 {
		return r.path
	}
	return []byte(string(r.path) + "?" + string(r.query))
}
func (r *simReq) Host() []byte { return r.host }
func (r *simReq) Header(name string) ([]byte, bool) {
	for k, v := range r.headers {
		if strings.EqualFold(k, name) {
			return []byte(v), true
		}
	}
	return nil, false
}

// do returns the status an HTTP request gets (200 when it would be
// routed, 401/403 from jwt_authn, 403 from RBAC), or for a TCP port 200
// when the connection is relayed and 0 when it is closed.
func (w *authzWorld) do(t *testing.T, c call) int {
	t.Helper()
	ci := runtime.ConnInfo{DstIP: netip.MustParseAddr("10.1.2.1"), DstPort: uint16(c.port), TransportProtocol: "raw_buffer"}
	if c.peer != "" {
		ci.TransportProtocol, ci.ALPN, ci.ServerName = "tls", []string{"istio-http/1.1", "istio"}, c.sni
	}
	fc := w.l.FilterChainFor(ci)
	if fc == nil {
		t.Fatalf("no chain for port %d", c.port)
	}
	if c.peer != "" && !fc.TLS && fc != w.l.DefaultChain {
		t.Fatalf("mTLS connection on port %d landed on a plaintext chain %s", c.port, fc.Name)
	}
	src := c.source
	if src == "" {
		src = "10.1.9.9"
	}
	in := rbac.Input{Principal: c.peer, SNI: c.sni, Source: netip.MustParseAddr(src), Destination: netip.AddrPortFrom(ci.DstIP, ci.DstPort)}
	in.Remote = in.Source
	if fc.TCP != nil {
		if rbac.Allowed(fc.RBAC, &in, nil) {
			return 200
		}
		return 0
	}
	if c.method == "" {
		c.method = "GET"
	}
	if c.path == "" {
		c.path = "/"
	}
	if c.host == "" {
		c.host = "productpage.default.svc.cluster.local:9080"
	}
	hdr := map[string]string{}
	for k, v := range c.headers {
		hdr[k] = v
	}
	if c.token != "" {
		hdr["authorization"] = "Bearer " + c.token
	}
	path, query, _ := strings.Cut(c.path, "?")
	req := &simReq{method: []byte(c.method), path: []byte(path), query: []byte(query), host: []byte(c.host), headers: hdr}
	in.HTTP = req
	h := fc.HTTP
	if h.JWT != nil {
		res, fail := h.JWT.Verify(req, time.Now())
		if fail != nil {
			return fail.Code
		}
		in.JWT = res.Metadata
	}
	if !rbac.Allowed(h.RBAC, &in, nil) {
		return 403
	}
	return 200
}

func mysqlProxy() *model.Proxy {
	return &model.Proxy{
		ID: "sidecar~10.1.4.1~mysql-v1.default~default.svc.cluster.local", Type: model.ProxySidecar,
		Namespace: "default", Labels: map[string]string{"app": "mysql", "version": "v1"}, IPs: []string{"10.1.4.1"},
		Workload: config.Key{Kind: config.KindWorkloadEntry, Namespace: "default", Name: "mysql-v1"},
	}
}

func ap(ns, name, spec string) string {
	return fmt.Sprintf("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s\n", name, ns, indent(spec))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// TestAuthorizationSemantics: Istio's documented AuthorizationPolicy
// semantics, HTTP (productpage :9080), decided by weft-proxy's engine on
// weftd's output.
func TestAuthorizationSemantics(t *testing.T) {
	allowReviews := ap("default", "allow-reviews", `
selector: {matchLabels: {app: productpage}}
rules:
- from: [{source: {principals: [cluster.local/ns/default/sa/reviews]}}]`)
	type want struct {
		c    call
		code int
	}
	tests := []struct {
		name     string
		policies string
		calls    []want
	}{
		{"no policy: allow", "", []want{
			{call{port: 9080}, 200}, {call{port: 9080, peer: ratingsSA}, 200}}},
		{"allow-nothing {} denies all", ap("default", "allow-nothing", "{}"), []want{
			{call{port: 9080, peer: reviewsSA}, 403}, {call{port: 9080}, 403}}},
		{"rules [{}] allows all", ap("default", "allow-all", "rules: [{}]"), []want{
			{call{port: 9080}, 200}, {call{port: 9080, peer: ratingsSA}, 200}}},
		{"ALLOW one principal", allowReviews, []want{
			{call{port: 9080, peer: reviewsSA}, 200},
			{call{port: 9080, peer: ratingsSA}, 403},
			{call{port: 9080}, 403}, // plaintext: no principal
		}},
		{"DENY is evaluated before ALLOW", allowReviews + ap("default", "deny-admin", `
action: DENY
rules: [{to: [{operation: {paths: [/admin*]}}]}]`), []want{
			{call{port: 9080, peer: reviewsSA, path: "/admin/users"}, 403},
			{call{port: 9080, peer: reviewsSA, path: "/books"}, 200},
			{call{port: 9080, peer: ratingsSA, path: "/books"}, 403},
		}},
		{"DENY alone allows the rest", ap("default", "deny-post", `
action: DENY
rules: [{to: [{operation: {methods: [POST]}}]}]`), []want{
			{call{port: 9080, method: "POST"}, 403}, {call{port: 9080, method: "GET"}, 200}}},
		{"any ALLOW policy matching allows", allowReviews + ap("default", "allow-ratings-get", `
rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/ratings]}}], to: [{operation: {methods: [GET]}}]}]`), []want{
			{call{port: 9080, peer: ratingsSA, method: "GET"}, 200},
			{call{port: 9080, peer: ratingsSA, method: "DELETE"}, 403},
			{call{port: 9080, peer: reviewsSA, method: "DELETE"}, 200},
		}},
		{"policy in another namespace does not apply", ap("other", "allow-nothing", "{}"), []want{{call{port: 9080}, 200}}},
		{"selector not matching does not apply", ap("default", "ratings-only", "selector: {matchLabels: {app: ratings}}"), []want{{call{port: 9080}, 200}}},
		{"root namespace applies mesh-wide", ap("istio-system", "allow-nothing", "{}"), []want{{call{port: 9080}, 403}}},
		{"root namespace selector matches workloads in every namespace", ap("istio-system", "v1-only", `
selector: {matchLabels: {version: v1}}
action: DENY
rules: [{}]`), []want{{call{port: 9080}, 403}}},
		{"namespaces and notNamespaces", ap("default", "ns", `
rules: [{from: [{source: {namespaces: [default], notPrincipals: ["*/sa/ratings"]}}]}]`), []want{
			{call{port: 9080, peer: reviewsSA}, 200},
			{call{port: 9080, peer: ratingsSA}, 403},
			{call{port: 9080, peer: otherNSSA}, 403},
		}},
		{"namespace prefix, suffix, presence", ap("default", "ns", `
rules:
- from: [{source: {namespaces: ["oth*"]}}]
  to: [{operation: {paths: [/a]}}]
- from: [{source: {namespaces: ["*ault"]}}]
  to: [{operation: {paths: [/b]}}]
- from: [{source: {namespaces: ["*"]}}]
  to: [{operation: {paths: [/c]}}]`), []want{
			{call{port: 9080, peer: otherNSSA, path: "/a"}, 200}, {call{port: 9080, peer: reviewsSA, path: "/a"}, 403},
			{call{port: 9080, peer: reviewsSA, path: "/b"}, 200}, {call{port: 9080, peer: otherNSSA, path: "/b"}, 403},
			{call{port: 9080, peer: otherNSSA, path: "/c"}, 200}, {call{port: 9080, path: "/c"}, 403},
		}},
		{"principal prefix, suffix, presence", ap("default", "p", `
rules:
- from: [{source: {principals: ["cluster.local/ns/other/*"]}}]
  to: [{operation: {paths: [/a]}}]
- from: [{source: {principals: ["*/sa/ratings"]}}]
  to: [{operation: {paths: [/b]}}]
- from: [{source: {principals: ["*"]}}]
  to: [{operation: {paths: [/c]}}]`), []want{
			{call{port: 9080, peer: otherNSSA, path: "/a"}, 200}, {call{port: 9080, peer: reviewsSA, path: "/a"}, 403},
			{call{port: 9080, peer: ratingsSA, path: "/b"}, 200}, {call{port: 9080, peer: reviewsSA, path: "/b"}, 403},
			{call{port: 9080, peer: reviewsSA, path: "/c"}, 200}, {call{port: 9080, path: "/c"}, 403},
		}},
		{"operation fields", ap("default", "ops", `
rules:
- to:
  - operation: {hosts: ["*.Default.svc.cluster.local:9080"], methods: [GET, HEAD], paths: [/api/*, "*.json", /exact], notPaths: [/api/private*], ports: ["9080"]}`), []want{
			{call{port: 9080, path: "/api/books"}, 200},
			{call{port: 9080, path: "/api/books?page=2"}, 200}, // the query is not part of the path
			{call{port: 9080, path: "/data/x.json"}, 200},
			{call{port: 9080, path: "/exact"}, 200},
			{call{port: 9080, path: "/exact/no"}, 403},
			{call{port: 9080, path: "/api/private/x"}, 403},
			{call{port: 9080, path: "/api/books", method: "POST"}, 403},
			{call{port: 9080, path: "/api/books", host: "PRODUCTPAGE.default.svc.cluster.local:9080"}, 200}, // hosts: case-insensitive
			{call{port: 9080, path: "/api/books", host: "productpage.default.svc.cluster.local"}, 403},      // no port: another value
		}},
		{"notPorts and notMethods", ap("default", "not", `
rules: [{to: [{operation: {notPorts: ["8080"], notMethods: [DELETE]}}]}]`), []want{
			{call{port: 9080}, 200}, {call{port: 9080, method: "DELETE"}, 403}}},
		{"when: headers, source IP and namespace, destination port", ap("default", "when", `
rules:
- when:
  - {key: "request.headers[X-User]", values: ["alice", "b*"], notValues: [bob]}
  - {key: source.ip, values: [10.1.0.0/16]}
  - {key: source.namespace, values: [default]}
  - {key: destination.port, values: ["9080"]}
  - {key: destination.ip, values: [10.1.2.1]}`), []want{
			{call{port: 9080, peer: reviewsSA, headers: map[string]string{"x-user": "alice"}}, 200},
			{call{port: 9080, peer: reviewsSA, headers: map[string]string{"x-user": "barbara"}}, 200},
			{call{port: 9080, peer: reviewsSA, headers: map[string]string{"x-user": "bob"}}, 403},
			{call{port: 9080, peer: reviewsSA}, 403},
			{call{port: 9080, peer: reviewsSA, source: "192.168.0.1", headers: map[string]string{"x-user": "alice"}}, 403},
			{call{port: 9080, peer: otherNSSA, headers: map[string]string{"x-user": "alice"}}, 403},
		}},
		{"when: source.principal and connection.sni", ap("default", "sni", `
action: DENY
rules: [{when: [{key: connection.sni, values: ["blocked.*"]}, {key: source.principal, notValues: [cluster.local/ns/default/sa/reviews]}]}]`), []want{
			{call{port: 9080, peer: ratingsSA, sni: "blocked.example"}, 403},
			{call{port: 9080, peer: reviewsSA, sni: "blocked.example"}, 200},
			{call{port: 9080, peer: ratingsSA, sni: "ok.example"}, 200},
		}},
		{"ipBlocks and notIpBlocks", ap("default", "ip", `
rules: [{from: [{source: {ipBlocks: [10.1.0.0/16], notIpBlocks: [10.1.9.9]}}]}]`), []want{
			{call{port: 9080, source: "10.1.0.7"}, 200}, {call{port: 9080, source: "10.1.9.9"}, 403}, {call{port: 9080, source: "10.2.0.7"}, 403}}},
		{"remoteIpBlocks is the downstream address (no trusted XFF)", ap("default", "rip", `
rules: [{from: [{source: {remoteIpBlocks: [10.1.0.7]}}]}]`), []want{
			{call{port: 9080, source: "10.1.0.7", headers: map[string]string{"x-forwarded-for": "1.2.3.4"}}, 200},
			{call{port: 9080, source: "10.1.0.8", headers: map[string]string{"x-forwarded-for": "10.1.0.7"}}, 403}}},
		{"AUDIT never denies", ap("default", "audit", `
action: AUDIT
rules: [{to: [{operation: {paths: [/admin*]}}]}]`), []want{{call{port: 9080, path: "/admin"}, 200}}},
		{"dry-run DENY is not enforced", `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dry, namespace: default, annotations: {"istio.io/dry-run": "true"}}
spec: {action: DENY, rules: [{}]}
`, []want{{call{port: 9080}, 200}}},
		{"CUSTOM fails closed for what it selects", ap("default", "ext", `
action: CUSTOM
provider: {name: my-ext-authz}
rules: [{to: [{operation: {paths: [/admin*]}}]}]`), []want{
			{call{port: 9080, path: "/admin"}, 403}, {call{port: 9080, path: "/books"}, 200}}},
		{"unsupported path template drops an ALLOW rule", ap("default", "tmpl", `
rules: [{to: [{operation: {paths: ["/{*}/x"]}}]}, {to: [{operation: {paths: [/ok]}}]}]`), []want{
			{call{port: 9080, path: "/a/x"}, 403}, {call{port: 9080, path: "/ok"}, 200}}},
		{"unsupported condition key broadens a DENY rule", ap("default", "deny-exp", `
action: DENY
rules: [{to: [{operation: {paths: [/x]}}], when: [{key: experimental.envoy.filters.foo, values: [a]}]}]`), []want{
			{call{port: 9080, path: "/x"}, 403}, {call{port: 9080, path: "/y"}, 200}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newAuthzWorld(t, productpageProxy(), tc.policies)
			for _, c := range tc.calls {
				if got := w.do(t, c.c); got != c.code {
					t.Errorf("%+v: got %d, want %d", c.c, got, c.code)
				}
			}
		})
	}
}

// TestRequestAuthenticationSemantics: RequestAuthentication with
// AuthorizationPolicies on request principals and claims.
func TestRequestAuthenticationSemantics(t *testing.T) {
	valid := simToken(t, nil)
	tests := []struct {
		name     string
		policies string
		token    string
		path     string
		want     int
	}{
		{"no policy, valid token", "", valid, "/", 200},
		{"no policy, no token", "", "", "/", 200},
		{"no policy, invalid token", "", valid[:len(valid)-4] + "AAAA", "/", 401},
		{"no policy, expired token", "", simToken(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), "/", 401},
		{"requestPrincipals *, valid", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]`), valid, "/", 200},
		{"requestPrincipals *, missing", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]`), "", "/", 403},
		{"requestPrincipals exact", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["https://auth.example.com/alice"]}}]}]`), valid, "/", 200},
		{"requestPrincipals exact, other subject", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["https://auth.example.com/bob"]}}]}]`), valid, "/", 403},
		{"requestPrincipals issuer prefix", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["https://auth.example.com/*"]}}]}]`), valid, "/", 200},
		{"requestPrincipals short prefix", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["https://auth.*"]}}]}]`), valid, "/", 200},
		{"requestPrincipals subject suffix", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["*/alice"]}}]}]`), valid, "/", 200},
		{"requestPrincipals suffix into the issuer", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["*.com/alice"]}}]}]`), valid, "/", 200},
		{"requestPrincipals of an unconfigured issuer", ap("default", "jwt", `rules: [{from: [{source: {requestPrincipals: ["https://other/alice"]}}]}]`), valid, "/", 403},
		{"notRequestPrincipals * denies tokenless requests", ap("default", "jwt", `
action: DENY
rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]`), "", "/", 403},
		{"claims list membership", ap("default", "jwt", `rules: [{when: [{key: "request.auth.claims[groups]", values: [admins]}]}]`),
			simToken(t, map[string]any{"groups": []string{"dev", "admins"}}), "/", 200},
		{"claims string", ap("default", "jwt", `rules: [{when: [{key: "request.auth.claims[role]", values: ["adm*"]}]}]`),
			simToken(t, map[string]any{"role": "admin"}), "/", 200},
		{"claims nested", ap("default", "jwt", `rules: [{when: [{key: "request.auth.claims[org][team]", values: [payments]}]}]`),
			simToken(t, map[string]any{"org": map[string]any{"team": "payments"}}), "/", 200},
		{"claims nested, other value", ap("default", "jwt", `rules: [{when: [{key: "request.auth.claims[org][team]", values: [payments]}]}]`),
			simToken(t, map[string]any{"org": map[string]any{"team": "search"}}), "/", 403},
		{"scope is space-delimited", ap("default", "jwt", `rules: [{when: [{key: "request.auth.claims[scope]", values: [write]}]}]`),
			simToken(t, map[string]any{"scope": "read write"}), "/", 200},
		{"audiences and presenter", ap("default", "jwt", `
rules: [{when: [{key: request.auth.audiences, values: [bookstore]}, {key: request.auth.presenter, values: [web-app]}, {key: request.auth.principal, values: ["*"]}]}]`),
			simToken(t, map[string]any{"aud": []string{"bookstore", "x"}, "azp": "web-app"}), "/", 200},
		{"claims without a token", ap("default", "jwt", `rules: [{when: [{key: "request.auth.claims[role]", values: ["*"]}]}]`), "", "/", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newAuthzWorld(t, productpageProxy(), requestAuthn()+tc.policies)
			if got := w.do(t, call{port: 9080, path: tc.path, token: tc.token}); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

type tcpWant struct {
	c    call
	want int
}

// TestAuthorizationTCP: on a TCP port (mysql :3306) HTTP-only fields make
// an ALLOW rule void and a DENY rule broader, as Istio documents, with a
// warning; TCP fields work as on HTTP; the passthrough chain is
// authorized too.
func TestAuthorizationTCP(t *testing.T) {
	mysql := func(spec string) string {
		return ap("default", "mysql", "selector: {matchLabels: {app: mysql}}\n"+spec)
	}
	tests := []struct {
		name    string
		policy  string
		calls   []tcpWant
		warning string // a warning containing this, "" none
	}{
		{"ALLOW principal", mysql(`rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/reviews]}}]}]`),
			[]tcpWant{{call{port: 3306, peer: reviewsSA}, 200}, {call{port: 3306, peer: ratingsSA}, 0}, {call{port: 3306}, 0}}, ""},
		{"ALLOW with an HTTP-only field is ignored: deny all", mysql(`rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/reviews]}}], to: [{operation: {methods: [GET]}}]}]`),
			[]tcpWant{{call{port: 3306, peer: reviewsSA}, 0}}, "HTTP-only field on a TCP port: the ALLOW rule is ignored"},
		{"DENY with an HTTP-only field matches more", mysql(`
action: DENY
rules: [{to: [{operation: {methods: [POST], ports: ["3306"]}}]}]`),
			[]tcpWant{{call{port: 3306, peer: reviewsSA}, 0}}, "HTTP-only field on a TCP port: the condition is left out"},
		{"DENY ports", mysql(`
action: DENY
rules: [{to: [{operation: {notPorts: ["3306"]}}]}]`),
			[]tcpWant{{call{port: 3306}, 200}, {call{port: 3307}, 0}}, ""},
		{"passthrough chain is authorized", mysql(`rules: [{from: [{source: {namespaces: [default]}}]}]`),
			[]tcpWant{{call{port: 4444, peer: reviewsSA}, 200}, {call{port: 4444}, 0}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newAuthzWorld(t, mysqlProxy(), tc.policy)
			for _, c := range tc.calls {
				if got := w.do(t, c.c); got != c.want {
					t.Errorf("%+v: got %d, want %d", c.c, got, c.want)
				}
			}
			found := tc.warning == ""
			for _, d := range w.warnings {
				if tc.warning != "" && strings.Contains(d.Message, tc.warning) && d.Key.Name == "mysql" && strings.HasPrefix(d.Field, "spec.rules[0]") {
					found = true
				} else if tc.warning == "" {
					t.Errorf("unexpected warning: %v", d)
				}
			}
			if !found {
				t.Errorf("no warning %q in %v", tc.warning, w.warnings)
			}
		})
	}
}

// TestAuthorizationWarnings: an HTTP workload does not warn about TCP for
// its passthrough chain, and a CUSTOM policy always warns.
func TestAuthorizationWarnings(t *testing.T) {
	w := newAuthzWorld(t, productpageProxy(), ap("default", "methods", "rules: [{to: [{operation: {methods: [GET]}}]}]"))
	if len(w.warnings) != 0 {
		t.Fatalf("warnings for an HTTP-only workload: %v", w.warnings)
	}
	w = newAuthzWorld(t, productpageProxy(), ap("default", "ext", "action: CUSTOM\nprovider: {name: opa}\nrules: [{}]"))
	if len(w.warnings) != 1 || !strings.Contains(w.warnings[0].Message, `action CUSTOM (provider "opa") is not supported`) || w.warnings[0].Field != "spec.action" {
		t.Fatalf("CUSTOM warning: %v", w.warnings)
	}
}

// TestAuthorizationGolden keeps the shape of the generated filters
// reviewable: jwt_authn (inline and remote JWKS), AUDIT, DENY with
// dry-run shadow rules, ALLOW, in that order before the router.
//
//	go test ./internal/translate/ -run AuthorizationGolden -update-routes
func TestAuthorizationGolden(t *testing.T) {
	const policies = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  jwtRules:
  - issuer: https://auth.example.com
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}'
    fromHeaders: [{name: x-token, prefix: "Bearer "}]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    spaceDelimitedClaims: [roles]
  - issuer: https://idp.example.com
    jwksUri: https://idp.example.com/.well-known/jwks.json
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/reviews], namespaces: [default]}}]
    to: [{operation: {methods: [GET], paths: [/api/*]}}]
  - from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]
    when: [{key: "request.auth.claims[groups]", values: [admins]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dry, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules: [{from: [{source: {notNamespaces: [default]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: istio-system}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
`
	snap := rtModel(t, append(bookinfoObjects(), policyObjects(t, policies)...)...)
	res, err := Generator{}.GenerateInbound(Input{Model: snap, Proxy: productpageProxy()})
	if err != nil {
		t.Fatal(err)
	}
	validateRouteResources(t, res.Listeners)
	checkRoutesGolden(t, "sidecar_authz_inbound", res.Listeners)
	checkRoutesDiagnosticsGolden(t, "sidecar_authz_inbound_warnings", res.Warnings)
}
