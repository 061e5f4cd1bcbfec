package h1

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	bodyArea     = 8 << 10  // read-buffer room after the head for body / chunk lines
	writeBufSize = 16 << 10 // batching buffer per direction
)

// Config configures a Server. Zero values pick the defaults in brackets.
type Config struct {
	// Router decides every request's destination. Required.
	Router Router
	// Pool holds upstream connections; nil creates one owned by the Server.
	Pool *Pool
	// Observer gets request start/end hooks; may be nil.
	Observer Observer
	// Logger for connection-level failures [slog.Default()].
	Logger *slog.Logger

	// MaxHeaderBytes bounds the request head; beyond it: 431 [16 KiB].
	MaxHeaderBytes int
	// MaxRequestLine bounds the request line; beyond it: 414 [8 KiB].
	MaxRequestLine int
	// MaxHeaders bounds the number of request fields; beyond it: 431 [100].
	MaxHeaders int
	// ReadHeaderTimeout bounds reading one request head once its first byte
	// arrived (slowloris); expiry answers 408 [10s].
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for longer [60s].
	IdleTimeout time.Duration
	// RequestTimeout is the per-request timeout when Decision.Timeout is
	// zero; negative means none [15s, Envoy's route default].
	RequestTimeout time.Duration
	// TunnelIdleTimeout closes upgraded (WebSocket) tunnels idle for longer [1h].
	TunnelIdleTimeout time.Duration
	// MaxRetryBody is the largest Content-Length request body kept in
	// memory so a Decision.Retry can replay it; larger and chunked bodies
	// are streamed and never retried [64 KiB].
	MaxRetryBody int
	// TunnelHandler serves CONNECT requests the Router marks Tunnel; nil
	// answers them 501.
	TunnelHandler TunnelHandler
	// H2Upstream carries requests whose Decision asks for HTTP/2 upstream
	// (gRPC / HTTP/2 clusters called by HTTP/1.1 clients); nil sends them
	// as HTTP/1.1.
	H2Upstream H2Upstream
	// Mirrorer sends shadow copies of requests whose Decision has Mirrors;
	// nil ignores Mirrors.
	Mirrorer Mirrorer
	// RawIO switches client sockets to raw non-blocking reads/writes
	// (rawio.go): about 20 % less CPU per request at moderate load, but it
	// measured worse p99 tails, so it is opt-in until that is understood.
	RawIO bool
}

func (c *Config) rawIO() bool { return c.RawIO }

// Server serves HTTP/1.1 on accepted connections. Create with NewServer.
type Server struct {
	cfg     Config
	lim     limits
	respLim limits
	pool    *Pool
	ownPool bool
	log     *slog.Logger

	shutdown  atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	connFree  sync.Pool
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("h1: server closed")

// NewServer validates cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Router == nil {
		return nil, errors.New("h1: Config.Router is required")
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if cfg.MaxRequestLine <= 0 {
		cfg.MaxRequestLine = 8 << 10
	}
	if cfg.MaxRequestLine > cfg.MaxHeaderBytes {
		cfg.MaxRequestLine = cfg.MaxHeaderBytes
	}
	if cfg.MaxHeaders <= 0 {
		cfg.MaxHeaders = 100
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.MaxRetryBody <= 0 {
		cfg.MaxRetryBody = 64 << 10
	}
	if cfg.TunnelIdleTimeout <= 0 {
		cfg.TunnelIdleTimeout = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:       cfg,
		lim:       limits{maxLine: cfg.MaxRequestLine, maxHead: cfg.MaxHeaderBytes, maxHeaders: cfg.MaxHeaders},
		pool:      cfg.Pool,
		log:       cfg.Logger.With("component", "h1"),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	if s.pool == nil {
		s.pool = NewPool(PoolConfig{})
		s.ownPool = true
	}
	s.respLim = limits{maxLine: s.pool.cfg.MaxResponseHeaderBytes, maxHead: s.pool.cfg.MaxResponseHeaderBytes, maxHeaders: s.pool.cfg.MaxResponseHeaders}
	return s, nil
}

// Pool returns the upstream pool in use.
func (s *Server) Pool() *Pool { return s.pool }

// Serve accepts connections from l until Shutdown/Close or an accept error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		cn := s.newConn(nc, nil)
		if cn == nil {
			nc.Close()
			continue
		}
		go s.run(cn)
	}
}

// ServeConn serves one accepted connection until it closes; it blocks.
func (s *Server) ServeConn(nc net.Conn) { s.ServeConnDraining(nc, nil) }

// ServeConnDraining is ServeConn for a connection that may have to drain
// on its own (its listener's filter chain changed): once *drain is true,
// the response in progress (or the next one) carries Connection: close and
// the connection closes after it. Whoever sets *drain then calls DrainConn
// so that a connection idle between requests closes at once.
func (s *Server) ServeConnDraining(nc net.Conn, drain *atomic.Bool) {
	cn := s.newConn(nc, drain)
	if cn == nil {
		nc.Close()
		return
	}
	s.run(cn)
}

// DrainConn closes nc if it is idle between requests and was served with a
// drain flag that is set; a busy one closes after its current response
// (ServeConnDraining). It reports whether nc is served here.
func (s *Server) DrainConn(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cn := range s.conns {
		if cn.c != nc {
			continue
		}
		if cn.closing() && cn.state.CompareAndSwap(stateIdle, stateClosed) {
			cn.c.Close()
		}
		return true
	}
	return false
}

const (
	stateActive int32 = iota
	stateIdle
	stateClosed
)

// conn is one client connection and its reusable buffers.
type conn struct {
	srv   *Server
	c     net.Conn
	rd    reader
	w     writer
	req   Request
	state atomic.Int32
	// bodyDone: the request body was consumed into a retry buffer.
	bodyDone bool
	// drain, when set and true, closes the connection after its current
	// response (ServeConnDraining).
	drain *atomic.Bool
}

// closing reports whether the connection must close after its current
// response: the server shuts down or the connection drains.
func (cn *conn) closing() bool {
	return cn.srv.shutdown.Load() || cn.drain != nil && cn.drain.Load()
}

func (s *Server) newConn(nc net.Conn, drain *atomic.Bool) *conn {
	var cn *conn
	if v := s.connFree.Get(); v != nil {
		cn = v.(*conn)
	} else {
		cn = &conn{srv: s}
		cn.rd.buf = make([]byte, s.cfg.MaxHeaderBytes+bodyArea)
		cn.w.buf = make([]byte, 0, writeBufSize)
		cn.req.headers = make([]Header, 0, 32)
	}
	cn.c, cn.rd.conn, cn.w.conn = nc, nc, nc
	cn.rd.r, cn.rd.w, cn.rd.base, cn.rd.n = 0, 0, 0, 0
	cn.w.buf, cn.w.n = cn.w.buf[:0], 0
	cn.rd.raw, cn.w.raw = nil, nil
	if s.cfg.rawIO() {
		cn.rd.raw, cn.w.raw = newRawIO(nc)
	}
	cn.state.Store(stateActive)
	cn.drain = drain // set before s.conns publishes cn to DrainConn
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return nil
	}
	s.conns[cn] = struct{}{}
	return cn
}

func (s *Server) run(cn *conn) {
	defer func() {
		cn.c.Close()
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
		cn.c, cn.rd.conn, cn.w.conn, cn.rd.raw, cn.w.raw = nil, nil, nil, nil, nil
		cn.req.reset()
		cn.req.remote, cn.req.conn = nil, nil
		if cap(cn.w.buf) <= 4*writeBufSize {
			s.connFree.Put(cn)
		}
	}()
	cn.req.remote, cn.req.conn = cn.c.RemoteAddr(), cn.c
	cn.serve()
}

func (cn *conn) serve() {
	s := cn.srv
	for !cn.closing() {
		if cn.rd.r == cn.rd.w {
			// Idle between requests: only the idle timeout applies, and
			// Shutdown or DrainConn may close us.
			cn.state.Store(stateIdle)
			if cn.closing() {
				return
			}
			_ = cn.c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
			cn.rd.startHead()
			err := cn.rd.fill(0)
			if !cn.state.CompareAndSwap(stateIdle, stateActive) || err != nil {
				return
			}
		}
		start := time.Now()
		cn.rd.pendingDeadline = start.Add(s.cfg.ReadHeaderTimeout)
		err := parseRequest(&cn.rd, s.lim, &cn.req)
		cn.rd.pendingDeadline = time.Time{}
		if err != nil {
			if pe, ok := err.(*protoError); ok {
				cn.writeLocal(pe.Status, pe.Reason, nil, true, false, nil)
			} else if isTimeout(err) {
				cn.writeLocal(http.StatusRequestTimeout, "request head timeout", nil, true, false, nil)
			}
			return
		}
		if !cn.exchange(start) {
			return
		}
	}
}

// Shutdown stops accepting, closes idle connections, waits for in-flight
// requests to finish (their connections then close), and closes the pool if
// the Server owns it. It returns ctx.Err() if ctx expires first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			if s.ownPool {
				s.pool.Close()
			} else {
				s.pool.CloseIdle()
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// closeIdle closes idle connections and returns how many remain open.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cn := range s.conns {
		if cn.state.CompareAndSwap(stateIdle, stateClosed) {
			cn.c.Close()
		}
	}
	return len(s.conns)
}

// Close closes listeners and all connections immediately.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	for cn := range s.conns {
		cn.state.Store(stateClosed)
		cn.c.Close()
	}
	s.mu.Unlock()
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}
