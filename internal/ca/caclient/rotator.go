package caclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// Clock is the time source of a Rotator; tests inject a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RotatorConfig configures NewRotator.
type RotatorConfig struct {
	// ID is the identity to request.
	ID spiffe.ID
	// Target is weftd's secure address (host:15012), ServerName the name in
	// its serving certificate, Roots the bootstrap trust for it (the mesh
	// root-cert.pem). Roots from issued chains are added automatically.
	Target     string
	ServerName string
	Roots      []*x509.Certificate
	// Token authenticates requests while the Rotator holds no valid
	// certificate (first issuance, or after expiry). Renewals authenticate
	// with the current certificate instead.
	Token string
	// TTL is the requested validity (0 → the CA's default).
	TTL time.Duration
	// DialOptions are added to every connection (transport credentials are
	// set by the Rotator).
	DialOptions []grpc.DialOption
	// OnRotate is called after each new certificate, e.g. to push it to SDS.
	OnRotate func(cert *tls.Certificate, chain []*x509.Certificate)
	// MinRefreshInterval rate-limits RefreshRoots [5s] (periodic renewals
	// are not limited by it).
	MinRefreshInterval time.Duration
	Clock              Clock
	Logger             *slog.Logger
}

// Rotator holds the workload's current certificate and renews it at half
// its remaining lifetime. Its GetCertificate/GetClientCertificate callbacks
// let live tls.Configs pick up the new certificate on the next handshake
// while existing connections keep running.
//
// The trust bundle is the configured one until the first certificate
// arrives; from then on it is the CA's, as each CreateCertificate response
// carries it (so a rotated root is learned, and a retired one dropped, at
// the next renewal, and RefreshRoots learns it on demand).
type Rotator struct {
	cfg   RotatorConfig
	clock Clock
	log   *slog.Logger

	rotateMu sync.Mutex // one CreateCertificate at a time

	mu    sync.RWMutex
	cert  *tls.Certificate
	chain []*x509.Certificate
	// prev is the certificate before cert when cert chains to another root
	// (a root rotation): peers that do not trust the new root yet are
	// offered prev while it is valid and its root is in the bundle.
	prev     *tls.Certificate
	prevRoot *x509.Certificate
	roots    []*x509.Certificate
	pool     *x509.CertPool // roots as a pool; replaced, never modified
	renewAt  time.Time
	// lastRefresh is when RefreshRoots last fetched (rate limit). Periodic
	// renewals do not count: one a second ago may predate the root the
	// peer's certificate chains to.
	lastRefresh time.Time
}

// NewRotator validates cfg; call Run (or Rotate) to get a certificate.
func NewRotator(cfg RotatorConfig) (*Rotator, error) {
	if err := cfg.ID.Validate(); err != nil {
		return nil, fmt.Errorf("caclient: rotator: %w", err)
	}
	if cfg.Target == "" {
		return nil, errors.New("caclient: rotator: Target is required")
	}
	if len(cfg.Roots) == 0 {
		return nil, errors.New("caclient: rotator: Roots (the mesh trust bundle) are required to verify weftd")
	}
	r := &Rotator{cfg: cfg, clock: cfg.Clock, log: cfg.Logger}
	r.setRootsLocked(cfg.Roots)
	if r.clock == nil {
		r.clock = realClock{}
	}
	if r.cfg.MinRefreshInterval <= 0 {
		r.cfg.MinRefreshInterval = 5 * time.Second
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", "caclient", "identity", cfg.ID.String())
	return r, nil
}

// Run obtains a certificate at once and renews it at half-life until ctx
// ends. Failures are retried with backoff while the current certificate
// lives. It returns ctx.Err().
func (r *Rotator) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		if wait := r.untilRenew(); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-r.clock.After(wait):
			}
			if r.untilRenew() > 0 {
				continue // renewed meanwhile (RefreshRoots)
			}
		}
		if err := r.Rotate(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.logFailure(err, backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-r.clock.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// TokenRefusedHint is logged when weftd refuses the bootstrap token: no
// retry can succeed with it, the operator has to hand out a new one.
const TokenRefusedHint = "the bootstrap token is expired, already used (single-use) or was issued by another weftd: " +
	"get a new one from this weftd (`weftctl vm bundle` for hosts, `weftctl token create`) and restart weft-proxy"

// logFailure says what went wrong in the operator's terms: a refused
// bootstrap token (not retryable by itself) reads differently from weftd
// being unreachable or a renewal failing.
func (r *Rotator) logFailure(err error, retryIn time.Duration) {
	switch {
	case r.validCert() != nil:
		r.log.Warn("certificate renewal failed; retrying", "error", err, "retry_in", retryIn)
	case r.cfg.Token != "" && status.Code(err) == codes.Unauthenticated:
		r.log.Error("bootstrap token refused by weftd; retrying", "error", err, "retry_in", retryIn, "fix", TokenRefusedHint)
	default:
		r.log.Warn("no workload certificate yet; retrying", "error", err, "retry_in", retryIn)
	}
}

func (r *Rotator) untilRenew() time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cert == nil {
		return 0
	}
	return r.renewAt.Sub(r.clock.Now())
}

// Rotate requests a new certificate now over a fresh connection, so the
// server sees the current client certificate rather than the one a
// long-lived connection was opened with. The response's trust bundle
// replaces the Rotator's.
func (r *Rotator) Rotate(ctx context.Context) error {
	r.rotateMu.Lock()
	defer r.rotateMu.Unlock()
	return r.rotate(ctx)
}

func (r *Rotator) rotate(ctx context.Context) error {
	key, err := GenerateKey()
	if err != nil {
		return err
	}
	csr, err := BuildCSR(key, r.cfg.ID)
	if err != nil {
		return err
	}
	token := ""
	if r.validCert() == nil {
		token = r.cfg.Token
	}
	tc := &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              r.Roots(),
		ServerName:           r.cfg.ServerName,
		GetClientCertificate: r.GetClientCertificate,
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, r.cfg.DialOptions...)
	conn, err := grpc.NewClient(r.cfg.Target, opts...)
	if err != nil {
		return fmt.Errorf("caclient: dial %s: %w", r.cfg.Target, err)
	}
	defer conn.Close()
	chain, bundle, err := RequestBundle(ctx, conn, csr, r.cfg.TTL, token)
	if err != nil {
		return err
	}
	leaf := chain[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return errors.New("caclient: issued certificate does not certify our key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != r.cfg.ID.String() {
		return fmt.Errorf("caclient: issued certificate is not for %s", r.cfg.ID)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	now := r.clock.Now()
	root := chain[len(chain)-1]
	r.mu.Lock()
	if r.cert != nil && !root.Equal(r.chain[len(r.chain)-1]) {
		r.prev, r.prevRoot = r.cert, r.chain[len(r.chain)-1]
	}
	r.cert, r.chain = cert, chain
	r.renewAt = now.Add(leaf.NotAfter.Sub(now) / 2)
	switch {
	case bundle != nil:
		r.setRootsLocked(bundle)
	case !containsCert(r.roots, root):
		r.setRootsLocked(append(slices.Clone(r.roots), root))
	}
	if r.prev != nil && !containsCert(r.roots, r.prevRoot) {
		r.prev, r.prevRoot = nil, nil // its root was retired
	}
	renewAt, nroots := r.renewAt, len(r.roots)
	r.mu.Unlock()
	r.log.Info("certificate rotated", "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"renew_at", renewAt.UTC().Format(time.RFC3339), "trust_bundle_roots", nroots)
	if r.cfg.OnRotate != nil {
		r.cfg.OnRotate(cert, chain)
	}
	return nil
}

// RefreshRoots renews now, and with it fetches the CA's current trust
// bundle, unless an earlier RefreshRoots did less than MinRefreshInterval
// ago. A TLS client calls it when a mesh peer's certificate chains to a
// root it does not know: during a root rotation the peer may have renewed
// first. Concurrent callers wait for one renewal (then compare Roots()).
func (r *Rotator) RefreshRoots(ctx context.Context) error {
	r.rotateMu.Lock()
	defer r.rotateMu.Unlock()
	now := r.clock.Now()
	r.mu.Lock()
	if !r.lastRefresh.IsZero() && now.Sub(r.lastRefresh) < r.cfg.MinRefreshInterval {
		r.mu.Unlock()
		return nil
	}
	r.lastRefresh = now
	r.mu.Unlock()
	return r.rotate(ctx)
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, l := range list {
		if l.Equal(c) {
			return true
		}
	}
	return false
}

// validCert returns the current certificate if it is within its validity.
func (r *Rotator) validCert() *tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cert == nil {
		return nil
	}
	now := r.clock.Now()
	if now.Before(r.cert.Leaf.NotBefore) || !now.Before(r.cert.Leaf.NotAfter) {
		return nil
	}
	return r.cert
}

// Certificate returns the current certificate, or nil before the first.
func (r *Rotator) Certificate() *tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert
}

// Chain returns the current chain [leaf, intermediates..., root].
func (r *Rotator) Chain() []*x509.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.chain
}

// Roots returns the roots trusted for weftd and for peers: the configured
// bundle until the first certificate, then the CA's bundle (or what
// SetRoots set). The pool is shared and must not be modified; a new one is
// returned after every change, so callers can compare pointers.
func (r *Rotator) Roots() *x509.CertPool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.pool
}

// Bundle returns the trust bundle's certificates (do not modify).
func (r *Rotator) Bundle() []*x509.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.roots
}

// SetRoots replaces the trust bundle, e.g. with one pushed over SDS during
// a root rotation.
func (r *Rotator) SetRoots(roots []*x509.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setRootsLocked(roots)
}

func (r *Rotator) setRootsLocked(roots []*x509.Certificate) {
	r.roots = slices.Clone(roots)
	r.pool = x509.NewCertPool()
	for _, c := range r.roots {
		r.pool.AddCert(c)
	}
}

// GetCertificate is a tls.Config.GetCertificate callback (inbound mTLS).
func (r *Rotator) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.validCert(); c != nil {
		return c, nil
	}
	return nil, errors.New("caclient: no valid workload certificate yet")
}

// GetClientCertificate is a tls.Config.GetClientCertificate callback. With
// no valid certificate it sends none, so token-authenticated requests and
// servers that only request a certificate still work. When the server lists
// the CAs it accepts and the current certificate's root is not among them
// (it has not learned a rotated root yet), the previous certificate is sent
// while it is valid.
func (r *Rotator) GetClientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c := r.validCert()
	if c == nil {
		return &tls.Certificate{}, nil
	}
	if cri == nil || len(cri.AcceptableCAs) == 0 || cri.SupportsCertificate(c) == nil {
		return c, nil
	}
	if p := r.validPrev(); p != nil && cri.SupportsCertificate(p) == nil {
		return p, nil
	}
	return c, nil
}

func (r *Rotator) validPrev() *tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.prev == nil {
		return nil
	}
	now := r.clock.Now()
	if now.Before(r.prev.Leaf.NotBefore) || !now.Before(r.prev.Leaf.NotAfter) {
		return nil
	}
	return r.prev
}
