// Package ca is Weft's certificate authority: it issues short-lived X.509
// SVIDs (SPIFFE URI SAN spiffe://<td>/ns/<ns>/sa/<sa>) over Istio's
// IstioCertificateService API. Signing sits behind the Signer interface
// (self-signed root kept in the embedded store, or a plugged-in CA from
// Istio's cacerts files); who may ask for which identity sits behind the
// Authenticator interface (bootstrap tokens, the caller's current
// certificate). Wiring into weftd is the caller's job: construct with New,
// Register on the secure gRPC server, serve ServerTLSConfig on 15012.
package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/ca/certpem"
	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// KV is the slice of the embedded store (config.Store) the CA needs: root
// material, the token signing key and consumed single-use token IDs.
type KV interface {
	GetKV(bucket, key string) (val []byte, ok bool, err error)
	PutKV(bucket, key string, val []byte) error
}

// Defaults for Config.
const (
	DefaultCertTTL = 24 * time.Hour
	DefaultMaxTTL  = 90 * 24 * time.Hour // Istio's default max workload cert TTL
)

// Config configures a CA.
type Config struct {
	// TrustDomain is the SPIFFE trust domain; CSRs for other domains are refused.
	TrustDomain string
	// Signer issues the certificates: NewSelfSigned or LoadCACerts.
	Signer Signer
	// KV keeps the bootstrap-token key and consumed single-use token IDs.
	// Without it bootstrap tokens are disabled and only renewal works.
	KV KV
	// Authenticators are tried after the built-in token and certificate
	// authenticators (a Kubernetes token validator slots in here).
	Authenticators []Authenticator
	// DefaultTTL applies when a request asks for no validity (0 → 24h).
	DefaultTTL time.Duration
	// MaxTTL is the longest validity a workload may ask for; longer
	// requests are refused like Istio does (0 → 90 days).
	MaxTTL time.Duration
	// Logger receives audit lines (component=ca); nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the citadel_server_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// CA issues workload certificates. It is safe for concurrent use.
type CA struct {
	td      string
	signer  Signer
	tokens  *Tokens // nil when Config.KV is nil
	auths   []Authenticator
	defTTL  time.Duration
	maxTTL  time.Duration
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	mu       sync.Mutex
	watchers map[*bundleWatcher]struct{}
	rootGen  uint64      // bumped when roots are retired; serving certs reissue
	timer    *time.Timer // fires when an old root leaves the bundle
	closed   bool
}

// New builds a CA from cfg.
func New(cfg Config) (*CA, error) {
	if err := (spiffe.ID{TrustDomain: cfg.TrustDomain, Namespace: "x", ServiceAccount: "x"}).Validate(); err != nil {
		return nil, fmt.Errorf("ca: trust domain: %w", err)
	}
	if cfg.Signer == nil {
		return nil, errors.New("ca: a Signer is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = DefaultCertTTL
	}
	if cfg.DefaultTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("ca: default TTL %s exceeds max TTL %s", cfg.DefaultTTL, cfg.MaxTTL)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &CA{
		td: cfg.TrustDomain, signer: cfg.Signer, defTTL: cfg.DefaultTTL, maxTTL: cfg.MaxTTL,
		log: cfg.Logger.With("component", "ca"), metrics: m, now: cfg.Now,
		watchers: map[*bundleWatcher]struct{}{},
	}
	if cfg.KV != nil {
		c.tokens, err = NewTokens(TokensConfig{KV: cfg.KV, TrustDomain: cfg.TrustDomain, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		c.auths = append(c.auths, c.tokens)
	}
	c.auths = append(c.auths, &CertAuthenticator{TrustDomain: cfg.TrustDomain, Bundle: c.TrustBundle, Now: cfg.Now})
	c.auths = append(c.auths, cfg.Authenticators...)
	c.metrics.observeRoots(c.TrustBundle())
	c.mu.Lock()
	c.scheduleLocked()
	c.mu.Unlock()
	return c, nil
}

// Close stops the bundle-expiry timer and closes watch channels.
func (c *CA) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	for w := range c.watchers {
		close(w.ch)
		delete(c.watchers, w)
	}
	return nil
}

// TrustDomain returns the CA's SPIFFE trust domain.
func (c *CA) TrustDomain() string { return c.td }

// TrustBundle returns the roots workloads must trust, old and new during a
// root rotation overlap.
func (c *CA) TrustBundle() []*x509.Certificate { return c.signer.TrustBundle() }

// TrustBundlePEM returns TrustBundle as concatenated PEM (root-cert.pem).
func (c *CA) TrustBundlePEM() []byte { return EncodeCerts(c.TrustBundle()) }

// CertPool returns TrustBundle as a pool for tls.Config.
func (c *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range c.TrustBundle() {
		p.AddCert(r)
	}
	return p
}

// Tokens returns the bootstrap token issuer, or nil when Config.KV was nil.
func (c *CA) Tokens() *Tokens { return c.tokens }

// IssueToken mints a bootstrap token (see Tokens.Issue).
func (c *CA) IssueToken(spec TokenSpec) (string, error) {
	if c.tokens == nil {
		return "", errors.New("ca: bootstrap tokens need a KV store (Config.KV)")
	}
	tok, _, err := c.tokens.Issue(spec)
	return tok, err
}

// ErrRotationUnsupported is returned by RotateRoot/RetireRoot when the
// signer's roots are managed outside Weft (plugged-in cacerts).
var ErrRotationUnsupported = errors.New("ca: the signer does not support root rotation")

// RotateRoot makes the signer generate a new root. New leaves are signed by
// it at once; the old root stays in the bundle until the last leaf it
// signed has expired, or until RetireRoot. Watchers get the new bundle.
func (c *CA) RotateRoot(ctx context.Context) error {
	r, ok := c.signer.(RootRotator)
	if !ok {
		return ErrRotationUnsupported
	}
	if err := r.RotateRoot(ctx); err != nil {
		return fmt.Errorf("ca: rotate root: %w", err)
	}
	c.log.Info("root rotated; old root stays in the trust bundle during the overlap", "bundle_size", len(c.TrustBundle()))
	c.bundleChanged(false)
	return nil
}

// RetireRoot drops every root but the active one from the bundle now.
// weftd's own serving certificate is reissued from the active root.
func (c *CA) RetireRoot(ctx context.Context) error {
	r, ok := c.signer.(RootRotator)
	if !ok {
		return ErrRotationUnsupported
	}
	if err := r.RetireRoot(ctx); err != nil {
		return fmt.Errorf("ca: retire root: %w", err)
	}
	c.log.Info("old roots retired", "bundle_size", len(c.TrustBundle()))
	c.bundleChanged(true)
	return nil
}

// WatchBundle returns a channel that receives the trust bundle now and after
// every change (rotation, retirement, expiry of an old root). Only the
// latest bundle is kept for a slow reader. cancel stops the watch.
func (c *CA) WatchBundle() (bundles <-chan []*x509.Certificate, cancel func()) {
	w := &bundleWatcher{ch: make(chan []*x509.Certificate, 1)}
	w.ch <- c.TrustBundle()
	c.mu.Lock()
	if c.closed {
		close(w.ch)
	} else {
		c.watchers[w] = struct{}{}
	}
	c.mu.Unlock()
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.watchers[w]; ok {
			delete(c.watchers, w)
			close(w.ch)
		}
	}
}

type bundleWatcher struct{ ch chan []*x509.Certificate }

func (c *CA) bundleChanged(retired bool) {
	bundle := c.TrustBundle()
	c.metrics.observeRoots(bundle)
	c.mu.Lock()
	defer c.mu.Unlock()
	if retired {
		c.rootGen++
	}
	for w := range c.watchers {
		select { // keep only the newest bundle for a slow reader
		case <-w.ch:
		default:
		}
		w.ch <- bundle
	}
	c.scheduleLocked()
}

// scheduleLocked arms a timer for the moment an old root leaves the bundle
// on its own, so watchers hear about it without anyone calling RetireRoot.
func (c *CA) scheduleLocked() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	r, ok := c.signer.(RootRotator)
	if !ok || c.closed {
		return
	}
	at := r.NextRetirement()
	if at.IsZero() {
		return
	}
	// Real timer on purpose: with an injected clock tests call TrustBundle
	// directly; the timer only serves live watchers.
	d := at.Sub(c.now()) + time.Second
	c.timer = time.AfterFunc(max(d, 0), func() { c.bundleChanged(false) })
}

// EncodeCerts PEM-encodes certs in order.
func EncodeCerts(certs []*x509.Certificate) []byte { return certpem.Encode(certs) }

// ParseCerts parses every CERTIFICATE block in data.
func ParseCerts(data []byte) ([]*x509.Certificate, error) { return certpem.Parse(data) }
