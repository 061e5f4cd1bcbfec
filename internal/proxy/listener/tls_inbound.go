package listener

// Inbound mesh mTLS termination (PeerAuthentication) and, for explicit mode,
// the sockets that serve virtualInbound's ports without iptables capture.

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// InboundTLS is what the listener needs to terminate mesh mTLS on filter
// chains that carry a DownstreamTlsContext. Both callbacks are read on every
// handshake, so a rotated certificate or trust bundle applies to the next
// connection while established ones keep running.
type InboundTLS struct {
	// GetCertificate returns the workload certificate (SDS "default"),
	// typically caclient.Rotator.GetCertificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Roots returns the mesh trust bundle (SDS "ROOTCA"), typically
	// caclient.Rotator.Roots.
	Roots func() *x509.CertPool
	// TrustDomain is the only trust domain peers may have a SPIFFE ID in.
	TrustDomain string

	tickets ticketKeys
}

// ticketKeys are the session ticket keys of every inbound mTLS handshake.
// Each connection gets its own tls.Config, whose automatic keys would be
// its own too: no ticket could ever be resumed. The current key encrypts,
// the previous one still decrypts; they rotate hourly. (On resumption Go
// re-checks the client certificate's expiry and chain against the current
// bundle.)
type ticketKeys struct {
	mu      sync.Mutex
	keys    [][32]byte
	created time.Time
}

const ticketKeyLifetime = time.Hour

func (t *ticketKeys) current() [][32]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) == 0 || time.Since(t.created) > ticketKeyLifetime {
		var k [32]byte
		if _, err := crand.Read(k[:]); err != nil {
			return nil // Go then uses its own per-config key
		}
		t.keys = append([][32]byte{k}, t.keys[:min(len(t.keys), 1)]...)
		t.created = time.Now()
	}
	return t.keys
}

const (
	// handshakeTimeout bounds the TLS handshake of an inbound connection.
	handshakeTimeout = 10 * time.Second
	// inspectTimeout bounds how long the tls_inspector waits for a first
	// byte (and the http_inspector for a request line); a server-first
	// protocol is then treated as plaintext without an application
	// protocol, as Envoy's continue_on_listener_filters_timeout does.
	// Config.ListenerFiltersTimeout overrides it.
	inspectTimeout = 5 * time.Second
	// tlsHandshakeRecord is the first byte of every TLS connection.
	tlsHandshakeRecord = 0x16
)

// PeerConn is an inbound connection on which the proxy terminated mesh
// mTLS. Telemetry and authorization read the caller's identity from it.
type PeerConn struct {
	*tls.Conn
	id        spiffe.ID
	principal string // id.String(), computed once per connection
	sni       string
	pending   []byte // read while sniffing the protocol; Read returns it first
	sniffed   bool   // sniffHTTP ran; appProto is its answer
	appProto  string
}

var _ router.PeerIdentity = (*PeerConn)(nil)

// PeerID is the verified SPIFFE ID of the caller.
func (c *PeerConn) PeerID() spiffe.ID { return c.id }

// PeerPrincipal is the caller's SPIFFE ID as a URI string
// ("spiffe://td/ns/x/sa/y"), what RBAC principals match.
func (c *PeerConn) PeerPrincipal() string { return c.principal }

// ServerName is the SNI the caller sent in its ClientHello.
func (c *PeerConn) ServerName() string { return c.sni }

// Read returns bytes consumed by protocol sniffing first.
func (c *PeerConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// startsWithH2Preface reads up to the HTTP/2 preface from the decrypted
// stream (bounded by sniffTimeout; an HTTP/1.1 request differs at its
// first byte) and keeps what it read for Read.
func (c *PeerConn) startsWithH2Preface() bool {
	if c.sniffed {
		return c.appProto == protoH2C
	}
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, h2.PrefaceLen)
	for len(buf) < h2.PrefaceLen {
		n, err := c.Conn.Read(buf[len(buf):h2.PrefaceLen])
		buf = buf[:len(buf)+n]
		if err != nil || !prefixOfPreface(buf) {
			break
		}
	}
	c.pending = append(c.pending, buf...)
	return len(buf) == h2.PrefaceLen && h2.IsPreface(buf)
}

// ConnectionSecurityPolicy is Istio's connection_security_policy label value.
func (c *PeerConn) ConnectionSecurityPolicy() string { return "mutual_tls" }

// selectChain picks l's filter chain for a connection and, when that chain
// terminates TLS, completes the handshake and returns the decrypted
// connection (a *PeerConn). Listeners with a tls_inspector and TLS chains
// have their connection's first byte peeked (0x16: "tls", else
// "raw_buffer") before matching, as Envoy's tls_inspector does; with an
// http_inspector, plaintext connections are sniffed for HTTP
// (http_inspect.go). A nil chain means the connection was refused and is
// closed.
//
// Inside mesh mTLS on a listener with an http_inspector, the decrypted
// stream is sniffed too: weft-proxy clients announce only "istio", so a
// connection that landed on a TCP chain but speaks HTTP moves to the chain
// an Istio client announcing "istio-http/1.1" (or "istio-h2") would have
// matched, provided that chain terminates TLS with the same context.
func (m *Manager) selectChain(c net.Conn, l *runtime.Listener, ci runtime.ConnInfo) (net.Conn, runtime.ConnInfo, *runtime.FilterChain) {
	deadline := time.Now().Add(m.inspectTimeout())
	if hasTLSChain(l) && slices.Contains(l.ListenerFilters, runtime.FilterTLSInspector) && tlsMatters(l, ci) {
		var ok bool
		if c, ci, ok = inspectTLS(c, ci, deadline); !ok {
			c.Close()
			return c, ci, nil
		}
	}
	sniff := slices.Contains(l.ListenerFilters, runtime.FilterHTTPInspect)
	if sniff && ci.TransportProtocol != "tls" && protocolMatters(l, ci, plaintextHTTPALPNs) {
		var ok bool
		if c, ci, ok = inspectHTTP(c, ci, deadline); !ok {
			c.Close()
			return c, ci, nil
		}
	}
	fc := l.FilterChainFor(ci)
	if fc == nil || !fc.TLS {
		return c, ci, fc
	}
	pc, err := m.terminateTLS(c, fc)
	if err != nil {
		m.log.Debug("inbound mTLS handshake refused", "listener", l.Name, "chain", fc.Name, "from", c.RemoteAddr().String(), "err", err)
		c.Close()
		return c, ci, nil
	}
	if sniff && fc.HTTP == nil && protocolMatters(l, ci, meshHTTPALPNs) {
		if proto := pc.sniffHTTP(time.Now().Add(m.inspectTimeout())); proto != "" {
			inner := ci
			inner.ALPN = []string{meshHTTPALPN[proto]}
			if hc := l.FilterChainFor(inner); hc != nil && hc.HTTP != nil && hc.TLS && sameDownstreamTLS(hc.TLSContext, fc.TLSContext) {
				return pc, inner, hc
			}
		}
	}
	return pc, ci, fc
}

// sameDownstreamTLS reports whether a connection verified under a would
// have been accepted under b.
func sameDownstreamTLS(a, b *runtime.DownstreamTLS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.RequireClientCertificate == b.RequireClientCertificate && slices.Equal(a.URISANPrefixes, b.URISANPrefixes)
}

// inspectTimeout is how long listener filters wait for a client's first bytes.
func (m *Manager) inspectTimeout() time.Duration {
	if m.cfg.ListenerFiltersTimeout > 0 {
		return m.cfg.ListenerFiltersTimeout
	}
	return inspectTimeout
}

// tlsMatters reports whether what the tls_inspector finds can change the
// chain of a connection to ci's destination port: some chain that may
// match the port matches on transport protocol, server names or
// application protocols. A server-first protocol on a port whose chains do
// not care is then not held for the inspection timeout.
func tlsMatters(l *runtime.Listener, ci runtime.ConnInfo) bool {
	for _, fc := range l.FilterChains {
		m := &fc.Match
		if m.DestinationPort != 0 && m.DestinationPort != uint32(ci.DstPort) {
			continue
		}
		if m.TransportProtocol != "" || len(m.ServerNames) > 0 || len(m.ApplicationProtocols) > 0 {
			return true
		}
	}
	return false
}

func hasTLSChain(l *runtime.Listener) bool {
	for _, fc := range l.FilterChains {
		if fc.TLS {
			return true
		}
	}
	return l.DefaultChain != nil && l.DefaultChain.TLS
}

// terminateTLS runs the server handshake for a chain's DownstreamTlsContext
// with the workload certificate, requiring (or verifying when given) a
// client certificate chained to the mesh roots whose URI SAN is a SPIFFE ID
// of our trust domain.
func (m *Manager) terminateTLS(c net.Conn, fc *runtime.FilterChain) (*PeerConn, error) {
	ctx := fc.TLSContext
	it := m.cfg.InboundTLS
	if it == nil || it.GetCertificate == nil || it.Roots == nil {
		return nil, errors.New("listener: chain terminates mTLS but the proxy has no workload identity (start it with --root-cert and a token)")
	}
	if ctx == nil {
		ctx = &runtime.DownstreamTLS{RequireClientCertificate: true}
	}
	var peer spiffe.ID
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: it.GetCertificate,
		ClientCAs:      it.Roots(),
		ClientAuth:     tls.VerifyClientCertIfGiven,
		NextProtos:     serverALPN(ctx.ALPN, fc.Match.ApplicationProtocols),
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if ctx.RequireClientCertificate {
					return errors.New("no client certificate")
				}
				return nil
			}
			id, err := peerSPIFFEID(cs.PeerCertificates[0], it.TrustDomain, ctx.URISANPrefixes)
			peer = id
			return err
		},
	}
	if ctx.RequireClientCertificate {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if keys := it.tickets.current(); keys != nil {
		cfg.SetSessionTicketKeys(keys)
	}
	tc := tls.Server(c, cfg)
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	pc := &PeerConn{Conn: tc, id: peer, sni: tc.ConnectionState().ServerName}
	if peer.TrustDomain != "" { // no client certificate (not required): no principal
		pc.principal = peer.String()
	}
	return pc, nil
}

// serverALPN is what the proxy may negotiate: the context's ALPN and the
// mesh protocols the chain matched on ("istio-http/1.1", ...), except h2:
// the HTTP engine speaks HTTP/1.1 only.
func serverALPN(ctxALPN, matched []string) []string {
	out := make([]string, 0, len(ctxALPN)+len(matched))
	for _, p := range slices.Concat(ctxALPN, matched) {
		if p != "h2" && p != "istio-h2" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// peerSPIFFEID returns the caller's identity: exactly one URI SAN, a
// SPIFFE ID in trustDomain, matching one of prefixes when any are given.
func peerSPIFFEID(leaf *x509.Certificate, trustDomain string, prefixes []string) (spiffe.ID, error) {
	if len(leaf.URIs) != 1 {
		return spiffe.ID{}, fmt.Errorf("peer certificate has %d URI SANs, want one SPIFFE ID", len(leaf.URIs))
	}
	id, err := spiffe.FromURL(leaf.URIs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("peer identity: %w", err)
	}
	if trustDomain != "" && id.TrustDomain != trustDomain {
		return spiffe.ID{}, fmt.Errorf("peer %s is not in trust domain %q", id, trustDomain)
	}
	if len(prefixes) > 0 && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(id.String(), p) }) {
		return spiffe.ID{}, fmt.Errorf("peer %s matches no allowed SAN prefix", id)
	}
	return id, nil
}

// maxClientHello bounds how much of a ClientHello the inspector reads.
const maxClientHello = 16 << 10

// inspectTLS is Envoy's tls_inspector: without consuming anything it sets
// ci.TransportProtocol ("tls" when the first byte starts a TLS handshake
// record) and, for TLS, the ClientHello's ALPN list and SNI. A client that
// sends nothing before the deadline is plaintext. ok is false when the
// connection failed.
func inspectTLS(c net.Conn, ci runtime.ConnInfo, deadline time.Time) (net.Conn, runtime.ConnInfo, bool) {
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	p, c := newPeeker(c, deadline)
	b, err := p.peek(1)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return c, ci, true
	case err != nil:
		return c, ci, false
	case b[0] != tlsHandshakeRecord:
		return c, ci, true
	}
	ci.TransportProtocol = "tls"
	if hdr, err := p.peek(5); err == nil {
		n := 5 + (int(hdr[3])<<8 | int(hdr[4]))
		if rec, err := p.peek(min(n, maxClientHello)); err == nil {
			ci.ALPN, ci.ServerName = parseClientHello(rec)
		}
	}
	return c, ci, true
}

// parseClientHello lets crypto/tls parse a ClientHello from raw record
// bytes and returns its ALPN protocols and server name (nil, "" if the
// bytes are not a complete ClientHello).
func parseClientHello(rec []byte) (alpn []string, sni string) {
	errSeen := errors.New("seen")
	srv := tls.Server(&replayConn{r: bytes.NewReader(rec)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			alpn, sni = slices.Clone(h.SupportedProtos), h.ServerName
			return nil, errSeen
		},
	})
	_ = srv.Handshake()
	return alpn, sni
}

// replayConn feeds recorded bytes to crypto/tls and discards its writes.
type replayConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// peeker returns at least n of the connection's first bytes (fewer only
// with an error) without consuming them.
type peeker interface {
	peek(n int) ([]byte, error)
}

// newPeeker peeks with MSG_PEEK where available (unix), which keeps the
// *net.TCPConn intact so the HTTP engine keeps its raw socket I/O;
// elsewhere the connection is wrapped in a buffered reader.
func newPeeker(c net.Conn, deadline time.Time) (peeker, net.Conn) {
	if newSyscallPeeker != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			if p := newSyscallPeeker(tc, deadline); p != nil {
				return p, c
			}
		}
	}
	bc := &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, maxClientHello)}
	return bufPeeker{bc.r}, bc
}

// newSyscallPeeker is set on platforms with MSG_PEEK.
var newSyscallPeeker func(tc *net.TCPConn, deadline time.Time) peeker

type bufPeeker struct{ r *bufio.Reader }

func (b bufPeeker) peek(n int) ([]byte, error) { return b.r.Peek(n) }

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// explicitInboundPrefix names explicit-mode inbound sockets in Addrs.
const explicitInboundPrefix = "virtualInbound:"

// UpdateExplicitInbound gives explicit mode (no iptables) the inbound side:
// one socket on BindAddr for every destination port of virtualInbound's
// filter chains, served as if the connection had been captured to that
// port. Sockets for ports that disappeared are closed. Transparent mode
// ignores it (virtualInbound is bound on 15006 there).
func (m *Manager) UpdateExplicitInbound(s *runtime.Snapshot) error {
	if m.cfg.Mode != Explicit {
		return nil
	}
	want := map[string]uint16{}
	if l := s.Listener("virtualInbound"); l != nil {
		for _, fc := range l.FilterChains {
			if p := fc.Match.DestinationPort; p > 0 && p < 1<<16 {
				want[explicitInboundPrefix+strconv.Itoa(int(p))] = uint16(p)
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.draining.Load() {
		return nil
	}
	for name, b := range m.bound {
		if _, ok := want[name]; strings.HasPrefix(name, explicitInboundPrefix) && !ok {
			b.ln.Close()
			delete(m.bound, name)
			m.log.Info("listener removed", "listener", name)
		}
	}
	var errs []error
	for name, port := range want {
		if m.bound[name] != nil {
			continue
		}
		addr := netip.AddrPortFrom(m.cfg.BindAddr, port)
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("listener: bind inbound %s: %w", addr, err))
			continue
		}
		m.bound[name] = &bound{name: name, ln: ln}
		m.log.Info("listening", "listener", name, "addr", ln.Addr().String())
		m.wg.Add(1)
		go m.acceptLoop(ln, m.serveExplicitInbound)
	}
	return errors.Join(errs...)
}

// serveExplicitInbound serves one connection accepted on an explicit-mode
// inbound socket through virtualInbound, with the socket's own address as
// the destination.
func (m *Manager) serveExplicitInbound(c net.Conn) {
	ta, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		c.Close()
		return
	}
	dst := netip.AddrPortFrom(ta.AddrPort().Addr().Unmap(), ta.AddrPort().Port())
	snap := m.cfg.Holder.Load()
	l := snap.Listener("virtualInbound")
	if l == nil {
		c.Close()
		return
	}
	c, ci, fc := m.selectChain(c, l, runtime.ConnInfo{DstIP: dst.Addr(), DstPort: dst.Port(), TransportProtocol: "raw_buffer"})
	if fc == nil || fc == l.DefaultChain {
		// The default chain passes through to the original destination,
		// which here is this socket: refuse instead of looping.
		c.Close()
		return
	}
	cc := m.trackChain(l, fc)
	defer m.untrackChain(cc)
	switch {
	case fc.HTTP != nil:
		key := "explicit-inbound|" + dst.String() + "|" + fc.Name
		m.serveHTTP(c, key, telemetry.Destination, func() router.TableSource {
			return &chainSource{listener: l.Name, ci: ci}
		}, cc)
	case fc.TCP != nil:
		if !m.tcpAllowed(c, fc, dst) {
			c.Close()
			return
		}
		m.forwardChainTCP(c, cc, func() {
			m.forwardTCP(c, snap, fc.TCP.PickCluster(rand.Uint32()), fc.TCP.IdleTimeout, "", telemetry.Destination)
		})
	default:
		c.Close()
	}
}
