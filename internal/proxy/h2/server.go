package h2

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// Config configures a Server. Router is required.
type Config struct {
	// Router decides each stream's fate.
	Router Router
	// Observer, if set, sees every stream start and end.
	Observer Observer
	// Pool carries upstream streams; nil makes a private pool with
	// default PoolConfig (closed by Close).
	Pool *Pool
	// RequestTimeout bounds a whole stream when Decision.Timeout is zero.
	// Zero means no bound: gRPC streams are often long-lived, and Istio's
	// default route timeout is "none" as well.
	RequestTimeout time.Duration
	// MaxConcurrentStreams is advertised to clients per connection
	// (default 250, x/net's default).
	MaxConcurrentStreams uint32
	// IdleTimeout closes client connections without streams for longer
	// (default 5m).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request header block (default 1 MiB,
	// net/http's default).
	MaxHeaderBytes int
	// Logger receives connection-level errors at debug level (default
	// slog.Default()).
	Logger *slog.Logger
	// HTTP1 carries streams whose Decision asks for an HTTP/1.1 upstream
	// (except gRPC); nil sends every stream as HTTP/2.
	HTTP1 *HTTP1Pool
	// Mirrorer sends shadow copies of streams whose Decision has Mirrors;
	// nil ignores Mirrors. Only streams without a body are mirrored (the
	// body of an HTTP/2 stream is never buffered); gRPC is not mirrored.
	Mirrorer h1.Mirrorer
}

// Server serves HTTP/2 connections handed over by a listener.
type Server struct {
	cfg     Config
	errLog  *log.Logger
	ownPool bool

	mu     sync.Mutex
	conns  map[net.Conn]*connServer
	closed bool
	wg     sync.WaitGroup
}

// connServer is the x/net server of one connection. Each connection has
// its own so that one of them can be sent GOAWAY (DrainConn) while the
// others go on; Shutdown sends it to all.
type connServer struct {
	h2   *http2.Server
	base *http.Server
}

// goAway starts x/net's graceful shutdown of the connection: GOAWAY, the
// streams in flight finish, then it closes. base tracks no connections of
// its own, so Shutdown only runs the hook and returns.
func (cs *connServer) goAway() { _ = cs.base.Shutdown(context.Background()) }

// NewServer returns a Server for cfg.
func NewServer(cfg Config) *Server {
	if cfg.Router == nil {
		panic("h2: Config.Router is nil")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, conns: map[net.Conn]*connServer{}}
	if s.cfg.Pool == nil {
		s.cfg.Pool = NewPool(PoolConfig{})
		s.ownPool = true
	}
	log := cfg.Logger.With("component", "h2")
	s.cfg.Logger = log
	s.errLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return s
}

func (s *Server) newConnServer() *connServer {
	cs := &connServer{
		h2:   &http2.Server{MaxConcurrentStreams: s.cfg.MaxConcurrentStreams, IdleTimeout: s.cfg.IdleTimeout},
		base: &http.Server{MaxHeaderBytes: s.cfg.MaxHeaderBytes, ErrorLog: s.errLog},
	}
	// Registers the x/net server with base so base.Shutdown sends GOAWAY
	// to the connection ServeConn serves.
	if err := http2.ConfigureServer(cs.base, cs.h2); err != nil {
		panic("h2: " + err.Error()) // only fails on a bad TLSConfig, which we do not set
	}
	return cs
}

// ServeConn serves one connection until it ends: either h2c with prior
// knowledge (the conn must replay the preface if the listener sniffed it,
// see WithPrefix) or a TLS conn that negotiated ALPN "h2". It closes c.
func (s *Server) ServeConn(c net.Conn) { s.ServeConnDraining(c, nil) }

// ServeConnDraining is ServeConn for a connection that may have to drain
// on its own (its listener's filter chain changed): once *drain is true,
// the next response starts x/net's graceful shutdown (GOAWAY, then close
// when the streams are done). Whoever sets *drain then calls DrainConn so
// that a connection without streams is sent GOAWAY at once.
func (s *Server) ServeConnDraining(c net.Conn, drain *atomic.Bool) {
	cs := s.newConnServer()
	s.mu.Lock()
	if s.closed || drain != nil && drain.Load() {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[c] = cs
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	remote := c.RemoteAddr()
	cs.h2.ServeConn(c, &http2.ServeConnOpts{
		Context:    context.Background(),
		BaseConfig: cs.base,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if drain != nil && drain.Load() {
				// x/net turns it into GOAWAY (it never reaches the wire);
				// this also covers a DrainConn that ran before x/net
				// registered the connection.
				w.Header().Set("Connection", "close")
			}
			s.serveStream(w, r, remote, c)
		}),
	})
}

// DrainConn sends GOAWAY on c, which then closes once its streams are
// done. It reports whether c is served here.
func (s *Server) DrainConn(c net.Conn) bool {
	s.mu.Lock()
	cs := s.conns[c]
	s.mu.Unlock()
	if cs == nil {
		return false
	}
	cs.goAway()
	return true
}

// Shutdown sends GOAWAY on every connection and waits for their streams to
// finish or ctx to end, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.mu.Lock()
	for _, cs := range s.conns {
		cs.goAway()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = s.Close()
	return err
}

// Close closes every connection immediately (and the private pool).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	if s.ownPool {
		_ = s.cfg.Pool.Close()
	}
	return nil
}

// WithPrefix returns a conn that first yields prefix (bytes a listener
// already read while sniffing, e.g. the preface) and then reads from c.
func WithPrefix(c net.Conn, prefix []byte) net.Conn {
	if len(prefix) == 0 {
		return c
	}
	return &prefixConn{Conn: c, prefix: prefix}
}

type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn exposes the wrapped conn (so x/net still sees a *tls.Conn's
// ConnectionState through the usual unwrapping when needed).
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

var errClientGone = errors.New("h2: client went away")
