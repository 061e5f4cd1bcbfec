package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for [Config]; the port is Istio's.
const (
	DefaultAddr        = "127.0.0.1:15053"
	DefaultResolvConf  = "/etc/resolv.conf"
	DefaultTimeout     = 2 * time.Second
	DefaultCacheSize   = 10_000
	DefaultMaxInflight = 256
	DefaultMaxTCPConns = 128

	// meshTTL is the TTL of answers from the name table: short enough that
	// a VIP change is seen within half a minute even by caching clients.
	meshTTL = 30
	// ednsSize is the UDP payload size advertised in mesh answers
	// (DNS flag day 2020 value).
	ednsSize = 1232
)

// Config configures a [Server]. The zero value is usable: every field has a
// default.
type Config struct {
	// Addr is the UDP and TCP listen address. Default 127.0.0.1:15053.
	// With port 0 a free port is chosen (tests); see [Server.Addr].
	Addr string
	// Upstreams are the resolvers non-mesh queries are forwarded to, tried
	// in order ("10.96.0.10" or "10.96.0.10:53"). Default: the nameserver
	// lines of ResolvConf.
	Upstreams []string
	// ResolvConf is read when Upstreams is empty. Default /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds one forwarded query across all upstreams; a query that
	// gets no usable answer in time is answered SERVFAIL. Default 2s.
	Timeout time.Duration
	// CacheSize is the number of forwarded responses kept (LRU). Default
	// 10,000; negative disables the cache.
	CacheSize int
	// MaxInflight bounds concurrently forwarded queries; queries beyond it
	// are answered SERVFAIL at once and counted in Stats.Rejected. Identical
	// queries arriving while one is forwarded wait for its answer instead
	// (at most 4×MaxInflight of them). Default 256.
	MaxInflight int
	// MaxTCPConns bounds open client TCP connections; further connections
	// wait in the kernel backlog. Default 128.
	MaxTCPConns int
	// RateLimit, when positive, is the sustained number of queries per
	// second accepted from all clients together; excess queries are dropped
	// without an answer (an answer would be an amplification vector) and
	// counted in Stats.Dropped. Burst is RateBurst (default: RateLimit).
	RateLimit float64
	RateBurst int
	// Logger receives start/stop and upstream failure logs. Default
	// slog.Default().
	Logger *slog.Logger
	// Clock is the time source for the cache and the rate limiter (network
	// timeouts use real time). Default time.Now.
	Clock func() time.Time
}

// Stats are the server's counters since New. All fields only grow.
type Stats struct {
	Queries        uint64 // well-formed queries handled
	MeshAnswers    uint64 // answered from the name table
	CacheHits      uint64 // answered from the forwarding cache
	Forwarded      uint64 // sent to an upstream
	UpstreamErrors uint64 // forwarded queries that ended in SERVFAIL
	Coalesced      uint64 // answered with the result of an identical query already in flight
	Rejected       uint64 // answered SERVFAIL because MaxInflight was reached
	Dropped        uint64 // dropped unanswered by the rate limiter
	Malformed      uint64 // packets that could not be parsed or were refused as FORMERR/NOTIMP
}

type counters struct {
	queries, mesh, hits, coalesced, forwarded, upErrs, rejected, dropped, malformed atomic.Uint64
}

// Server is the DNS proxy. Create it with [New], give it a table with
// [Server.SetTable] (before or after Start), run it with [Server.Start].
type Server struct {
	cfg       Config
	log       *slog.Logger
	upstreams []string
	table     atomic.Pointer[compiled]
	cache     *cache
	inflight  chan struct{}
	flights   flights
	limiter   *limiter
	stats     counters

	mu      sync.Mutex
	started bool
	udp     *dns.Server
	tcp     *dns.Server
	addr    string
	ctx     context.Context
	cancel  context.CancelFunc
	served  sync.WaitGroup
}

var _ dns.Handler = (*Server)(nil)

// New validates cfg, fills defaults and resolves the upstreams. It does not
// open sockets.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("dnsproxy: listen address %q: %w", cfg.Addr, err)
	}
	ups := cfg.Upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = readResolvConf(cfg.ResolvConf); err != nil {
			return nil, err
		}
	}
	upstreams, err := parseUpstreams(ups)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "dnsproxy"),
		upstreams: upstreams,
		inflight:  make(chan struct{}, cfg.MaxInflight),
		flights:   flights{calls: map[cacheKey]*flight{}, maxWaiters: 4 * int64(cfg.MaxInflight)},
	}
	if cfg.CacheSize > 0 {
		s.cache = newCache(cfg.CacheSize)
	}
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.Clock)
	}
	s.table.Store(compile(nil))
	return s, nil
}

// SetTable atomically replaces the name table. Queries already being
// answered finish with the old table. A nil table empties it.
func (s *Server) SetTable(t *NameTable) {
	s.table.Store(compile(t))
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Queries: c.queries.Load(), MeshAnswers: c.mesh.Load(), CacheHits: c.hits.Load(),
		Coalesced: c.coalesced.Load(), Forwarded: c.forwarded.Load(), UpstreamErrors: c.upErrs.Load(), Rejected: c.rejected.Load(),
		Dropped: c.dropped.Load(), Malformed: c.malformed.Load(),
	}
}

// Upstreams returns the resolvers queries are forwarded to.
func (s *Server) Upstreams() []string { return append([]string(nil), s.upstreams...) }

// Addr returns the bound listen address (same port for UDP and TCP) once
// Start has returned.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Start binds UDP and TCP on Config.Addr and serves in the background until
// ctx is cancelled or Shutdown is called. It returns once both listeners
// accept queries.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("dnsproxy: already started")
	}
	pc, ln, err := listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.addr = pc.LocalAddr().String()
	for _, up := range s.upstreams {
		if up == s.addr {
			pc.Close()
			ln.Close()
			return fmt.Errorf("dnsproxy: upstream %s is the proxy itself", up)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.udp = s.newDNSServer()
	s.udp.PacketConn = pc
	s.udp.UDPSize = dns.DefaultMsgSize
	s.tcp = s.newDNSServer()
	s.tcp.Listener = newLimitListener(ln, s.cfg.MaxTCPConns)

	// Each listener reports once when it serves (nil) and once when it
	// stops; a listener that fails before serving reports only its error.
	up := make(chan error, 4)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { up <- nil }
		s.served.Add(1)
		go func() {
			defer s.served.Done()
			err := srv.ActivateAndServe()
			if err != nil {
				s.log.Error("dns listener stopped", "addr", s.addr, "err", err)
			}
			up <- err
		}()
	}
	if err := errors.Join(<-up, <-up); err != nil {
		s.cancel()
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
		pc.Close()
		ln.Close()
		return fmt.Errorf("dnsproxy: start: %w", err)
	}
	s.started = true
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Shutdown(context.Background())
		case <-s.ctx.Done():
		}
	}()
	s.log.Info("dns proxy listening", "addr", s.addr, "upstreams", s.upstreams)
	return nil
}

func (s *Server) newDNSServer() *dns.Server {
	return &dns.Server{
		Handler: s,
		MsgAcceptFunc: func(dh dns.Header) dns.MsgAcceptAction {
			a := dns.DefaultMsgAcceptFunc(dh)
			if a != dns.MsgAccept {
				s.stats.malformed.Add(1)
			}
			return a
		},
		MsgInvalidFunc: func([]byte, error) { s.stats.malformed.Add(1) },
		ReadTimeout:    2 * time.Second,
		WriteTimeout:   2 * time.Second,
		IdleTimeout:    func() time.Duration { return 8 * time.Second },
		MaxTCPQueries:  128,
	}
}

// listen binds UDP and then TCP on the same port. With port 0 the kernel
// picks the UDP port; if TCP cannot have it, try again with another.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsproxy: listen udp %s: %w", addr, err)
		}
		tcpAddr := net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, fmt.Errorf("dnsproxy: listen tcp %s: %w", tcpAddr, err)
		}
	}
}

// Shutdown stops both listeners, cancels forwarded queries and waits for
// handlers to return or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	s.cancel()
	udp, tcp := s.udp, s.tcp
	s.mu.Unlock()

	err := errors.Join(udp.ShutdownContext(ctx), tcp.ShutdownContext(ctx))
	done := make(chan struct{})
	go func() { s.served.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("dnsproxy: shutdown: %w", err)
	}
	s.log.Info("dns proxy stopped", "addr", s.addr)
	return nil
}

// ServeDNS answers one parsed query. It is exported so the server can be
// mounted on another miekg/dns listener, and for fuzzing.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if s.limiter != nil && !s.limiter.allow() {
		s.stats.dropped.Add(1)
		return
	}
	if req.Response {
		// Never answer a response: two servers could bounce errors forever.
		s.stats.malformed.Add(1)
		return
	}
	if len(req.Question) != 1 {
		s.stats.malformed.Add(1)
		s.write(w, req, new(dns.Msg).SetRcodeFormatError(req))
		return
	}
	if req.Opcode != dns.OpcodeQuery {
		s.stats.malformed.Add(1)
		resp := new(dns.Msg).SetRcode(req, dns.RcodeNotImplemented)
		s.write(w, req, resp)
		return
	}
	s.stats.queries.Add(1)
	q := req.Question[0]
	var entry *HostEntry
	var ptr []string
	if q.Qclass == dns.ClassINET || q.Qclass == dns.ClassANY {
		tbl, name := s.table.Load(), normalize(q.Name)
		entry = tbl.lookup(name)
		ptr = tbl.reverse(name)
	}
	if entry != nil && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY) {
		s.stats.mesh.Add(1)
		s.write(w, req, meshAnswer(req, entry))
		return
	}
	if ptr != nil && (q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY) {
		s.stats.mesh.Add(1)
		s.write(w, req, ptrAnswer(req, ptr))
		return
	}
	resp := s.resolve(req)
	if (entry != nil || ptr != nil) && resp.Rcode == dns.RcodeNameError {
		// Other types for a mesh host: the upstream may not know the name,
		// but it exists, so the answer is NODATA, never NXDOMAIN.
		resp.Rcode = dns.RcodeSuccess
		resp.Answer = nil
	}
	s.write(w, req, resp)
}

// meshAnswer builds an authoritative answer from the table. A host without
// an address of the asked type gets NODATA (NOERROR, empty answer).
func meshAnswer(req *dns.Msg, e *HostEntry) *dns.Msg {
	resp := new(dns.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	q := req.Question[0]
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		for _, ip := range e.IPv4 {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: rrHeader(q.Name, dns.TypeA), A: addrIP(ip)})
		}
	}
	if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		for _, ip := range e.IPv6 {
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: rrHeader(q.Name, dns.TypeAAAA), AAAA: addrIP(ip)})
		}
	}
	return resp
}

func rrHeader(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: meshTTL}
}

func addrIP(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// context is cancelled by Shutdown; ServeDNS called without Start (fuzzing,
// mounting on another listener) runs with a background context.
func (s *Server) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

// write sends resp, truncated to what the client can receive (512 bytes or
// its EDNS size over UDP), with the TC bit set so it retries over TCP.
func (s *Server) write(w dns.ResponseWriter, req, resp *dns.Msg) {
	size := dns.MaxMsgSize
	if a := w.LocalAddr(); a == nil || !strings.HasPrefix(a.Network(), "tcp") {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	if opt := req.IsEdns0(); opt != nil && resp.IsEdns0() == nil {
		// RFC 6891 §7: answer an EDNS query with an OPT record.
		resp.SetEdns0(ednsSize, opt.Do())
	}
	resp.Compress = true
	resp.Truncate(size)
	if err := w.WriteMsg(resp); err != nil && s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("write response", "err", err)
	}
}

// limiter is a token bucket shared by all clients.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	clock  func() time.Time
}

func newLimiter(rate float64, burst int, clock func() time.Time) *limiter {
	b := float64(burst)
	if b <= 0 {
		b = max(rate, 1)
	}
	return &limiter{rate: rate, burst: b, tokens: b, last: clock(), clock: clock}
}

func (l *limiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
		l.last = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// limitListener bounds accepted connections: Accept waits for a slot, which
// a connection gives back when closed.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
