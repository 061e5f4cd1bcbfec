// Package tlsorigin originates upstream TLS for weft-proxy: it turns a
// cluster's compiled UpstreamTlsContext (upstream.UpstreamTLS) and the
// workload identity into a *tls.Config, and dials with it. The client
// certificate and the mesh trust bundle are read from the certificate
// manager on every handshake, so a rotated certificate or root applies to
// the next connection while established ones keep running; the server's
// certificate is verified here (chain, SPIFFE ID, SAN matchers, pins, CRLs)
// because Go's hostname check does not apply to SPIFFE IDs.
//
// Configs are built once per distinct context (Sync, on every snapshot) and
// shared by every connection that uses it; each endpoint has its own
// resumption session. Every failure to establish the session — including a
// peer that refuses our certificate after a TLS 1.3 handshake, which shows
// up on the first read — matches h1.ErrConnectFailure, so the engines answer
// 503 (UF) and retries and outlier detection treat it as a connect failure.
package tlsorigin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// Identity is the workload identity the proxy originates mesh mTLS with
// (*caclient.Rotator implements it).
type Identity interface {
	// GetClientCertificate is the tls.Config callback presenting the
	// workload certificate.
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Certificate is the current workload certificate (nil before the first).
	Certificate() *tls.Certificate
	// Roots is the current mesh trust bundle; a new pool after each change.
	Roots() *x509.CertPool
	// RefreshRoots fetches the CA's current bundle (rate-limited).
	RefreshRoots(ctx context.Context) error
}

// Config configures an Origin.
type Config struct {
	// Identity is the workload identity; nil when the proxy has none (then
	// contexts that need it fail, except opportunistic ones, which dial
	// plaintext: see upstream.UpstreamTLS.Opportunistic).
	Identity Identity
	// TrustDomain is the only trust domain mesh peers may have their
	// SPIFFE ID in [cluster.local].
	TrustDomain string
	// Registerer, when set, gets weft_upstream_tls_handshakes_total.
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// Tests: file reads, the system pool, the clock and the TCP dialer.
	ReadFile    func(string) ([]byte, error)
	SystemRoots func() (*x509.CertPool, error)
	Now         func() time.Time
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Origin dials upstream TLS for the contexts of the current snapshot. It
// is safe for concurrent use.
type Origin struct {
	cfg   Config
	log   *slog.Logger
	stats *prometheus.CounterVec

	mu      sync.RWMutex
	entries map[string]*entry
	gen     uint64

	peers peerTable
}

// entry is one built context: its shared tls.Config, or why it cannot be used.
type entry struct {
	desc     *upstream.UpstreamTLS
	cfg      *tls.Config // cloned per connection; nil when err is set or plain
	plain    bool        // opportunistic without identity: dial plaintext
	err      error
	v        *verifier
	sessions *sessionCache // nil: resumption off
	seen     uint64        // last Sync generation that referenced it
}

// Handshake outcomes (the result label of weft_upstream_tls_handshakes_total).
const (
	resultOK           = "ok"
	resultResumed      = "resumed"
	resultVerifyFailed = "verify_failed" // we refused the server's certificate
	resultError        = "error"         // the handshake failed otherwise
	resultRejected     = "rejected"      // the server refused our certificate
)

// New returns an Origin; call Sync with the snapshot's contexts before use.
func New(cfg Config) *Origin {
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "cluster.local"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadFile == nil {
		cfg.ReadFile = os.ReadFile
	}
	if cfg.SystemRoots == nil {
		cfg.SystemRoots = x509.SystemCertPool
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{}).DialContext
	}
	o := &Origin{cfg: cfg, log: cfg.Logger.With("component", "tlsorigin"), entries: map[string]*entry{}}
	o.stats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_upstream_tls_handshakes_total",
		Help: "Upstream TLS handshakes by result: ok, resumed, verify_failed (the server's certificate was refused), rejected (the server refused ours), error.",
	}, []string{"result"})
	for _, r := range []string{resultOK, resultResumed, resultVerifyFailed, resultError, resultRejected} {
		o.stats.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(o.stats)
	}
	return o
}

// Sync makes contexts dialable: configs are built for new ones (reading
// any files they name), kept for known ones, and dropped for contexts that
// neither this nor the previous Sync referenced (requests routed on the
// previous snapshot may still dial them). Call it before the snapshot that
// carries the contexts is published.
func (o *Origin) Sync(contexts []*upstream.UpstreamTLS) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	for _, d := range contexts {
		if d == nil {
			continue
		}
		if e := o.entries[d.Key]; e != nil {
			e.seen = o.gen
			continue
		}
		e := o.build(d)
		e.seen = o.gen
		o.entries[d.Key] = e
		if e.err != nil {
			o.log.Warn("upstream TLS context cannot be used; connections with it fail", "key", d.Key, "sni", d.SNI, "err", e.err)
		}
	}
	for k, e := range o.entries {
		if e.seen+1 < o.gen {
			delete(o.entries, k)
		}
	}
	o.peers.retain(func(key string) bool { return o.entries[key] != nil })
}

// Config returns the shared client config of a context Sync has seen (nil
// when it cannot be used or dials plaintext), for tests and benchmarks.
func (o *Origin) Config(key string) (*tls.Config, error) {
	e := o.lookup(key)
	if e == nil {
		return nil, fmt.Errorf("tlsorigin: unknown TLS context %s", key)
	}
	return e.cfg, e.err
}

func (o *Origin) lookup(key string) *entry {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.entries[key]
}

// build compiles d into an entry (files are read here, once).
func (o *Origin) build(d *upstream.UpstreamTLS) *entry {
	e := &entry{desc: d}
	id := o.cfg.Identity
	if d.Unavailable != "" {
		e.err = errors.New("tlsorigin: " + d.Unavailable)
		return e
	}
	needsIdentity := d.Cert.Kind == upstream.CertWorkload || d.Validation.Trust == upstream.TrustMesh
	if needsIdentity && id == nil {
		if d.Opportunistic() {
			e.plain = true
			return e
		}
		e.err = errors.New("tlsorigin: the cluster requires mesh mTLS (ISTIO_MUTUAL) but the proxy has no workload identity (start it with --root-cert and a token)")
		return e
	}
	v, err := o.newVerifier(d)
	if err != nil {
		e.err = err
		return e
	}
	e.v = v
	cfg := &tls.Config{
		ServerName: d.SNI,
		NextProtos: d.ALPN,
		MinVersion: d.MinVersion,
		MaxVersion: d.MaxVersion,
		// Verification is VerifyConnection's: the chain against the trust
		// source read per handshake, then SPIFFE ID / SAN matchers, which
		// Go's hostname check cannot express.
		InsecureSkipVerify: true,
		VerifyConnection:   v.verify,
	}
	if d.AllowRenegotiation {
		cfg.Renegotiation = tls.RenegotiateFreelyAsClient
	}
	switch d.Cert.Kind {
	case upstream.CertWorkload:
		cfg.GetClientCertificate = id.GetClientCertificate
	case upstream.CertFiles:
		chain, err := o.read(d.Cert.Chain)
		if err != nil {
			e.err = fmt.Errorf("tlsorigin: client certificate %s: %w", d.Cert.Chain, err)
			return e
		}
		key, err := o.read(d.Cert.Key)
		if err != nil {
			e.err = fmt.Errorf("tlsorigin: client key %s: %w", d.Cert.Key, err)
			return e
		}
		c, err := tls.X509KeyPair(chain, key)
		if err != nil {
			e.err = fmt.Errorf("tlsorigin: client certificate %s: %w", d.Cert.Chain, err)
			return e
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	if d.MaxSessionKeys > 0 {
		var current func() *tls.Certificate
		if d.Cert.Kind == upstream.CertWorkload {
			current = id.Certificate
		}
		e.sessions = newSessionCache(current)
	}
	e.cfg = cfg
	return e
}

func (o *Origin) read(d upstream.DataSource) ([]byte, error) {
	if d.Path == "" {
		return d.Inline, nil
	}
	return o.cfg.ReadFile(d.Path)
}

// Dial connects to addr and completes the TLS handshake of context key
// ("" dials plain TCP). The returned *Conn reports, on its first read, a
// server that refused our certificate as a connect failure.
func (o *Origin) Dial(ctx context.Context, network, addr, key string) (net.Conn, error) {
	if key == "" {
		return o.cfg.DialContext(ctx, network, addr)
	}
	e := o.lookup(key)
	switch {
	case e == nil:
		return nil, fmt.Errorf("tlsorigin: unknown TLS context %s (config changed while dialling)", key)
	case e.err != nil:
		return nil, e.err
	case e.plain:
		return o.cfg.DialContext(ctx, network, addr)
	}
	refreshed := false
	for attempt := 0; ; attempt++ {
		raw, err := o.cfg.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		var roots *x509.CertPool
		if o.cfg.Identity != nil {
			roots = o.cfg.Identity.Roots()
		}
		c, err := o.handshake(ctx, raw, e, addr)
		if err == nil {
			return c, nil
		}
		raw.Close()
		var ve *verifyError
		if !errors.As(err, &ve) || attempt >= 2 {
			return nil, err
		}
		switch {
		case ve.resumed:
			// A resumed session carries the certificates of its first
			// handshake, which may have expired or lost their root since:
			// forget it and do a full handshake.
			e.sessions.forget(addr)
			continue
		case ve.unknownAuthority && e.desc.Validation.Trust == upstream.TrustMesh && !refreshed:
			// During a root rotation the peer may have renewed before we
			// learned the new root: fetch the bundle and try once more.
			refreshed = true
			if rerr := o.cfg.Identity.RefreshRoots(ctx); rerr == nil && o.cfg.Identity.Roots() != roots {
				continue
			}
		}
		return nil, err
	}
}

// handshake runs the client handshake on raw for entry e.
func (o *Origin) handshake(ctx context.Context, raw net.Conn, e *entry, addr string) (*Conn, error) {
	cfg := e.cfg
	if e.sessions != nil {
		cfg = cfg.Clone()
		cfg.ClientSessionCache = e.sessions.forAddr(addr)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		var ve *verifyError
		if errors.As(err, &ve) {
			o.stats.WithLabelValues(resultVerifyFailed).Inc()
		} else {
			o.stats.WithLabelValues(resultError).Inc()
		}
		return nil, &handshakeError{addr: addr, sni: cfg.ServerName, err: err}
	}
	cs := tc.ConnectionState()
	if cs.DidResume {
		o.stats.WithLabelValues(resultResumed).Inc()
	} else {
		o.stats.WithLabelValues(resultOK).Inc()
	}
	c := &Conn{Conn: tc, o: o}
	if e.desc.Validation.Trust == upstream.TrustMesh && len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].URIs) == 1 {
		c.principal = cs.PeerCertificates[0].URIs[0].String()
		o.peers.set(addr, e.desc.Key, c.principal)
	}
	return c, nil
}

// Peer returns the SPIFFE ID the mesh peer at addr presented on the last
// handshake with context key ("" when unknown or not mesh mTLS): the
// destination_principal of outbound telemetry. It does not allocate.
func (o *Origin) Peer(addr, key string) string { return o.peers.get(addr, key) }

// handshakeError is a failed handshake.
type handshakeError struct {
	addr, sni string
	err       error
}

func (e *handshakeError) Error() string {
	s := "tlsorigin: TLS handshake with " + e.addr
	if e.sni != "" {
		s += " (SNI " + e.sni + ")"
	}
	return s + ": " + e.err.Error()
}

func (e *handshakeError) Unwrap() error { return e.err }

// Conn is an upstream TLS connection. A server that refuses our
// certificate after a TLS 1.3 handshake (the client finishes first) sends
// its alert instead of the first response: Read reports that as a
// connect failure, since the server never took the request.
type Conn struct {
	*tls.Conn
	o         *Origin
	principal string
	gotData   atomic.Bool
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.gotData.Load() {
		c.gotData.Store(true)
	}
	if err != nil && !c.gotData.Load() {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "remote error" {
			c.o.stats.WithLabelValues(resultRejected).Inc()
			return n, &rejectedError{err: err}
		}
	}
	return n, err
}

// PeerPrincipal is the mesh peer's SPIFFE ID ("" without mesh mTLS).
func (c *Conn) PeerPrincipal() string { return c.principal }

// rejectedError: the server aborted the handshake after we sent our
// certificate. It is a connect failure for the engines.
type rejectedError struct{ err error }

func (e *rejectedError) Error() string {
	return "tlsorigin: the upstream refused the TLS handshake: " + e.err.Error()
}

func (e *rejectedError) Unwrap() []error { return []error{h1.ErrConnectFailure, e.err} }
