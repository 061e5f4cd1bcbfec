package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/config"
)

func TestIssueWithToken(t *testing.T) {
	e := newEnv(t)
	tok := e.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart", TTL: time.Hour})
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"default ttl", 0, ca.DefaultCertTTL},
		{"requested ttl", 2 * time.Hour, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, chain := e.issue(id("shop", "cart"), tok, tc.ttl)
			if len(chain) != 2 {
				t.Fatalf("chain has %d certs, want leaf+root", len(chain))
			}
			leaf := chain[0]
			if err := verifies(leaf, chain[1:], e.ca.TrustBundle(), e.clock.Now()); err != nil {
				t.Fatalf("chain does not verify against the bundle: %v", err)
			}
			if !chain[1].Equal(e.ca.TrustBundle()[0]) {
				t.Error("last chain element is not the bundle root")
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/shop/sa/cart" {
				t.Errorf("URI SANs = %v", leaf.URIs)
			}
			if got := leaf.NotAfter.Sub(e.clock.Now()); got != tc.want {
				t.Errorf("validity from now = %s, want %s", got, tc.want)
			}
			if leaf.IsCA || len(leaf.DNSNames) != 0 {
				t.Errorf("leaf IsCA=%v DNS=%v", leaf.IsCA, leaf.DNSNames)
			}
		})
	}
	if got := metric(t, e.reg, "citadel_server_success_cert_issuance_count"); got != 2 {
		t.Errorf("success count = %v, want 2", got)
	}
	if got := metric(t, e.reg, "citadel_server_csr_count"); got != 2 {
		t.Errorf("csr count = %v, want 2", got)
	}
	if r := e.logs.refusals(); len(r) != 0 {
		t.Errorf("unexpected refusals: %v", r)
	}
}

func TestRefusals(t *testing.T) {
	type tcase struct {
		name   string
		setup  func(e *env) (csr []byte, token string, ttl time.Duration)
		code   codes.Code
		reason string
		metric string
		msg    string
	}
	key := func() *ecdsa.PrivateKey {
		k, _ := caclient.GenerateKey()
		return k
	}
	withToken := func(e *env, csr []byte) ([]byte, string, time.Duration) {
		return csr, e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b"}), 0
	}
	rawCSR := func(t *testing.T, k any, uris ...string) []byte {
		tmpl := &x509.CertificateRequest{}
		for _, u := range uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, pu)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	const authFail, parseErr = "citadel_server_authentication_failure_count", "citadel_server_csr_parsing_err_count"
	cases := []tcase{
		{
			name: "forged token (other key)",
			setup: func(e *env) ([]byte, string, time.Duration) {
				other, err := ca.NewTokens(ca.TokensConfig{KV: newMemKV(), TrustDomain: td})
				if err != nil {
					t.Fatal(err)
				}
				tok, _, _ := other.Issue(ca.TokenSpec{Namespace: "a", ServiceAccount: "b"})
				return csrFor(t, key(), id("a", "b")), tok, 0
			},
			code: codes.Unauthenticated, reason: "invalid_token", metric: authFail, msg: "bad signature",
		},
		{
			name: "tampered token claims",
			setup: func(e *env) ([]byte, string, time.Duration) {
				tok := e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b"})
				parts := strings.Split(tok, ".")
				payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
				payload = bytes.Replace(payload, []byte(`"ns":"a"`), []byte(`"ns":"z"`), 1)
				parts[1] = base64.RawURLEncoding.EncodeToString(payload)
				return csrFor(t, key(), id("z", "b")), strings.Join(parts, "."), 0
			},
			code: codes.Unauthenticated, reason: "invalid_token", metric: authFail, msg: "bad signature",
		},
		{
			name: "garbage token",
			setup: func(e *env) ([]byte, string, time.Duration) {
				return csrFor(t, key(), id("a", "b")), "not-a-token", 0
			},
			code: codes.Unauthenticated, reason: "invalid_token", metric: authFail, msg: "malformed",
		},
		{
			name: "expired token",
			setup: func(e *env) ([]byte, string, time.Duration) {
				tok := e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b", TTL: time.Minute})
				e.clock.Advance(2 * time.Minute)
				return csrFor(t, key(), id("a", "b")), tok, 0
			},
			code: codes.Unauthenticated, reason: "invalid_token", metric: authFail, msg: "expired",
		},
		{
			name: "replayed single-use token",
			setup: func(e *env) ([]byte, string, time.Duration) {
				tok := e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b", SingleUse: true})
				e.issue(id("a", "b"), tok, 0)
				return csrFor(t, key(), id("a", "b")), tok, 0
			},
			code: codes.Unauthenticated, reason: "invalid_token", metric: authFail, msg: "already used",
		},
		{
			name: "token for ns a asks for ns b",
			setup: func(e *env) ([]byte, string, time.Duration) {
				return csrFor(t, key(), id("other", "b")), e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b"}), 0
			},
			code: codes.PermissionDenied, reason: "permission_denied", metric: authFail, msg: "authenticated as spiffe://cluster.local/ns/a/sa/b but the CSR asks for spiffe://cluster.local/ns/other/sa/b",
		},
		{
			name: "no credentials",
			setup: func(e *env) ([]byte, string, time.Duration) {
				return csrFor(t, key(), id("a", "b")), "", 0
			},
			code: codes.Unauthenticated, reason: "unauthenticated", metric: authFail, msg: "no credential",
		},
		{
			name: "ttl above max",
			setup: func(e *env) ([]byte, string, time.Duration) {
				c, tok, _ := withToken(e, csrFor(t, key(), id("a", "b")))
				return c, tok, 72 * time.Hour
			},
			code: codes.InvalidArgument, reason: "invalid_ttl", metric: parseErr, msg: "greater than the max allowed TTL",
		},
	}
	// Malformed CSRs, each sent with a valid token for ns a / sa b.
	for _, m := range []struct {
		name string
		csr  func(t *testing.T) []byte
		msg  string
	}{
		{"not PEM", func(t *testing.T) []byte { return []byte("hello") }, "no PEM block"},
		{"wrong PEM type", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
		}, "want CERTIFICATE REQUEST"},
		{"garbage DER", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 3, 1, 2, 3}})
		}, "invalid CSR"},
		{"bad signature", func(t *testing.T) []byte {
			b, _ := pem.Decode(csrFor(t, key(), id("a", "b")))
			b.Bytes[len(b.Bytes)-1] ^= 0xff
			return pem.EncodeToMemory(b)
		}, "signature does not verify"},
		{"RSA 1024", func(t *testing.T) []byte {
			k, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			return rawCSR(t, k, "spiffe://cluster.local/ns/a/sa/b")
		}, "too small"},
		{"ed25519 key", func(t *testing.T) []byte {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			return rawCSR(t, k, "spiffe://cluster.local/ns/a/sa/b")
		}, "key type"},
		{"P-521 key", func(t *testing.T) []byte {
			k, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
			return rawCSR(t, k, "spiffe://cluster.local/ns/a/sa/b")
		}, "curve P-521 not allowed"},
		{"no URI", func(t *testing.T) []byte { return rawCSR(t, key()) }, "no URI SAN"},
		{"two URIs", func(t *testing.T) []byte {
			return rawCSR(t, key(), "spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/c")
		}, "2 URI SANs"},
		{"non-SPIFFE URI", func(t *testing.T) []byte { return rawCSR(t, key(), "https://cluster.local/ns/a/sa/b") }, "not a SPIFFE ID"},
		{"bad SPIFFE path", func(t *testing.T) []byte { return rawCSR(t, key(), "spiffe://cluster.local/workload/b") }, "path must be"},
		{"foreign trust domain", func(t *testing.T) []byte { return rawCSR(t, key(), "spiffe://evil.example/ns/a/sa/b") }, `trust domain "evil.example"`},
	} {
		cases = append(cases, tcase{
			name:  "csr " + m.name,
			setup: func(e *env) ([]byte, string, time.Duration) { return withToken(e, m.csr(t)) },
			code:  codes.InvalidArgument, reason: "invalid_csr", metric: parseErr, msg: m.msg,
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			csr, tok, ttl := tc.setup(e)
			e.logs.Reset()
			before := metric(t, e.reg, tc.metric)
			beforeCSR := metric(t, e.reg, "citadel_server_csr_count")
			_, err := caclient.Request(context.Background(), e.dial(nil), csr, ttl, tok)
			st, _ := status.FromError(errorsUnwrap(err))
			if st.Code() != tc.code {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tc.code)
			}
			if !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("message %q does not contain %q", st.Message(), tc.msg)
			}
			lines := e.logs.refusals()
			if len(lines) != 1 {
				t.Fatalf("want exactly one audit line, got %d: %q", len(lines), e.logs.String())
			}
			t.Log(lines[0])
			for _, want := range []string{"component=ca", "reason=" + tc.reason, "remote=127.0.0.1:", "claimed_identity="} {
				if !strings.Contains(lines[0], want) {
					t.Errorf("audit line %q lacks %q", lines[0], want)
				}
			}
			if tok != "" && len(tok) > 8 && strings.Contains(e.logs.String(), tok) {
				t.Error("the token itself was logged")
			}
			if got := metric(t, e.reg, tc.metric) - before; got != 1 {
				t.Errorf("%s grew by %v, want 1", tc.metric, got)
			}
			if got := metric(t, e.reg, "citadel_server_csr_count") - beforeCSR; got != 1 {
				t.Errorf("csr count grew by %v, want 1", got)
			}
			if got := metric(t, e.reg, "weft_ca_refusals_total", "reason", tc.reason); got < 1 {
				t.Errorf("weft_ca_refusals_total{reason=%q} = %v", tc.reason, got)
			}
		})
	}
}

// errorsUnwrap digs the gRPC status error out of caclient's wrapping.
func errorsUnwrap(err error) error {
	for err != nil {
		if _, ok := status.FromError(err); ok {
			if s, ok := err.(interface{ GRPCStatus() *status.Status }); ok && s.GRPCStatus() != nil {
				return err
			}
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return err
}

func TestSingleUseTokenConcurrent(t *testing.T) {
	e := newEnv(t)
	tok := e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b", SingleUse: true})
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	conn := e.dial(nil)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := caclient.GenerateKey()
			_, errs[i] = caclient.Request(context.Background(), conn, csrFor(t, k, id("a", "b")), 0, tok)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if status.Code(errorsUnwrap(err)) != codes.Unauthenticated {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent uses of a single-use token succeeded, want exactly 1", ok, n)
	}
}

// TestRestart uses the real bbolt store: the root is reused and a consumed
// single-use token stays consumed.
func TestRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	open := func() *config.Store {
		st, err := config.OpenStore(config.StoreConfig{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	e1 := newEnvKV(t, st)
	single := e1.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b", SingleUse: true})
	multi := e1.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b"})
	e1.issue(id("a", "b"), single, 0)
	root1 := e1.ca.TrustBundle()[0]
	e1.ca.Close()
	st.Close()

	st2 := open()
	defer st2.Close()
	e2 := newEnvKV(t, st2)
	if !e2.ca.TrustBundle()[0].Equal(root1) {
		t.Fatal("root was regenerated on restart")
	}
	k, _ := caclient.GenerateKey()
	_, err := caclient.Request(context.Background(), e2.dial(nil), csrFor(t, k, id("a", "b")), 0, single)
	if status.Code(errorsUnwrap(err)) != codes.Unauthenticated {
		t.Fatalf("replay after restart: %v, want Unauthenticated", err)
	}
	_, chain := e2.issue(id("a", "b"), multi, 0) // the token key survived too
	if err := verifies(chain[0], chain[1:], []*x509.Certificate{root1}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func newEnvKV(t *testing.T, kv ca.KV) *env {
	return newEnv(t, func(c *ca.Config) {
		c.KV = kv
		c.Now = time.Now
	})
}

func TestTokenHandler(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.ca.TokenHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"namespace":"vm","serviceAccount":"db","workloadGroup":"db","ttl":"10m","singleUse":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr ca.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if tr.Identity != "spiffe://cluster.local/ns/vm/sa/db" || tr.ID == "" {
		t.Errorf("response %+v", tr)
	}
	if strings.Contains(e.logs.String(), tr.Token) {
		t.Error("token logged")
	}
	e.issue(id("vm", "db"), tr.Token, 0)

	resp2, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"namespace":"","serviceAccount":"db"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Errorf("empty namespace: status %d", resp2.StatusCode)
	}
}

func TestAcceptedKeyTypes(t *testing.T) {
	e := newEnv(t)
	tok := e.token(ca.TokenSpec{Namespace: "a", ServiceAccount: "b"})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.Signer{"P-384": p384, "RSA-2048": rsa2048} {
		t.Run(name, func(t *testing.T) {
			chain, err := caclient.Request(t.Context(), e.dial(nil), csrFor(t, k, id("a", "b")), 0, tok)
			if err != nil {
				t.Fatal(err)
			}
			_, isRSA := k.(*rsa.PrivateKey)
			if got := chain[0].KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != isRSA {
				t.Errorf("keyEncipherment = %v for %s", got, name)
			}
		})
	}
}
