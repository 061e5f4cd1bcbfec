package tlsorigin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// ---- a real Weft CA and rotators ----

type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) GetKV(b, key string) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[b+"/"+key]
	return v, ok, nil
}

func (k *memKV) PutKV(b, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[b+"/"+key] = append([]byte(nil), v...)
	return nil
}

type meshCA struct {
	*ca.CA
	addr string
	skew atomic.Int64 // the CA's clock runs ahead by this much (distinct root names)
}

// startMeshCA runs weftd's CA (self-signed root) on 127.0.0.1:0.
func startMeshCA(t testing.TB) *meshCA {
	t.Helper()
	m := &meshCA{}
	now := func() time.Time { return time.Now().Add(time.Duration(m.skew.Load())) }
	kv := &memKV{m: map[string][]byte{}}
	s, err := ca.NewSelfSigned(ca.SelfSignedConfig{KV: kv, TrustDomain: "cluster.local", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ca.Config{TrustDomain: "cluster.local", Signer: s, KV: kv, Now: now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, err := c.ServingCertificate([]string{"weftd.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(c.ServerTLSConfig(sc))))
	c.Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	m.CA, m.addr = c, lis.Addr().String()
	return m
}

// rotator returns a Rotator for default/sa holding its first certificate.
func (m *meshCA) rotator(t testing.TB, sa string, ttl time.Duration) *caclient.Rotator {
	t.Helper()
	tok, err := m.IssueToken(ca.TokenSpec{Namespace: "default", ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	r, err := caclient.NewRotator(caclient.RotatorConfig{
		ID: spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa}, Target: m.addr, ServerName: "weftd.test",
		Roots: m.TrustBundle(), Token: tok, TTL: ttl, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

var _ Identity = (*caclient.Rotator)(nil)

// ---- a TLS server speaking a one-line protocol ----

// server is a real TLS server on 127.0.0.1:0: after the handshake it writes
// "hello\n" and echoes what it reads.
type server struct {
	ln    net.Listener
	addr  string
	mu    sync.Mutex
	cfg   *tls.Config
	peers []tls.ConnectionState
}

func startServer(t testing.TB, cfg *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, addr: ln.Addr().String(), cfg: cfg}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *server) setConfig(cfg *tls.Config) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

func (s *server) serve(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	tc := tls.Server(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	_ = tc.SetDeadline(time.Time{})
	s.mu.Lock()
	s.peers = append(s.peers, tc.ConnectionState())
	s.mu.Unlock()
	if _, err := tc.Write([]byte("hello\n")); err != nil {
		return
	}
	_, _ = io.Copy(tc, tc)
}

func (s *server) last() tls.ConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[len(s.peers)-1]
}

// meshServer is a mesh workload's inbound side: the rotator's certificate,
// client certificates required and verified against its bundle.
func meshServerConfig(r *caclient.Rotator) *tls.Config {
	return &tls.Config{
		GetCertificate: r.GetCertificate,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{GetCertificate: r.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: r.Roots(),
				NextProtos: []string{"istio-peer-exchange", "istio"}}, nil
		},
	}
}

// ---- an in-test PKI ----

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

type leafOpts struct {
	uris     []string
	dns      []string
	notAfter time.Time
}

func (c *testCA) issue(t testing.TB, o leafOpts) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), NotBefore: time.Now().Add(-time.Hour), NotAfter: o.notAfter,
		DNSNames: o.dns, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, u := range o.uris {
		p, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

func (c *testCA) crl(t testing.TB, revoked ...*x509.Certificate) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, r := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(serial.Add(1)),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func keyPEM(t testing.TB, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func chainPEM(c tls.Certificate) []byte {
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// fixedIdentity is an Identity with a fixed certificate and bundle (for
// peers outside a real CA, e.g. another trust domain).
type fixedIdentity struct {
	cert      *tls.Certificate
	roots     *x509.CertPool
	refreshes atomic.Int32
}

func (f *fixedIdentity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return f.cert, nil
}
func (f *fixedIdentity) Certificate() *tls.Certificate { return f.cert }
func (f *fixedIdentity) Roots() *x509.CertPool         { return f.roots }
func (f *fixedIdentity) RefreshRoots(context.Context) error {
	f.refreshes.Add(1)
	return nil
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// mesh is the ISTIO_MUTUAL description weftd's config compiles to.
func mesh(key string, sans ...string) *upstream.UpstreamTLS {
	d := &upstream.UpstreamTLS{Key: key, SNI: "outbound_.9080_._.productpage.default.svc.cluster.local", ALPN: []string{"istio-peer-exchange", "istio"},
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, MaxSessionKeys: 1,
		Cert: upstream.CertSource{Kind: upstream.CertWorkload}, Validation: upstream.Validation{Trust: upstream.TrustMesh}}
	for _, s := range sans {
		d.Validation.SANs = append(d.Validation.SANs, upstream.SANMatcherFor(upstream.SANAny, s))
	}
	return d
}

func newOrigin(t testing.TB, id Identity, contexts ...*upstream.UpstreamTLS) *Origin {
	t.Helper()
	o := New(Config{Identity: id, Logger: slog.New(slog.DiscardHandler)})
	o.Sync(contexts)
	return o
}

// roundTrip reads the server's greeting and one echoed line over c.
func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf[:5])
	return err
}
