package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/durationpb"
)

const issuer = "https://issuer.example"

// signer signs test tokens; jwks is its public key set.
type signer struct {
	s    jose.Signer
	jwks string
}

func newSigner(t testing.TB, alg jose.SignatureAlgorithm, kid string) *signer {
	t.Helper()
	var priv, pub any
	switch alg {
	case jose.RS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	case jose.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: string(alg), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &signer{s: s, jwks: string(b)}
}

func (s *signer) token(t testing.TB, claims map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(claims)
	jws, err := s.s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims are valid for an hour around now.
func claims(now time.Time, extra ...any) map[string]any {
	c := map[string]any{"iss": issuer, "sub": "alice", "aud": "bookstore", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}

type req struct {
	method, path, query, host []byte
	headers                   map[string][]byte
}

func newReq(path string, headers ...string) *req {
	r := &req{method: []byte("GET"), path: []byte(path), host: []byte("bookstore:8000"), headers: map[string][]byte{}}
	if p, q, ok := strings.Cut(path, "?"); ok {
		r.path, r.query = []byte(p), []byte(q)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.headers[strings.ToLower(headers[i])] = []byte(headers[i+1])
	}
	return r
}

func (r *req) Method() []byte   { return r.method }
func (r *req) Path() []byte     { return r.path }
func (r *req) RawQuery() []byte { return r.query }
func (r *req) Host() []byte     { return r.host }
func (r *req) Header(name string) ([]byte, bool) {
	v, ok := r.headers[strings.ToLower(name)]
	return v, ok
}

// istioShape is a JwtAuthentication shaped like weftd's output for one
// RequestAuthentication rule: requires_any [provider, allow_missing].
func istioShape(p *jwtv3.JwtProvider) *jwtv3.JwtAuthentication {
	return &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{"p": p},
		Rules: []*jwtv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
				RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{
					{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "p"}},
					{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: nil}},
				}}}}},
		}},
		BypassCorsPreflight: true,
	}
}

func localProvider(jwks string) *jwtv3.JwtProvider {
	return &jwtv3.JwtProvider{
		Issuer: issuer, Audiences: []string{"bookstore"}, PayloadInMetadata: issuer,
		JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}},
	}
}

func compile(t *testing.T, pb *jwtv3.JwtAuthentication) *Filter {
	t.Helper()
	f, err := Compile(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rs := newSigner(t, jose.RS256, "rs")
	es := newSigner(t, jose.ES256, "es")
	other := newSigner(t, jose.RS256, "rs") // same kid, another key
	jwks := `{"keys":[` + strings.TrimSuffix(strings.TrimPrefix(rs.jwks, `{"keys":[`), `]}`) + `,` +
		strings.TrimSuffix(strings.TrimPrefix(es.jwks, `{"keys":[`), `]}`) + `]}`
	f := compile(t, istioShape(localProvider(jwks)))
	bearer := func(tok string) *req { return newReq("/books", "Authorization", "Bearer "+tok) }

	tests := []struct {
		name   string
		req    *req
		status Status // StatusOK: passes
		sub    string // verified subject; "" none
	}{
		{"RS256", bearer(rs.token(t, claims(now))), StatusOK, "alice"},
		{"ES256", bearer(es.token(t, claims(now, "sub", "bob"))), StatusOK, "bob"},
		{"no token", newReq("/books"), StatusOK, ""},
		{"other scheme is no token", newReq("/books", "Authorization", "Basic YWxpY2U6cHc="), StatusOK, ""},
		{"wrong key", bearer(other.token(t, claims(now))), StatusVerificationFails, ""},
		{"tampered payload", bearer(tamper(rs.token(t, claims(now)))), StatusVerificationFails, ""},
		{"expired", bearer(rs.token(t, claims(now, "exp", now.Add(-2*time.Minute).Unix()))), StatusExpired, ""},
		{"expired within clock skew", bearer(rs.token(t, claims(now, "exp", now.Add(-30*time.Second).Unix()))), StatusOK, "alice"},
		{"not yet valid", bearer(rs.token(t, claims(now, "nbf", now.Add(5*time.Minute).Unix()))), StatusNotYetValid, ""},
		{"audience list", bearer(rs.token(t, claims(now, "aud", []string{"x", "bookstore"}))), StatusOK, "alice"},
		{"wrong audience", bearer(rs.token(t, claims(now, "aud", "payments"))), StatusAudienceNotAllowed, ""},
		{"unknown issuer", bearer(rs.token(t, claims(now, "iss", "https://evil.example"))), StatusUnknownIssuer, ""},
		{"garbage", bearer("not-a-jwt"), StatusBadFormat, ""},
		{"three garbage parts", bearer("a.b.c"), StatusBadFormat, ""},
		{"alg none", bearer(noneToken(claims(now))), StatusVerificationFails, ""},
		{"query parameter", newReq("/books?access_token=" + rs.token(t, claims(now))), StatusOK, "alice"},
		{"CORS preflight bypasses", &req{method: []byte("OPTIONS"), path: []byte("/books"), host: []byte("h"), headers: map[string][]byte{
			"origin": []byte("https://x"), "access-control-request-method": []byte("GET"), "authorization": []byte("Bearer junk.junk.junk")}}, StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, fail := f.Verify(tc.req, now)
			if tc.status != StatusOK {
				if fail == nil {
					t.Fatalf("passed, want %q", tc.status)
				}
				if fail.Status != tc.status || fail.Body != tc.status.String() || fail.Code != tc.status.HTTPStatus() {
					t.Fatalf("failure %+v, want %q", fail, tc.status)
				}
				if !strings.HasPrefix(fail.WWWAuthenticate, `Bearer realm="http://bookstore:8000/books"`) {
					t.Fatalf("www-authenticate %q", fail.WWWAuthenticate)
				}
				return
			}
			if fail != nil {
				t.Fatalf("rejected: %+v", fail)
			}
			got, _ := res.Metadata[issuer].(map[string]any)
			if sub, _ := got["sub"].(string); sub != tc.sub {
				t.Fatalf("metadata %v, want sub %q", res.Metadata, tc.sub)
			}
		})
	}
	if fl := (Failure{}); fl.Code != 0 {
		t.Fatal()
	}
	if StatusVerificationFails.String() != "Jwt verification fails" || StatusAudienceNotAllowed.HTTPStatus() != 403 || StatusExpired.HTTPStatus() != 401 {
		t.Fatal("Envoy's texts and codes changed")
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	b = []byte(strings.Replace(string(b), `"alice"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func noneToken(c map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

func TestOutputs(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSigner(t, jose.RS256, "k")
	p := localProvider(s.jwks)
	p.ForwardPayloadHeader = "x-jwt-payload"
	p.ClaimToHeaders = []*jwtv3.JwtClaimToHeader{{HeaderName: "x-group", ClaimName: "grp"}, {HeaderName: "x-tier", ClaimName: "org.tier"},
		{HeaderName: "x-absent", ClaimName: "nope"}}
	p.NormalizePayloadInMetadata = &jwtv3.JwtProvider_NormalizePayload{SpaceDelimitedClaims: []string{"scope", "org.roles"}}
	f := compile(t, istioShape(p))
	tok := s.token(t, claims(now, "grp", "dev", "scope", "read write", "org", map[string]any{"tier": "gold", "roles": "a b"}))
	res, fail := f.Verify(newReq("/", "Authorization", "Bearer "+tok), now)
	if fail != nil {
		t.Fatal(fail)
	}
	if len(res.Remove) != 1 || res.Remove[0] != "authorization" {
		t.Fatalf("forward=false must remove the token header: %v", res.Remove)
	}
	want := map[string]string{"x-jwt-payload": strings.Split(tok, ".")[1], "x-group": "dev", "x-tier": "gold"}
	if len(res.Set) != len(want) {
		t.Fatalf("set %v", res.Set)
	}
	for _, h := range res.Set {
		if want[h.Name] != h.Value {
			t.Fatalf("header %s = %q, want %q", h.Name, h.Value, want[h.Name])
		}
	}
	md := res.Metadata[issuer].(map[string]any)
	if sc, ok := md["scope"].([]any); !ok || len(sc) != 2 || sc[1] != "write" {
		t.Fatalf("scope not split: %#v", md["scope"])
	}
	if r, ok := md["org"].(map[string]any)["roles"].([]any); !ok || len(r) != 2 {
		t.Fatalf("nested space-delimited claim not split: %#v", md["org"])
	}
	// The cached claims stay unsplit for the next request.
	res2, _ := f.Verify(newReq("/", "Authorization", "Bearer "+tok), now)
	if _, ok := res2.Metadata[issuer].(map[string]any)["scope"].([]any); !ok {
		t.Fatal("second request lost the split")
	}

	p.Forward = true
	p.FromHeaders = []*jwtv3.JwtHeader{{Name: "x-token"}}
	p.FromCookies = []string{"session"}
	f = compile(t, istioShape(p))
	res, fail = f.Verify(newReq("/", "X-Token", tok), now)
	if fail != nil || len(res.Remove) != 0 || res.Metadata == nil {
		t.Fatalf("forward=true from x-token: %+v %+v", res, fail)
	}
	res, fail = f.Verify(newReq("/", "Cookie", "a=b; session="+tok+"; c=d"), now)
	if fail != nil || res.Metadata == nil {
		t.Fatalf("cookie: %+v %+v", res, fail)
	}
	// The default locations are replaced by the configured ones.
	if res, fail = f.Verify(newReq("/", "Authorization", "Bearer "+tok), now); fail != nil || res.Metadata != nil {
		t.Fatalf("Authorization is not a location any more: %+v %+v", res, fail)
	}
}

func TestRequirements(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSigner(t, jose.RS256, "k")
	withReq := func(r *jwtv3.JwtRequirement) *Filter {
		pb := istioShape(localProvider(s.jwks))
		pb.Rules[0].RequirementType = &jwtv3.RequirementRule_Requires{Requires: r}
		return compile(t, pb)
	}
	good := newReq("/", "Authorization", "Bearer "+s.token(t, claims(now)))
	bad := newReq("/", "Authorization", "Bearer "+tamper(s.token(t, claims(now))))
	none := newReq("/")
	tests := []struct {
		name string
		r    *jwtv3.JwtRequirement
		in   *req
		want Status
	}{
		{"provider, good", &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "p"}}, good, StatusOK},
		{"provider, missing", &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "p"}}, none, StatusMissing},
		{"allow_missing, missing", &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{}}, none, StatusOK},
		{"allow_missing, bad", &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{}}, bad, StatusVerificationFails},
		{"allow_missing_or_failed, bad", &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissingOrFailed{}}, bad, StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, fail := withReq(tc.r).Verify(tc.in, now)
			got := StatusOK
			if fail != nil {
				got = fail.Status
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.in == bad && res.Metadata != nil {
				t.Fatal("a failed token produced metadata")
			}
		})
	}
	// No rule matches: nothing is checked.
	pb := istioShape(localProvider(s.jwks))
	pb.Rules[0].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/only"}}
	if _, fail := compile(t, pb).Verify(bad, now); fail != nil {
		t.Fatalf("unmatched path was checked: %+v", fail)
	}
}

// TestNoTokenDoesNotAllocate: requests without a token (the common case on
// a workload that accepts but does not require JWTs) cost no allocation.
func TestNoTokenDoesNotAllocate(t *testing.T) {
	s := newSigner(t, jose.ES256, "k")
	f := compile(t, istioShape(localProvider(s.jwks)))
	in := newReq("/books?page=2", "Accept", "*/*")
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		if _, fail := f.Verify(in, now); fail != nil {
			t.Fatal(fail)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per request without a token", n)
	}
}

func TestRemoteJWKS(t *testing.T) {
	a, b := newSigner(t, jose.RS256, "a"), newSigner(t, jose.RS256, "b")
	var serving atomic.Pointer[string]
	serving.Store(&a.jwks)
	var fetches atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", 503)
			return
		}
		w.Write([]byte(*serving.Load()))
	}))
	defer srv.Close()
	var mu sync.Mutex
	clock := time.Unix(1_800_000_000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	cache := NewKeyCache(KeyCacheConfig{Now: now})
	p := &jwtv3.JwtProvider{Issuer: issuer, PayloadInMetadata: issuer, JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
		HttpUri:       &corev3.HttpUri{Uri: srv.URL + "/jwks", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "outbound|80||jwks"}, Timeout: durationpb.New(5 * time.Second)},
		CacheDuration: durationpb.New(time.Minute),
	}}}
	f, err := Compile(istioShape(p), cache)
	if err != nil {
		t.Fatal(err)
	}
	check := func(s *signer, want Status) {
		t.Helper()
		_, fail := f.Verify(newReq("/", "Authorization", "Bearer "+s.token(t, claims(now()))), now())
		got := StatusOK
		if fail != nil {
			got = fail.Status
		}
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	check(a, StatusOK) // waits for the fetch started at compile time
	check(a, StatusOK)
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (cached)", n)
	}
	// A second config for the same URI shares the cache.
	if _, err := Compile(istioShape(p), cache); err != nil {
		t.Fatal(err)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("recompiling refetched: %d", n)
	}
	// The IdP rotates to key b; after cache_duration the next request
	// triggers a refresh and, while it runs, is served with the old keys.
	serving.Store(&b.jwks)
	check(b, StatusNoMatchingKey)
	advance(2 * time.Minute)
	check(a, StatusOK) // stale keys still serve while refreshing
	waitFor(t, func() bool { return fetches.Load() == 2 })
	waitFor(t, func() bool {
		_, fail := f.Verify(newReq("/", "Authorization", "Bearer "+b.token(t, claims(now()))), now())
		return fail == nil
	})
	// The IdP goes down: the last keys keep working.
	down.Store(true)
	advance(2 * time.Minute)
	check(b, StatusOK)
	waitFor(t, func() bool { return fetches.Load() == 3 })
	check(b, StatusOK)
}

func TestRemoteJWKSUnreachable(t *testing.T) {
	cache := NewKeyCache(KeyCacheConfig{})
	p := &jwtv3.JwtProvider{Issuer: issuer, JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
		HttpUri: &corev3.HttpUri{Uri: "http://127.0.0.1:1/jwks", Timeout: durationpb.New(200 * time.Millisecond)},
	}}}
	f, err := Compile(istioShape(p), cache)
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t, jose.RS256, "a")
	start := time.Now()
	_, fail := f.Verify(newReq("/", "Authorization", "Bearer "+s.token(t, claims(time.Now()))), time.Now())
	if fail == nil || fail.Status != StatusFetchFailed || fail.Code != 401 {
		t.Fatalf("got %+v, want %q", fail, StatusFetchFailed)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waited %v for an unreachable JWKS", d)
	}
	// Requests without a token do not need keys.
	if _, fail := f.Verify(newReq("/"), time.Now()); fail != nil {
		t.Fatal(fail)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJWKSFile(t *testing.T) {
	s := newSigner(t, jose.ES256, "k")
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, []byte(s.jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	p := localProvider("")
	p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: file}}}
	f := compile(t, istioShape(p))
	now := time.Now()
	if _, fail := f.Verify(newReq("/", "Authorization", "Bearer "+s.token(t, claims(now))), now); fail != nil {
		t.Fatal(fail)
	}
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	mixed := `{"keys":[{"kty":"weird","kid":"x"},{"kty":"oct","k":"c2VjcmV0"},` + strings.TrimPrefix(s.jwks, `{"keys":[`)
	ks, err := parseJWKS([]byte(mixed))
	if err != nil || len(ks.keys) != 1 || ks.keys[0].KeyID != "k" {
		t.Fatalf("%v %v", ks, err)
	}
	for _, bad := range []string{`{"keys":[]}`, `not json`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`} {
		if _, err := parseJWKS([]byte(bad)); err == nil {
			t.Fatalf("%s: accepted", bad)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	tests := []struct {
		name   string
		mutate func(*jwtv3.JwtAuthentication)
		want   string
	}{
		{"unknown provider", func(pb *jwtv3.JwtAuthentication) {
			pb.Rules[0].RequirementType = &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
				RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "nope"}}}
		}, `rules[0].requires.provider_name: unknown provider "nope"`},
		{"requirement_name", func(pb *jwtv3.JwtAuthentication) {
			pb.Rules[0].RequirementType = &jwtv3.RequirementRule_RequirementName{RequirementName: "x"}
		}, `rules[0].requirement_type: only requires is supported`},
		{"header match", func(pb *jwtv3.JwtAuthentication) {
			pb.Rules[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x"}}
		}, `rules[0].match: only prefix and path matches are supported`},
		{"no issuer", func(pb *jwtv3.JwtAuthentication) { pb.Providers["p"].Issuer = "" }, `providers["p"].issuer: an issuer is required`},
		{"bad jwks", func(pb *jwtv3.JwtAuthentication) {
			pb.Providers["p"].JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: "{"}}}
		}, `providers["p"].local_jwks: JWKS is not JSON`},
		{"env jwks", func(pb *jwtv3.JwtAuthentication) {
			pb.Providers["p"].JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "JWKS"}}}
		}, `providers["p"].local_jwks: data source`},
		{"remote without fetcher", func(pb *jwtv3.JwtAuthentication) {
			pb.Providers["p"].JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
				HttpUri: &corev3.HttpUri{Uri: "https://idp.example/jwks"}}}
		}, `providers["p"].remote_jwks: this proxy has no JWKS fetcher`},
		{"remote not http", func(pb *jwtv3.JwtAuthentication) {
			pb.Providers["p"].JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
				HttpUri: &corev3.HttpUri{Uri: "file:///etc/passwd"}}}
		}, `remote_jwks.http_uri.uri: want an http(s) URL`},
		{"clear_route_cache", func(pb *jwtv3.JwtAuthentication) {
			pb.Providers["p"].ClearRouteCache = true
		}, `providers["p"].clear_route_cache: not supported`},
		{"requirement map", func(pb *jwtv3.JwtAuthentication) {
			pb.RequirementMap = map[string]*jwtv3.JwtRequirement{"x": {}}
		}, `requirement_map: not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pb := istioShape(localProvider(s.jwks))
			tc.mutate(pb)
			_, err := Compile(pb, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func BenchmarkVerifyCachedToken(b *testing.B) {
	s := newSigner(b, jose.ES256, "k")
	pb := istioShape(localProvider(s.jwks))
	f, err := Compile(pb, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	in := newReq("/", "Authorization", "Bearer "+s.token(b, claims(now)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, fail := f.Verify(in, now); fail != nil {
			b.Fatal(fail)
		}
	}
}

// TestSameIssuerTwoProviders: two RequestAuthentications may configure one
// issuer with different key sets; a token verified by either passes.
func TestSameIssuerTwoProviders(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a, b := newSigner(t, jose.RS256, "a"), newSigner(t, jose.RS256, "b")
	pb := istioShape(localProvider(a.jwks))
	pb.Providers["q"] = localProvider(b.jwks)
	pb.Rules[0].RequirementType = &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
		RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{
			{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "p"}},
			{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "q"}},
			{RequiresType: &jwtv3.JwtRequirement_AllowMissing{}},
		}}}}}
	f := compile(t, pb)
	for _, s := range []*signer{a, b} {
		if _, fail := f.Verify(newReq("/", "Authorization", "Bearer "+s.token(t, claims(now))), now); fail != nil {
			t.Fatalf("token of %s refused: %+v", s.jwks[:40], fail)
		}
	}
	c := newSigner(t, jose.RS256, "a")
	if _, fail := f.Verify(newReq("/", "Authorization", "Bearer "+c.token(t, claims(now))), now); fail == nil || fail.Status != StatusVerificationFails {
		t.Fatalf("a token neither verifies: %+v", fail)
	}
}

// BenchmarkVerifySignature: the cost of a token not in the cache.
func BenchmarkVerifySignature(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			s := newSigner(b, alg, "k")
			f, err := Compile(istioShape(localProvider(s.jwks)), nil)
			if err != nil {
				b.Fatal(err)
			}
			tok := s.token(b, claims(time.Now()))
			p := f.providers["p"]
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if st, _ := p.verifySignature(tok); st != StatusOK {
					b.Fatal(st)
				}
			}
		})
	}
}
