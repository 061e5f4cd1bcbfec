package caclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
)

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

var workload = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}

// startCA runs a real CA on 127.0.0.1:0 with the real clock.
func startCA(t *testing.T) (*ca.CA, string) { return startCAClock(t, nil) }

// startCAClock runs a real CA whose clock is now (nil: time.Now).
func startCAClock(t *testing.T, now func() time.Time) (*ca.CA, string) {
	t.Helper()
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
	return c, lis.Addr().String()
}

func singleUseToken(t *testing.T, c *ca.CA) string {
	// Single use: every renewal after the first issuance must authenticate
	// with the current certificate.
	tok, err := c.IssueToken(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart", SingleUse: true})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRequestAndCSR(t *testing.T) {
	c, addr := startCA(t)
	key, err := caclient.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := caclient.BuildCSR(key, workload)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := ca.ParseCSR(csr, "cluster.local"); err != nil || got != workload {
		t.Fatalf("ParseCSR(BuildCSR) = %v, %v", got, err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: c.CertPool(), ServerName: "weftd.test"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chain, err := caclient.Request(t.Context(), conn, csr, time.Hour, singleUseToken(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(chain[0].PublicKey) || chain[0].URIs[0].String() != workload.String() {
		t.Fatal("leaf does not certify our key and identity")
	}
}

// TestRotatorUnderLoad: with a 2s TTL the certificate rotates several times
// while a loop of real mTLS handshakes against a server that requires client
// certificates never fails.
func TestRotatorUnderLoad(t *testing.T) {
	c, addr := startCA(t)
	rot, err := caclient.NewRotator(caclient.RotatorConfig{
		ID: workload, Target: addr, ServerName: "weftd.test", Roots: c.TrustBundle(),
		Token: singleUseToken(t, c), TTL: 2 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := rot.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- rot.Run(ctx) }()

	// Peer server: requires and verifies client certs against the bundle.
	sc, err := c.ServingCertificate([]string{"peer.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	serials := map[string]bool{}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: sc.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: c.CertPool(),
		VerifyConnection: func(cs tls.ConnectionState) error {
			mu.Lock()
			serials[cs.PeerCertificates[0].SerialNumber.String()] = true
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if err := conn.(*tls.Conn).Handshake(); err == nil {
					conn.Write([]byte{1})
				}
			}()
		}
	}()

	clientCfg := &tls.Config{RootCAs: c.CertPool(), ServerName: "peer.test", GetClientCertificate: rot.GetClientCertificate}
	handshakes, failures := 0, 0
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(serials)
		mu.Unlock()
		if n >= 4 {
			break
		}
		handshakes++
		conn, err := tls.Dial("tcp", lis.Addr().String(), clientCfg)
		if err == nil {
			_, err = io.ReadFull(conn, make([]byte, 1)) // TLS 1.3 reports client-cert rejection here
			conn.Close()
		}
		if err != nil {
			failures++
			t.Logf("handshake %d: %v", handshakes, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	rotations := len(serials)
	mu.Unlock()
	t.Logf("%d handshakes, %d distinct client certificates", handshakes, rotations)
	if failures != 0 {
		t.Errorf("%d of %d handshakes failed", failures, handshakes)
	}
	if rotations < 4 {
		t.Errorf("saw %d distinct certificates, want at least 4 (3 rotations)", rotations)
	}
	cancel()
	if err := <-runDone; err != context.Canceled {
		t.Errorf("Run returned %v", err)
	}
}

// fakeClock fires After channels when advanced.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// nextWait blocks until someone waits and returns how far ahead.
func (c *fakeClock) nextWait(t *testing.T) time.Duration {
	for range 500 {
		c.mu.Lock()
		if len(c.waiters) > 0 {
			d := c.waiters[0].at.Sub(c.now)
			c.mu.Unlock()
			return d
		}
		c.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("rotator never waited")
	return 0
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// TestRotatorHalfLife drives the schedule with an injected clock: the
// Rotator sleeps half the remaining lifetime, then renews with its cert.
func TestRotatorHalfLife(t *testing.T) {
	c, addr := startCA(t)
	clock := &fakeClock{now: time.Now()}
	rotated := make(chan *x509.Certificate, 4)
	rot, err := caclient.NewRotator(caclient.RotatorConfig{
		ID: workload, Target: addr, ServerName: "weftd.test", Roots: c.TrustBundle(),
		Token: singleUseToken(t, c), TTL: time.Hour, Clock: clock, Logger: slog.New(slog.DiscardHandler),
		OnRotate: func(_ *tls.Certificate, chain []*x509.Certificate) { rotated <- chain[0] },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go rot.Run(ctx)
	first := <-rotated
	wait := clock.nextWait(t)
	if wait < 29*time.Minute || wait > 30*time.Minute {
		t.Fatalf("renewal scheduled in %s, want about half of 1h", wait)
	}
	select {
	case <-rotated:
		t.Fatal("renewed before half-life")
	case <-time.After(50 * time.Millisecond):
	}
	clock.Advance(wait)
	second := <-rotated
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("same certificate after renewal")
	}
	if got, _ := rot.GetClientCertificate(nil); got.Leaf != second {
		t.Error("GetClientCertificate does not return the renewed certificate")
	}
}

// handshakeWith runs one real mTLS handshake against a server that trusts
// only clientCAs and returns the client certificate the server saw.
func handshakeWith(t *testing.T, c *ca.CA, rot *caclient.Rotator, clientCAs []*x509.Certificate) (*x509.Certificate, error) {
	t.Helper()
	sc, err := c.ServingCertificate([]string{"peer.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range clientCAs {
		pool.AddCert(r)
	}
	seen := make(chan *x509.Certificate, 1)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: sc.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		VerifyConnection: func(cs tls.ConnectionState) error { seen <- cs.PeerCertificates[0]; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if conn.(*tls.Conn).Handshake() == nil {
			conn.Write([]byte{1})
		}
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: c.CertPool(), ServerName: "peer.test", GetClientCertificate: rot.GetClientCertificate})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		return nil, err
	}
	return <-seen, nil
}

// TestRotatorFollowsRootRotation: the trust bundle comes with every
// certificate, so a rotated root is learned at the next renewal and a
// retired one dropped. Between the two, a peer that only trusts the old
// root (it has not renewed yet) is offered the previous certificate.
func TestRotatorFollowsRootRotation(t *testing.T) {
	// The CA's clock runs ahead in steps so the new root's name (it carries
	// the creation time to the second) differs from the old one's: peers
	// name the CAs they accept by subject.
	var skew atomic.Int64
	c, addr := startCAClock(t, func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	old := c.TrustBundle()[0]
	rot, err := caclient.NewRotator(caclient.RotatorConfig{
		ID: workload, Target: addr, ServerName: "weftd.test", Roots: c.TrustBundle(),
		Token: singleUseToken(t, c), TTL: time.Hour, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rot.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	pool0 := rot.Roots()
	if b := rot.Bundle(); len(b) != 1 || !b[0].Equal(old) {
		t.Fatalf("bundle before rotation: %d roots", len(b))
	}
	first := rot.Certificate().Leaf

	skew.Store(int64(2 * time.Second))
	if err := c.RotateRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := rot.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	root := c.TrustBundle()[0]
	if b := rot.Bundle(); len(b) != 2 || !b[0].Equal(root) || !b[1].Equal(old) {
		t.Fatalf("bundle after rotate-root: %d roots, want [new, old]", len(b))
	}
	if ch := rot.Chain(); !ch[len(ch)-1].Equal(root) || len(ch) != 2 {
		t.Fatalf("chain does not end with the new root (len %d)", len(ch))
	}
	if rot.Roots() == pool0 {
		t.Error("Roots() returned the same pool after the bundle changed")
	}
	second := rot.Certificate().Leaf
	for _, tt := range []struct {
		name  string
		trust []*x509.Certificate
		want  *x509.Certificate
	}{
		{"peer trusts both roots", []*x509.Certificate{root, old}, second},
		{"peer trusts only the new root", []*x509.Certificate{root}, second},
		{"peer has not learned the new root", []*x509.Certificate{old}, first},
	} {
		got, err := handshakeWith(t, c, rot, tt.trust)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !got.Equal(tt.want) {
			t.Errorf("%s: server saw serial %s, want %s", tt.name, got.SerialNumber, tt.want.SerialNumber)
		}
	}

	if err := c.RetireRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := rot.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b := rot.Bundle(); len(b) != 1 || !b[0].Equal(root) {
		t.Fatalf("bundle after retire-root: %d roots, want the new one only", len(b))
	}
	if _, err := handshakeWith(t, c, rot, []*x509.Certificate{old}); err == nil {
		t.Error("after the old root was retired the previous certificate is still offered")
	}
}

// TestRotatorRefreshRoots: RefreshRoots renews (and so fetches the bundle)
// at most once per MinRefreshInterval, however recent the last periodic
// renewal was (it may predate the root a peer's certificate chains to).
func TestRotatorRefreshRoots(t *testing.T) {
	c, addr := startCA(t)
	clock := &fakeClock{now: time.Now()}
	rot, err := caclient.NewRotator(caclient.RotatorConfig{
		ID: workload, Target: addr, ServerName: "weftd.test", Roots: c.TrustBundle(),
		Token: singleUseToken(t, c), TTL: time.Hour, Clock: clock, MinRefreshInterval: time.Minute, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rot.Rotate(t.Context()); err != nil { // a periodic renewal, just now
		t.Fatal(err)
	}
	if err := c.RotateRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := rot.Certificate().Leaf
	if err := rot.RefreshRoots(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rot.Certificate().Leaf.Equal(first) || len(rot.Bundle()) != 2 {
		t.Fatalf("RefreshRoots right after a renewal did not fetch: bundle %d roots", len(rot.Bundle()))
	}
	second := rot.Certificate().Leaf
	if err := rot.RefreshRoots(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !rot.Certificate().Leaf.Equal(second) {
		t.Fatal("RefreshRoots fetched twice within MinRefreshInterval")
	}
	clock.Advance(time.Minute)
	if err := rot.RefreshRoots(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rot.Certificate().Leaf.Equal(second) {
		t.Fatal("RefreshRoots after the interval did not fetch")
	}
}
