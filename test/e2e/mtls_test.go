package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/testenv"
)

// productpageWorkload is the proxy's own workload: service port 9080, the
// application on 127.0.0.1:appPort, the WorkloadEntry (and the proxy's
// explicit inbound socket) on addr:appPort.
func productpageWorkload(addr string, appPort int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: %s, ports: {http: %d}, labels: {app: productpage, version: v1}, serviceAccount: productpage}
`, addr, appPort)
}

func meshPeerAuthentication(mode string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: %s}}
`, mode)
}

// meshPKI is what a test needs from weftd's CA: the bundle file, tokens
// from weftctl, and certificates issued through caclient.
type meshPKI struct {
	wd         *testenv.Weftd
	bundleFile string
	roots      []*x509.Certificate
	pool       *x509.CertPool
}

func newMeshPKI(t *testing.T, wd *testenv.Weftd) *meshPKI {
	t.Helper()
	code, bundle, errOut := weftctl(t, wd, "", "ca", "bundle")
	if code != 0 {
		t.Fatalf("weftctl ca bundle: %d %s", code, errOut)
	}
	f := filepath.Join(t.TempDir(), "root-cert.pem")
	if err := os.WriteFile(f, []byte(bundle), 0o600); err != nil {
		t.Fatal(err)
	}
	roots, err := agent.ParseRoots([]byte(bundle))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return &meshPKI{wd: wd, bundleFile: f, roots: roots, pool: pool}
}

func (p *meshPKI) token(t *testing.T, sa string) string {
	t.Helper()
	code, tok, errOut := weftctl(t, p.wd, "", "token", "create", "-n", "default", "--service-account", sa, "--ttl", "10m", "--single-use")
	if code != 0 {
		t.Fatalf("weftctl token create: %d %s", code, errOut)
	}
	return strings.TrimSpace(tok)
}

// issue gets a workload certificate for default/sa from weftd's CA.
func (p *meshPKI) issue(t *testing.T, sa string, ttl time.Duration) tls.Certificate {
	t.Helper()
	conn, err := grpc.NewClient(p.wd.SecureAddr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, err := caclient.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := caclient.BuildCSR(key, spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chain, err := caclient.Request(ctx, conn, csr, ttl, p.token(t, sa))
	if err != nil {
		t.Fatalf("issue %s: %v", sa, err)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// writeCertFiles writes a certificate chain and key as PEM for openssl.
func writeCertFiles(t *testing.T, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// foreignCert is a workload-shaped certificate (same SPIFFE ID) from a CA
// the mesh does not trust.
func foreignCert(t *testing.T) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/reviews")
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(8), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// opensslGet sends one HTTP request through `openssl s_client` (verifying
// the proxy's certificate against the mesh bundle; with a client
// certificate when certFile is set) and returns its output. It offers
// Istio's ALPN, as a mesh client does (PERMISSIVE ports tell mesh mTLS
// from the application's own TLS by it).
func opensslGet(t *testing.T, addr, bundle, certFile, keyFile string) string {
	t.Helper()
	return opensslGetALPN(t, addr, bundle, certFile, keyFile, "istio-http/1.1,istio")
}

func opensslGetALPN(t *testing.T, addr, bundle, certFile, keyFile, alpn string) string {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-CAfile", bundle, "-verify_return_error", "-ign_eof", "-quiet", "-alpn", alpn}
	if certFile != "" {
		args = append(args, "-cert", certFile, "-key", keyFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Stdin = strings.NewReader("GET /hello HTTP/1.1\r\nHost: productpage\r\nConnection: close\r\n\r\n")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func curlPlain(t *testing.T, addr string) (string, error) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--max-time", "5", "http://"+addr+"/hello").CombinedOutput()
	return string(out), err
}

// TestMTLSInbound: weftd with a mesh-wide PeerAuthentication; weft-proxy
// (explicit mode with its inbound sockets, identity from a bootstrap token)
// in front of an application. The real openssl and curl are the callers.
func TestMTLSInbound(t *testing.T) {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (.ci/run installs it)", tool)
		}
	}
	const workloadAddr = "127.0.10.21"
	app := startBackend(t, "productpage")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"productpage.yaml": productpageWorkload(workloadAddr, app.port),
		"pa.yaml":          meshPeerAuthentication("STRICT"),
	}})
	pki := newMeshPKI(t, wd)
	p := startMeshProxy(t, wd, pki, workloadAddr, 0)
	inbound := net.JoinHostPort(workloadAddr, fmt.Sprint(app.port))
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := p.ListenerAddrs()[fmt.Sprintf("virtualInbound:%d", app.port)]; !ok {
			return fmt.Errorf("inbound socket not bound: %v", p.ListenerAddrs())
		}
		return nil
	})

	meshCert, meshKey := writeCertFiles(t, pki.issue(t, "reviews", time.Hour))
	otherCert, otherKey := writeCertFiles(t, foreignCert(t))
	const ok = "HTTP/1.1 200"

	t.Run("STRICT", func(t *testing.T) {
		if out := opensslGet(t, inbound, pki.bundleFile, meshCert, meshKey); !strings.Contains(out, ok) || !strings.Contains(out, "productpage /hello") {
			t.Fatalf("mesh certificate: want 200 from the app, got:\n%s", out)
		}
		// TLS 1.3: the client finishes its side first; the server's alert
		// arrives instead of a response.
		if out := opensslGet(t, inbound, pki.bundleFile, "", ""); strings.Contains(out, ok) || !strings.Contains(out, "alert") {
			t.Fatalf("no client certificate: want the handshake refused, got:\n%s", out)
		} else {
			t.Logf("no client certificate: %s", strings.TrimSpace(out))
		}
		if out := opensslGet(t, inbound, pki.bundleFile, otherCert, otherKey); strings.Contains(out, ok) || !strings.Contains(out, "alert") {
			t.Fatalf("certificate from another CA: want the handshake refused, got:\n%s", out)
		} else {
			t.Logf("certificate from another CA: %s", strings.TrimSpace(out))
		}
		if out, err := curlPlain(t, inbound); err == nil {
			t.Fatalf("plaintext on STRICT: want refused, got %q", out)
		}
	})

	t.Run("PERMISSIVE", func(t *testing.T) {
		testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "pa.yaml"), meshPeerAuthentication("PERMISSIVE"))
		testenv.Eventually(t, 10*time.Second, func() error {
			out, err := curlPlain(t, inbound)
			if err != nil || out != "productpage /hello" {
				return fmt.Errorf("plaintext curl: %q %v", out, err)
			}
			return nil
		})
		if out := opensslGet(t, inbound, pki.bundleFile, meshCert, meshKey); !strings.Contains(out, ok) {
			t.Fatalf("mesh certificate on PERMISSIVE: want 200, got:\n%s", out)
		}
		if out := opensslGet(t, inbound, pki.bundleFile, otherCert, otherKey); strings.Contains(out, ok) {
			t.Fatalf("TLS from another CA on PERMISSIVE: want refused, got:\n%s", out)
		}
		// TLS without a mesh ALPN is the application's own: the proxy does
		// not terminate it (the app here speaks plaintext, so it fails).
		if out := opensslGetALPN(t, inbound, pki.bundleFile, meshCert, meshKey, "http/1.1"); strings.Contains(out, ok) {
			t.Fatalf("app TLS on PERMISSIVE was terminated by the proxy:\n%s", out)
		}
	})

	t.Run("DISABLE", func(t *testing.T) {
		testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "pa.yaml"), meshPeerAuthentication("DISABLE"))
		testenv.Eventually(t, 10*time.Second, func() error {
			if out := opensslGet(t, inbound, pki.bundleFile, meshCert, meshKey); strings.Contains(out, ok) {
				return fmt.Errorf("TLS still accepted")
			}
			return nil
		})
		if out, err := curlPlain(t, inbound); err != nil || out != "productpage /hello" {
			t.Fatalf("plaintext on DISABLE: %q %v", out, err)
		}
	})
}

// startMeshProxy starts weft-proxy with an identity: trust bundle and a
// single-use bootstrap token from weftctl, xDS over TLS on the secure port.
func startMeshProxy(t *testing.T, wd *testenv.Weftd, pki *meshPKI, addr string, ttl time.Duration) *runningProxy {
	t.Helper()
	token := pki.token(t, "productpage")
	return startProxy(t, wd.XDSAddr.String(), func(c *agent.Config) {
		c.IP, c.BindAddr = addr, netipAddr(t, addr)
		c.ServiceAccount = "productpage"
		c.ExplicitInbound = true
		c.Identity = &agent.Identity{CAAddr: wd.SecureAddr.String(), Roots: pki.roots, Token: token, CertTTL: ttl}
	})
}

// TestMTLSRotation: with 4s certificates the proxy's serving certificate
// rotates (at half-life) at least twice while a loop of fresh mTLS
// connections keeps succeeding.
func TestMTLSRotation(t *testing.T) {
	const workloadAddr = "127.0.10.22"
	app := startBackend(t, "productpage")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{CertTTL: 4 * time.Second, ConfigFiles: map[string]string{
		"productpage.yaml": productpageWorkload(workloadAddr, app.port),
		"pa.yaml":          meshPeerAuthentication("STRICT"),
	}})
	pki := newMeshPKI(t, wd)
	p := startMeshProxy(t, wd, pki, workloadAddr, 0)
	client := pki.issue(t, "reviews", time.Hour)
	inbound := net.JoinHostPort(workloadAddr, fmt.Sprint(app.port))
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := p.ListenerAddrs()[fmt.Sprintf("virtualInbound:%d", app.port)]; !ok {
			return fmt.Errorf("inbound socket not bound")
		}
		return nil
	})
	cfg := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{client}, ServerName: "productpage",
		// The server's name is its SPIFFE ID: verify the chain, then the ID.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pki.pool, Intermediates: inter}); err != nil {
				return err
			}
			if u := cs.PeerCertificates[0].URIs; len(u) != 1 || u[0].String() != "spiffe://cluster.local/ns/default/sa/productpage" {
				return fmt.Errorf("server identity %v", u)
			}
			return nil
		}}
	serials := map[string]bool{}
	requests := 0
	deadline := time.Now().Add(20 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		c, err := tls.Dial("tcp", inbound, cfg)
		if err != nil {
			t.Fatalf("request %d: handshake: %v (serials so far %d)", requests, err, len(serials))
		}
		serials[c.ConnectionState().PeerCertificates[0].SerialNumber.String()] = true
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "GET /r HTTP/1.1\r\nHost: productpage\r\nConnection: close\r\n\r\n")
		body, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(body), "HTTP/1.1 200") || !strings.HasSuffix(string(body), "productpage /r") {
			t.Fatalf("request %d: %q %v", requests, body, err)
		}
		requests++
		time.Sleep(50 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("serving certificate rotated %d times in 20s, want >= 2", len(serials)-1)
	}
	t.Logf("%d requests, %d serving certificates, zero failures", requests, len(serials))
}

func netipAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMTLSProxyBinary runs the weft-proxy binary the way a host operator
// would: a trust bundle file from `weftctl ca bundle`, a token file from
// `weftctl token create`, xDS and CA on weftd's secure port only.
func TestMTLSProxyBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	const workloadAddr = "127.0.10.23"
	app := startBackend(t, "productpage")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"productpage.yaml": productpageWorkload(workloadAddr, app.port),
		"pa.yaml":          meshPeerAuthentication("STRICT"),
	}})
	pki := newMeshPKI(t, wd)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(pki.token(t, "productpage")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	// --xds-addr points nowhere: with --root-cert everything goes to --ca-addr.
	cmd := exec.Command(bin, "--xds-addr", "127.0.0.1:1", "--ca-addr", wd.SecureAddr.String(),
		"--root-cert", pki.bundleFile, "--token-file", tokenFile, "--bind-addr", workloadAddr, "--ip", workloadAddr,
		"--workload-name", "productpage-v1", "--namespace", "default", "--service-account", "productpage",
		"--labels", "app=productpage,version=v1", "--explicit-inbound", "--drain-time", "1s")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			t.Logf("weft-proxy output:\n%s", out.String())
		}
	})
	testenv.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + workloadAddr + ":15000/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("ready %d %s", resp.StatusCode, body)
		}
		return nil
	})
	meshCert, meshKey := writeCertFiles(t, pki.issue(t, "reviews", time.Hour))
	inbound := net.JoinHostPort(workloadAddr, fmt.Sprint(app.port))
	testenv.Eventually(t, 5*time.Second, func() error {
		if o := opensslGet(t, inbound, pki.bundleFile, meshCert, meshKey); !strings.Contains(o, "HTTP/1.1 200") {
			return fmt.Errorf("mesh certificate through the binary: %s", o)
		}
		return nil
	})
	if o, err := curlPlain(t, inbound); err == nil {
		t.Fatalf("plaintext on STRICT: %q", o)
	}
}
