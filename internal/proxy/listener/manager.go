// Package listener binds and serves weft-proxy's sockets: the explicit HTTP
// proxy listener (absolute-form requests and CONNECT), and in transparent
// mode every LDS listener with bind_to_port (virtualOutbound 15001 with
// original-destination dispatch, virtualInbound 15006). Accepted connections
// go through the current runtime snapshot's filter chains to the HTTP/1.1
// engine (HCM) or the TCP forwarder (tcp_proxy).
//
// Sockets of listeners whose config did not change are kept across LDS
// updates (runtime.ListenerChanged); snapshot swaps are atomic and each
// request reads one snapshot, so in-flight requests finish on theirs.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/accesslog"
	"github.com/weftmesh/weft/internal/proxy/capture"
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/mirror"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tracing"
)

// Mode is how traffic reaches the proxy.
type Mode int

// Modes.
const (
	// Explicit: applications use the proxy as an HTTP proxy (HTTP_PROXY).
	Explicit Mode = iota
	// Transparent: iptables redirects traffic to 15001/15006.
	Transparent
)

func (m Mode) String() string {
	if m == Transparent {
		return "transparent"
	}
	return "explicit"
}

// ExplicitListenerName names the explicit HTTP proxy listener in Addrs.
const ExplicitListenerName = "http_proxy"

// Config configures a Manager.
type Config struct {
	Holder *runtime.Holder
	Mode   Mode
	// BindAddr is the address every listener binds (xDS listener addresses
	// keep only their port), so several proxies can share a host.
	BindAddr netip.Addr
	// HTTPProxyPort is the explicit-mode HTTP proxy port (0: kernel-chosen).
	HTTPProxyPort uint16
	// PortOverrides maps xDS listener ports to the ports actually bound
	// (tests bind 15001/15006 elsewhere; 0 means kernel-chosen).
	PortOverrides map[uint16]uint16
	Metrics       *telemetry.Metrics
	Logger        *slog.Logger
	// H1 carries engine knobs; Router, Observer and Pool are set per server.
	H1 h1.Config
	// AccessLog and Tracer are handed to every router (nil: off).
	AccessLog *accesslog.Logger
	Tracer    *tracing.Tracer
	// InboundTLS terminates mesh mTLS on chains with a DownstreamTlsContext
	// (tls_inbound.go); nil refuses connections that land on such a chain.
	InboundTLS *InboundTLS
	// UpstreamDial establishes upstream connections of the HTTP pools and
	// TCP relays: tlsKey is the endpoint's upstream TLS context
	// (upstream.UpstreamTLS.Key, "" for plain TCP). Nil dials plain TCP
	// (and connections that need TLS fail).
	UpstreamDial func(ctx context.Context, network, addr, tlsKey string) (net.Conn, error)
	// UpstreamPeer is router.Config.UpstreamPeer (outbound telemetry).
	UpstreamPeer func(addr, tlsKey string) string
	// ListenerFiltersTimeout bounds how long the tls_inspector and
	// http_inspector wait for a client's first bytes before the connection
	// is matched without them (Envoy's listener_filters_timeout with
	// continue_on_listener_filters_timeout) [5s].
	ListenerFiltersTimeout time.Duration
	// DrainTime is how long a TCP connection whose filter chain was
	// changed or removed by an update may go on before it is closed
	// (HTTP connections close after their current response) [5s].
	DrainTime time.Duration
}

// Manager owns the proxy's listening sockets and the servers behind them.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	pool *h1.Pool
	// origDst is capture.OriginalDst; tests replace it to simulate a
	// redirect without iptables.
	origDst func(net.Conn) (netip.AddrPort, error)

	mu       sync.Mutex
	bound    map[string]*bound
	servers  map[string]*h1.Server
	h2s      map[string]*h2.Server // same keys and routers as servers
	h2pool   *h2.Pool
	h1pool   *h2.HTTP1Pool // HTTP/2 clients to HTTP/1.1 upstreams
	mirror   *mirror.Sender
	tcpConns map[net.Conn]struct{}
	// chainConns are the connections served by a filter chain (drain.go).
	chainConns map[*chainConn]struct{}
	closed     bool
	draining   atomic.Bool
	wg         sync.WaitGroup // accept loops and connection handlers
}

type bound struct {
	name string
	hash uint64
	ln   net.Listener
}

// New returns a Manager; Start binds the static listeners.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.BindAddr.IsValid() {
		cfg.BindAddr = netip.IPv4Unspecified()
	}
	mir := mirror.New(mirror.Config{Logger: cfg.Logger, Dial: cfg.UpstreamDial})
	if cfg.Metrics != nil {
		for _, c := range mir.Collectors() {
			_ = cfg.Metrics.Registry().Register(c) // a second Manager on one registry (tests) keeps the first's
		}
	}
	return &Manager{
		cfg:      cfg,
		mirror:   mir,
		log:      cfg.Logger.With("component", "listener"),
		pool:     h1.NewPool(h1.PoolConfig{Dial: cfg.UpstreamDial}),
		origDst:  capture.OriginalDst,
		bound:    map[string]*bound{},
		servers:  map[string]*h1.Server{},
		h2s:      map[string]*h2.Server{},
		h2pool:   h2.NewPool(h2.PoolConfig{Dial: cfg.UpstreamDial}),
		h1pool:   h2.NewHTTP1Pool(cfg.UpstreamDial),
		tcpConns: map[net.Conn]struct{}{},

		chainConns: map[*chainConn]struct{}{},
	}
}

// Start binds the explicit HTTP proxy listener (explicit mode).
func (m *Manager) Start() error {
	if m.cfg.Mode != Explicit {
		return nil
	}
	addr := netip.AddrPortFrom(m.cfg.BindAddr, m.cfg.HTTPProxyPort)
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("listener: bind http proxy %s: %w", addr, err)
	}
	m.mu.Lock()
	m.bound[ExplicitListenerName] = &bound{name: ExplicitListenerName, ln: ln}
	m.mu.Unlock()
	m.log.Info("listening", "listener", ExplicitListenerName, "addr", ln.Addr().String())
	m.wg.Add(1)
	go m.acceptLoop(ln, m.serveExplicit)
	return nil
}

// Addrs returns the bound address of every listener by name.
func (m *Manager) Addrs() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.bound))
	for n, b := range m.bound {
		out[n] = b.ln.Addr().String()
	}
	return out
}

// Update reconciles the bound sockets with snapshot s (transparent mode):
// listeners with bind_to_port get a socket; unchanged ones keep theirs.
// In every mode, connections whose filter chain s changed or removed are
// drained (drain.go).
func (m *Manager) Update(s *runtime.Snapshot) error {
	m.drainChangedChains(s)
	if m.cfg.Mode != Transparent {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.draining.Load() {
		return nil
	}
	want := map[string]*runtime.Listener{}
	for _, name := range s.Listeners.Names() {
		if l := s.Listener(name); l != nil && l.BindToPort && l.Address.IsValid() {
			want[name] = l
		}
	}
	var errs []error
	for name, b := range m.bound {
		if name == ExplicitListenerName {
			continue
		}
		if l := want[name]; l == nil || l.Hash != b.hash && listenerAddrChanged(b, l, m) {
			b.ln.Close()
			delete(m.bound, name)
			m.log.Info("listener removed", "listener", name)
		} else {
			b.hash = l.Hash // same socket; new filter chains are read per connection
		}
	}
	for name, l := range want {
		if m.bound[name] != nil {
			continue
		}
		port := l.Address.Port()
		if p, ok := m.cfg.PortOverrides[port]; ok {
			port = p
		}
		addr := netip.AddrPortFrom(m.cfg.BindAddr, port)
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("listener: bind %s on %s: %w", name, addr, err))
			continue
		}
		m.bound[name] = &bound{name: name, hash: l.Hash, ln: ln}
		m.log.Info("listening", "listener", name, "addr", ln.Addr().String())
		name := name
		m.wg.Add(1)
		go m.acceptLoop(ln, func(c net.Conn) { m.serveCaptured(name, c) })
	}
	return errors.Join(errs...)
}

// listenerAddrChanged: a socket is replaced only when the port it serves moved.
func listenerAddrChanged(b *bound, l *runtime.Listener, m *Manager) bool {
	port := l.Address.Port()
	if p, ok := m.cfg.PortOverrides[port]; ok {
		if p == 0 {
			return false
		}
		port = p
	}
	ta, ok := b.ln.Addr().(*net.TCPAddr)
	return !ok || ta.Port != int(port)
}

func (m *Manager) acceptLoop(ln net.Listener, handle func(net.Conn)) {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return // closed
		}
		backoff = 0
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			handle(c)
		}()
	}
}

// server returns the h1 server for key, creating it with src on first use.
func (m *Manager) server(key string, rep telemetry.Reporter, src func() router.TableSource) *h1.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.servers[key]; s != nil {
		return s
	}
	if m.closed {
		return nil
	}
	rt := router.New(router.Config{Holder: m.cfg.Holder, Source: src(), Metrics: m.cfg.Metrics, Reporter: rep, UpstreamPeer: m.cfg.UpstreamPeer,
		Logger: m.cfg.Logger, AccessLog: m.cfg.AccessLog, Tracer: m.cfg.Tracer})
	cfg := m.cfg.H1
	cfg.Router, cfg.Observer, cfg.Pool, cfg.Logger, cfg.Mirrorer, cfg.H2Upstream = rt, rt, m.pool, m.cfg.Logger, m.mirror, m.h2pool
	if key == ExplicitListenerName {
		cfg.TunnelHandler = m.tunnel
	}
	s, err := h1.NewServer(cfg)
	if err != nil {
		m.log.Error("h1 server", "err", err)
		return nil
	}
	m.servers[key] = s
	m.h2s[key] = h2.NewServer(h2.Config{Router: rt.H2(), Observer: rt.H2(), Pool: m.h2pool, HTTP1: m.h1pool, Logger: m.cfg.Logger, Mirrorer: m.mirror})
	return s
}

// serveHTTP serves c with the HTTP server for key; cc, when not nil, is
// the filter chain c was dispatched with, whose change drains c.
func (m *Manager) serveHTTP(c net.Conn, key string, rep telemetry.Reporter, src func() router.TableSource, cc *chainConn) {
	s := m.server(key, rep, src)
	if s == nil {
		c.Close()
		return
	}
	if isH2(c) {
		m.mu.Lock()
		hs := m.h2s[key]
		m.mu.Unlock()
		if cc == nil {
			hs.ServeConn(c)
			return
		}
		cc.onDrain(func() { hs.DrainConn(c) })
		hs.ServeConnDraining(c, &cc.flag)
		return
	}
	if cc == nil {
		s.ServeConn(c)
		return
	}
	cc.onDrain(func() { s.DrainConn(c) })
	s.ServeConnDraining(c, &cc.flag)
}

// forwardChainTCP relays a TCP connection dispatched by a chain; if the
// chain changes, the connection is closed after the drain time.
func (m *Manager) forwardChainTCP(c net.Conn, cc *chainConn, relay func()) {
	var timer *time.Timer
	var mu sync.Mutex
	cc.onDrain(func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(m.chainDrainTime(), func() { c.Close() })
	})
	relay()
	mu.Lock()
	if timer != nil {
		timer.Stop()
	}
	mu.Unlock()
}

// serveExplicit handles one connection on the explicit HTTP proxy listener;
// h1 hands CONNECT requests (even after plain ones on a keep-alive
// connection) to m.tunnel.
func (m *Manager) serveExplicit(c net.Conn) {
	self := c.LocalAddr().String()
	m.serveHTTP(c, ExplicitListenerName, telemetry.Source, func() router.TableSource { return hostPortSource{self: self} }, nil)
}

// serveCaptured dispatches a connection accepted on an LDS listener through
// its filter chains (original destination for use_original_dst listeners).
func (m *Manager) serveCaptured(name string, c net.Conn) {
	var local netip.AddrPort
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local = ta.AddrPort()
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	dst, err := m.origDst(c)
	if err != nil {
		dst = local
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if dst == local {
		// Not redirected: addressed to the capture port itself. Passing it
		// through would connect the proxy to itself in a loop.
		m.log.Debug("connection to a capture port without redirection; closing", "listener", name, "from", c.RemoteAddr().String())
		c.Close()
		return
	}
	snap := m.cfg.Holder.Load()
	l := snap.Listener(name)
	if l == nil {
		c.Close()
		return
	}
	inbound := name == "virtualInbound"
	if l.UseOriginalDst && !inbound {
		if t := snap.OutboundListenerFor(dst.Addr(), dst.Port()); t != nil {
			l = t
		}
	}
	ci := runtime.ConnInfo{DstIP: dst.Addr(), DstPort: dst.Port(), TransportProtocol: "raw_buffer"}
	var fc *runtime.FilterChain
	c, ci, fc = m.selectChain(c, l, ci) // tls_inspector + mTLS termination (tls_inbound.go)
	if fc == nil {
		m.log.Debug("no filter chain", "listener", l.Name, "dst", dst.String())
		c.Close()
		return
	}
	rep := telemetry.Source
	if inbound {
		rep = telemetry.Destination
	}
	cc := m.trackChain(l, fc)
	defer m.untrackChain(cc)
	switch {
	case fc.HTTP != nil && (fc.HTTP.RouteTable != nil || inbound || fc.HTTP.HasAuth()):
		lname := l.Name
		// One server per chain: its chainSource re-resolves the chain
		// from ci, which must stand for this chain (mTLS, plaintext and
		// sniffed HTTP chains of one port differ).
		key := "chain|" + lname + "|" + dst.String() + "|" + fc.Name
		m.serveHTTP(c, key, rep, func() router.TableSource {
			return &chainSource{listener: lname, ci: ci, orig: dst.String()}
		}, cc)
	case fc.HTTP != nil:
		rds, port := fc.HTTP.RouteConfigName, itoa(dst.Port())
		m.serveHTTP(c, "rds|"+rds+"|"+port, rep, func() router.TableSource { return rdsSource{name: rds, port: port} }, cc)
	case fc.TCP != nil:
		if !m.tcpAllowed(c, fc, dst) {
			c.Close()
			return
		}
		m.forwardChainTCP(c, cc, func() {
			m.forwardTCP(c, snap, fc.TCP.PickCluster(rand.Uint32()), fc.TCP.IdleTimeout, dst.String(), rep)
		})
	default:
		c.Close()
	}
}

// Drain stops accepting on every listener; established connections keep
// being served.
func (m *Manager) Drain() {
	m.draining.Store(true)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.bound {
		b.ln.Close()
	}
}

// Draining reports whether Drain was called.
func (m *Manager) Draining() bool { return m.draining.Load() }

// Shutdown drains, waits for in-flight HTTP requests (bounded by ctx), then
// closes every remaining connection.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.Drain()
	m.mu.Lock()
	m.closed = true
	servers := make([]*h1.Server, 0, len(m.servers))
	for _, s := range m.servers {
		servers = append(servers, s)
	}
	h2s := make([]*h2.Server, 0, len(m.h2s))
	for _, s := range m.h2s {
		h2s = append(h2s, s)
	}
	m.mu.Unlock()
	for _, s := range h2s {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Shutdown(ctx); err != nil {
				s.Close()
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.mirror.Close()
	m.h1pool.Close()
	// TCP connections have no request boundary: they get the drain time,
	// then close.
	m.waitTCP(ctx)
	m.mu.Lock()
	for c := range m.tcpConns {
		c.Close()
	}
	m.mu.Unlock()
	m.pool.Close()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		errs = append(errs, errors.New("listener: handlers still running after close"))
	}
	return errors.Join(errs...)
}

func (m *Manager) waitTCP(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		m.mu.Lock()
		n := len(m.tcpConns)
		m.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
