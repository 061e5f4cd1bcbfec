package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/testenv"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildBinaries builds weftd, weft-proxy and weftctl into a temp dir.
func buildBinaries(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs a binary until the test ends; its output is shown when
// the test fails.
func startProcess(t *testing.T, name string, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	return out
}

func waitHTTP200(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, body)
		}
		return nil
	})
}

// authzConfig is the mesh of TestAuthzBinaries: productpage with an HTTP
// and a TCP port under STRICT mTLS, a RequestAuthentication whose JWKS the
// proxy fetches from jwksURL, and AuthorizationPolicies:
//
//	ALLOW  principal reviews; or any request principal on /jwt/*
//	DENY   /admin* on the HTTP port only (Istio's advice for mixed ports)
//	AUDIT  DELETE
func authzConfig(addr string, httpPort, tcpPort int, jwksURL string) map[string]string {
	return map[string]string{
		"productpage.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 3306, name: tcp, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: %s, ports: {http: %d, tcp: %d}, labels: {app: productpage, version: v1}, serviceAccount: productpage}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`, addr, httpPort, tcpPort),
		"security.yaml": fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  jwtRules:
  - issuer: https://auth.weft.test
    jwksUri: %s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/reviews]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: [/jwt/*]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*], ports: ["%d"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-delete, namespace: default}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
`, jwksURL, httpPort),
	}
}

// TestAuthzBinaries runs the built weftd, weft-proxy and weftctl on
// loopback: the proxy serves productpage's ports with --explicit-inbound
// under STRICT mTLS, and curl, holding mesh certificates from weftd's CA,
// calls the inbound port directly.
func TestAuthzBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not installed (.ci/run installs it)")
	}
	bin := buildBinaries(t)
	const workloadAddr = "127.0.10.41"
	app := startBackend(t, "productpage")
	echoPort := startTCPEcho(t)

	// The IdP: a JWKS on loopback, fetched by the proxy itself.
	idpKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &idpKey.PublicKey, KeyID: "idp", Algorithm: "ES256", Use: "sig"}}})
	jwksSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) })}
	jwksLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go jwksSrv.Serve(jwksLn)
	t.Cleanup(func() { jwksSrv.Close() })

	// weftd.
	cfgDir, dataDir := t.TempDir(), t.TempDir()
	for name, body := range authzConfig(workloadAddr, app.port, echoPort, "http://"+jwksLn.Addr().String()+"/jwks.json") {
		testenv.WriteFile(t, filepath.Join(cfgDir, name), body)
	}
	monAddr, secureAddr := freeAddr(t), freeAddr(t)
	weftdOut := startProcess(t, filepath.Join(bin, "weftd"), "--config-dir", cfgDir, "--data-dir", dataDir,
		"--secure-addr", secureAddr, "--monitoring-addr", monAddr, "--push-debounce", "20ms")
	waitHTTP200(t, "http://"+monAddr+"/ready", 15*time.Second)
	weftctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "weftctl"), append([]string{"--server", monAddr, "--data-dir", dataDir}, args...)...).Output()
		if err != nil {
			t.Fatalf("weftctl %v: %v %s", args, err, out)
		}
		return string(out)
	}
	if out := weftctl("analyze"); strings.Contains(out, "not enforced") {
		t.Fatalf("weftctl analyze still says the policies are not enforced:\n%s", out)
	}
	bundle := weftctl("ca", "bundle")
	bundleFile := filepath.Join(t.TempDir(), "root-cert.pem")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bundleFile, []byte(bundle), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		return strings.TrimSpace(weftctl("token", "create", "-n", "default", "--service-account", sa, "--ttl", "10m", "--single-use"))
	}
	if err := os.WriteFile(tokenFile, []byte(token("productpage")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// weft-proxy for productpage.
	proxyOut := startProcess(t, filepath.Join(bin, "weft-proxy"), "--xds-addr", "127.0.0.1:1", "--ca-addr", secureAddr,
		"--root-cert", bundleFile, "--token-file", tokenFile, "--bind-addr", workloadAddr, "--ip", workloadAddr,
		"--workload-name", "productpage-v1", "--namespace", "default", "--service-account", "productpage",
		"--labels", "app=productpage,version=v1", "--explicit-inbound", "--drain-time", "1s")
	admin := "http://" + workloadAddr + ":15000"
	waitHTTP200(t, admin+"/ready", 20*time.Second)
	httpAddr := net.JoinHostPort(workloadAddr, fmt.Sprint(app.port))
	tcpAddr := net.JoinHostPort(workloadAddr, fmt.Sprint(echoPort))

	// Callers' mesh certificates, from weftd's CA like any workload's.
	roots, err := agent.ParseRoots([]byte(bundle))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	issue := func(sa string) tls.Certificate {
		t.Helper()
		conn, err := grpc.NewClient(secureAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		key, _ := caclient.GenerateKey()
		csr, _ := caclient.BuildCSR(key, spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		chain, err := caclient.Request(ctx, conn, csr, time.Hour, token(sa))
		if err != nil {
			t.Fatalf("issue %s: %v", sa, err)
		}
		c := tls.Certificate{PrivateKey: key}
		for _, x := range chain {
			c.Certificate = append(c.Certificate, x.Raw)
		}
		return c
	}
	reviews, ratings := issue("reviews"), issue("ratings")
	reviewsCert, reviewsKey := writeCertFiles(t, reviews)
	ratingsCert, ratingsKey := writeCertFiles(t, ratings)

	// curl talks to the inbound port with a mesh certificate; -k because
	// the proxy's certificate names a SPIFFE ID, not a DNS name.
	curl := func(cert, key, method, path string, headers ...string) (int, string) {
		t.Helper()
		args := []string{"-sS", "-k", "--max-time", "5", "--cert", cert, "--key", key, "-X", method, "-w", "\n%{http_code}"}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		out, err := exec.Command("curl", append(args, "https://"+httpAddr+path)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s %s: %v\n%s", method, path, err, out)
		}
		s := string(out)
		i := strings.LastIndexByte(s, '\n')
		var code int
		fmt.Sscan(s[i+1:], &code)
		return code, s[:i]
	}
	signed := func(key *ecdsa.PrivateKey, kid string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"iss": "https://auth.weft.test", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		jws, err := s.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jws.CompactSerialize()
		return tok
	}
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	valid, forged := signed(idpKey, "idp"), signed(forger, "idp")

	// The config reached the proxy once the principal rule answers.
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, body := curl(ratingsCert, ratingsKey, "GET", "/books"); code != 403 {
			return fmt.Errorf("ratings /books: %d %q", code, body)
		}
		return nil
	})
	for _, tc := range []struct {
		name         string
		cert, key    string
		method, path string
		headers      []string
		code         int
		body         string
	}{
		{"ALLOW principal reviews", reviewsCert, reviewsKey, "GET", "/books", nil, 200, "productpage /books"},
		{"other principal", ratingsCert, ratingsKey, "GET", "/books", nil, 403, "RBAC: access denied"},
		{"DENY path beats ALLOW", reviewsCert, reviewsKey, "GET", "/admin/users", nil, 403, "RBAC: access denied"},
		{"AUDIT does not deny", reviewsCert, reviewsKey, "DELETE", "/books/1", nil, 200, "productpage /books/1"},
		{"valid JWT", ratingsCert, ratingsKey, "GET", "/jwt/profile", []string{"Authorization: Bearer " + valid}, 200, "productpage /jwt/profile"},
		{"invalid JWT", ratingsCert, ratingsKey, "GET", "/jwt/profile", []string{"Authorization: Bearer " + forged}, 401, "Jwt verification fails"},
		{"no JWT with requestPrincipals *", ratingsCert, ratingsKey, "GET", "/jwt/profile", nil, 403, "RBAC: access denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := app.hits.Load()
			code, body := curl(tc.cert, tc.key, tc.method, tc.path, tc.headers...)
			if code != tc.code || body != tc.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.code, tc.body)
			}
			if reached := app.hits.Load() != before; reached != (code == 200) {
				t.Fatalf("application reached = %v for %d", reached, code)
			}
		})
	}
	if r := app.lastReq.Load(); r == nil || r.Header.Get("Authorization") != "" {
		t.Errorf("the verified token was forwarded to the application (forwardOriginalToken is false)")
	}

	// TCP: the principal rule holds, the HTTP-only rules do not apply.
	echo := func(cert tls.Certificate) (string, error) {
		c, err := tls.Dial("tcp", tcpAddr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			return "", err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return string(buf), err
	}
	if got, err := echo(reviews); err != nil || got != "ping" {
		t.Errorf("TCP as reviews: %q %v, want the echo", got, err)
	}
	if got, err := echo(ratings); err == nil || got == "ping" {
		t.Errorf("TCP as ratings: %q %v, want the connection closed", got, err)
	} else if !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Errorf("TCP as ratings: want the connection closed, got %v", err)
	}

	// Telemetry and admin: denials are counted with Envoy's RBAC flag, the
	// filters are in the config dump, audits are logged.
	metrics := fetch(t, admin+"/stats/prometheus")
	if !hasSeries(metrics, "istio_requests_total", `response_code="403"`, `response_flags="RBAC"`, `reporter="destination"`) ||
		!hasSeries(metrics, "istio_requests_total", `response_code="401"`) {
		t.Errorf("denials missing from istio_requests_total:\n%s", grepLines(metrics, "istio_requests_total"))
	}
	dump := fetch(t, admin+"/config_dump")
	for _, f := range []string{"envoy.filters.http.rbac", "envoy.filters.network.rbac", "envoy.filters.http.jwt_authn", "ns[default]-policy[allow]-rule[0]"} {
		if !strings.Contains(dump, f) {
			t.Errorf("config_dump lacks %s", f)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if out := proxyOut.String(); !strings.Contains(out, `msg="rbac audit"`) || !strings.Contains(out, "component=rbac") ||
			!strings.Contains(out, "policy=ns[default]-policy[audit-delete]-rule[0]") {
			return fmt.Errorf("no audit line in the proxy's log")
		}
		return nil
	})
	_ = weftdOut
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// hasSeries reports whether a Prometheus exposition has a sample of
// metric whose labels contain every fragment.
func hasSeries(exposition, metric string, fragments ...string) bool {
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		ok := true
		for _, f := range fragments {
			ok = ok && strings.Contains(line, f)
		}
		if ok {
			return true
		}
	}
	return false
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
