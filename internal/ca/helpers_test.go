package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
)

const td = "cluster.local"

// memKV is an in-memory ca.KV; the restart test uses the real bbolt store.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}} }

func (k *memKV) GetKV(bucket, key string) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[bucket+"/"+key]
	return append([]byte(nil), v...), ok, nil
}

func (k *memKV) PutKV(bucket, key string, val []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[bucket+"/"+key] = append([]byte(nil), val...)
	return nil
}

// fakeClock starts at a whole second near real time, so TLS peers using the
// real clock still accept certificates issued on it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// refusals returns the audit lines logged so far.
func (l *logBuf) refusals() []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, "certificate request refused") {
			out = append(out, line)
		}
	}
	return out
}

type env struct {
	t     *testing.T
	ca    *ca.CA
	kv    ca.KV
	clock *fakeClock
	logs  *logBuf
	reg   *prometheus.Registry
	addr  string
}

type envOpt func(*ca.Config)

// newEnv starts a CA with a self-signed signer (unless an option sets one)
// behind a real gRPC server with ServerTLSConfig on 127.0.0.1:0.
func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, kv: newMemKV(), clock: newFakeClock(), logs: &logBuf{}, reg: prometheus.NewRegistry()}
	cfg := ca.Config{
		TrustDomain: td, KV: e.kv, Now: e.clock.Now, Registerer: e.reg, MaxTTL: 48 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.Signer == nil {
		s, err := ca.NewSelfSigned(ca.SelfSignedConfig{KV: cfg.KV, TrustDomain: td, Now: e.clock.Now, MaxLeafTTL: cfg.MaxTTL})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Signer = s
	}
	c, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.ca = c
	e.addr = serve(t, c)
	return e
}

func serve(t *testing.T, c *ca.CA) string {
	t.Helper()
	sc, err := c.ServingCertificate([]string{"weftd.test"}, []net.IP{net.ParseIP("127.0.0.1")})
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
	return lis.Addr().String()
}

// dial connects to the CA, presenting client if non-nil.
func (e *env) dial(client *tls.Certificate) *grpc.ClientConn {
	e.t.Helper()
	tc := &tls.Config{RootCAs: e.ca.CertPool(), ServerName: "weftd.test"}
	if client != nil {
		tc.Certificates = []tls.Certificate{*client}
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *env) token(spec ca.TokenSpec) string {
	e.t.Helper()
	tok, err := e.ca.IssueToken(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func id(ns, sa string) spiffe.ID {
	return spiffe.ID{TrustDomain: td, Namespace: ns, ServiceAccount: sa}
}

func csrFor(t *testing.T, key crypto.Signer, i spiffe.ID) []byte {
	t.Helper()
	p, err := caclient.BuildCSR(key, i)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// issue gets a certificate for i with token over a fresh connection.
func (e *env) issue(i spiffe.ID, token string, ttl time.Duration) (*tls.Certificate, []*x509.Certificate) {
	e.t.Helper()
	key, err := caclient.GenerateKey()
	if err != nil {
		e.t.Fatal(err)
	}
	chain, err := caclient.Request(context.Background(), e.dial(nil), csrFor(e.t, key, i), ttl, token)
	if err != nil {
		e.t.Fatalf("issue %s: %v", i, err)
	}
	return tlsCert(key, chain), chain
}

func tlsCert(key crypto.Signer, chain []*x509.Certificate) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// metric returns the value of a counter or gauge in reg (summing label sets
// matching labels, given as name=value pairs).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func verifies(leaf *x509.Certificate, chain []*x509.Certificate, roots []*x509.Certificate, at time.Time) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range chain {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}
