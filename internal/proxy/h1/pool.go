package h1

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// PoolConfig bounds the upstream keep-alive pool. Zero values pick defaults.
type PoolConfig struct {
	// MaxIdlePerHost is the number of idle connections kept per address
	// (default 64).
	MaxIdlePerHost int
	// MaxConnsPerHost caps open connections (idle + busy) per address;
	// beyond it requests are answered 503 "upstream_overflow" (default 1024).
	MaxConnsPerHost int
	// IdleTimeout closes connections idle for longer (default 30s). Keep it
	// below the upstream's own keep-alive timeout to avoid reuse races.
	IdleTimeout time.Duration
	// DialTimeout bounds connection establishment (default 5s).
	DialTimeout time.Duration
	// MaxResponseHeaderBytes bounds an upstream response head (default 32 KiB).
	MaxResponseHeaderBytes int
	// MaxResponseHeaders bounds the number of response fields (default 128).
	MaxResponseHeaders int
	// RawIO switches upstream sockets to raw non-blocking I/O (rawio.go);
	// see Config.RawIO.
	RawIO bool
	// Dial, when set, establishes upstream connections: tlsKey is the
	// request's Decision.UpstreamTLS (empty for plain TCP), so a TLS
	// dialer can pick the client identity and return a handshaken conn.
	// The ctx carries the dial deadline. Nil dials plain TCP (and a
	// non-empty tlsKey is then an error).
	Dial func(ctx context.Context, network, addr, tlsKey string) (net.Conn, error)
}

func (c *PoolConfig) rawIO() bool { return c.RawIO }

func (c *PoolConfig) defaults() {
	if c.MaxIdlePerHost <= 0 {
		c.MaxIdlePerHost = 64
	}
	if c.MaxConnsPerHost <= 0 {
		c.MaxConnsPerHost = 1024
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.MaxResponseHeaderBytes <= 0 {
		c.MaxResponseHeaderBytes = 32 << 10
	}
	if c.MaxResponseHeaders <= 0 {
		c.MaxResponseHeaders = 128
	}
}

// ErrPoolExhausted is returned when MaxConnsPerHost is reached.
var ErrPoolExhausted = errors.New("h1: upstream connection limit reached")

// Pool keeps per-address keep-alive connections to upstreams. It is safe
// for concurrent use.
type Pool struct {
	cfg    PoolConfig
	dialer net.Dialer

	mu     sync.Mutex
	hosts  map[poolKey]*hostPool
	timer  *time.Timer
	closed bool
}

// poolKey identifies interchangeable connections: same address, same
// transport identity.
type poolKey struct {
	addr, tls string
}

type hostPool struct {
	idle  []*upConn // LIFO: the most recently used conn is the least likely to be stale
	total int
}

// upConn is one upstream connection with its own buffers.
type upConn struct {
	conn   net.Conn
	rd     reader
	w      writer
	key    poolKey
	idleAt time.Time
	resp   response
}

// NewPool returns a Pool; call Close to release its connections.
func NewPool(cfg PoolConfig) *Pool {
	cfg.defaults()
	return &Pool{cfg: cfg, dialer: net.Dialer{Timeout: cfg.DialTimeout}, hosts: map[poolKey]*hostPool{}}
}

// get returns an idle connection for k (reused=true) or dials a new one.
func (p *Pool) get(k poolKey, deadline time.Time) (uc *upConn, reused bool, err error) {
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, net.ErrClosed
	}
	h := p.hosts[k]
	if h == nil {
		h = &hostPool{}
		p.hosts[k] = h
	}
	for len(h.idle) > 0 {
		uc = h.idle[len(h.idle)-1]
		h.idle[len(h.idle)-1] = nil
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(uc.idleAt) < p.cfg.IdleTimeout {
			p.mu.Unlock()
			return uc, true, nil
		}
		h.total--
		uc.conn.Close()
	}
	if h.total >= p.cfg.MaxConnsPerHost {
		p.mu.Unlock()
		return nil, false, ErrPoolExhausted
	}
	h.total++
	p.mu.Unlock()
	uc, err = p.dial(k, deadline)
	if err != nil {
		p.dropSlot(k)
	}
	return uc, false, err
}

// dialFresh replaces a dead reused connection; it keeps the slot.
func (p *Pool) dialFresh(k poolKey, deadline time.Time) (*upConn, error) {
	uc, err := p.dial(k, deadline)
	if err != nil {
		p.dropSlot(k)
	}
	return uc, err
}

func (p *Pool) dropSlot(k poolKey) {
	p.mu.Lock()
	if h := p.hosts[k]; h != nil {
		h.total--
	}
	p.mu.Unlock()
}

// dialError is a failure to establish an upstream connection; it matches
// ErrConnectFailure.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string   { return "h1: dial " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() []error { return []error{ErrConnectFailure, e.err} }

func (p *Pool) dial(k poolKey, deadline time.Time) (*upConn, error) {
	// The request deadline bounds the dial too; when it is what expired,
	// the failure is the request's timeout (504), not a connect failure.
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	defer cancel()
	if !deadline.IsZero() {
		var cancel2 context.CancelFunc
		ctx, cancel2 = context.WithDeadline(ctx, deadline)
		defer cancel2()
	}
	var c net.Conn
	var err error
	switch {
	case p.cfg.Dial != nil:
		c, err = p.cfg.Dial(ctx, "tcp", k.addr, k.tls)
	case k.tls != "":
		err = errors.New("upstream TLS requested but PoolConfig.Dial is not set")
	default:
		c, err = p.dialer.DialContext(ctx, "tcp", k.addr)
	}
	if err != nil {
		if !deadline.IsZero() && !time.Now().Before(deadline) && isTimeout(err) {
			return nil, err
		}
		return nil, &dialError{addr: k.addr, err: err}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	uc := &upConn{conn: c, key: k}
	uc.rd = reader{conn: c, buf: make([]byte, p.cfg.MaxResponseHeaderBytes+bodyArea)}
	uc.w = writer{conn: c, buf: make([]byte, 0, writeBufSize)}
	if p.cfg.rawIO() {
		if _, ok := c.(*net.TCPConn); ok {
			uc.rd.raw, uc.w.raw = newRawIO(c)
		}
	}
	return uc, nil
}

// put returns a healthy connection for reuse, or closes it if the pool is
// full or closed.
func (p *Pool) put(uc *upConn) {
	// The old deadline stays armed while idle (no I/O happens then); get's
	// caller always sets a fresh one, saving two timer updates per request.
	uc.idleAt = time.Now()
	p.mu.Lock()
	h := p.hosts[uc.key]
	if p.closed || h == nil || len(h.idle) >= p.cfg.MaxIdlePerHost {
		if h != nil {
			h.total--
		}
		p.mu.Unlock()
		uc.conn.Close()
		return
	}
	h.idle = append(h.idle, uc)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.cfg.IdleTimeout, p.sweep)
	}
	p.mu.Unlock()
}

// discard closes a connection that cannot be reused.
func (p *Pool) discard(uc *upConn) {
	uc.conn.Close()
	p.dropSlot(uc.key)
}

// sweep closes expired idle connections; it reschedules itself only while
// idle connections remain, so an unused Pool holds no timer.
func (p *Pool) sweep() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	if p.closed {
		return
	}
	remain := false
	for _, h := range p.hosts {
		keep := h.idle[:0]
		for _, uc := range h.idle {
			if now.Sub(uc.idleAt) >= p.cfg.IdleTimeout {
				uc.conn.Close()
				h.total--
			} else {
				keep = append(keep, uc)
			}
		}
		clear(h.idle[len(keep):])
		h.idle = keep
		remain = remain || len(keep) > 0
	}
	if remain {
		p.timer = time.AfterFunc(p.cfg.IdleTimeout/2, p.sweep)
	}
}

// CloseIdle closes all idle connections.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		for i, uc := range h.idle {
			uc.conn.Close()
			h.idle[i] = nil
			h.total--
		}
		h.idle = h.idle[:0]
	}
}

// Close closes idle connections and makes further use fail; busy
// connections are closed when returned.
func (p *Pool) Close() {
	p.CloseIdle()
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
}

// Stats returns the number of idle and total (idle + busy) connections to addr.
func (p *Pool) Stats(addr string) (idle, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.hosts[poolKey{addr: addr}]; h != nil {
		return len(h.idle), h.total
	}
	return 0, 0
}
