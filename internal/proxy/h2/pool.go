package h2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// PoolConfig bounds the upstream HTTP/2 pool. Zero values pick defaults.
type PoolConfig struct {
	// MaxStreamsPerConn caps concurrent streams on one upstream connection
	// (default 256); the upstream's own SETTINGS_MAX_CONCURRENT_STREAMS is
	// honoured too. A full connection makes the pool dial another one.
	MaxStreamsPerConn int
	// MaxConnsPerHost caps connections per (address, TLS key); when every
	// one is full the stream is answered 503 upstream_overflow (default 16).
	MaxConnsPerHost int
	// IdleTimeout closes connections without streams for longer (default
	// 60s).
	IdleTimeout time.Duration
	// DialTimeout bounds connection establishment (default 5s).
	DialTimeout time.Duration
	// HealthCheckInterval, when set, pings a connection that has received
	// no frame for that long and closes it if the ping is not answered
	// within DialTimeout (x/net's ReadIdleTimeout / PingTimeout).
	HealthCheckInterval time.Duration
	// Dial, when set, establishes upstream connections exactly like
	// h1.PoolConfig.Dial: tlsKey is Decision.UpstreamTLS (empty for plain
	// TCP, i.e. h2c prior knowledge) and the returned conn is handshaken.
	// HTTP/2 is spoken on it with prior knowledge whatever ALPN was
	// negotiated: inside mesh mTLS the ALPN is Istio's ("istio") and the
	// server sniffs the preface. Nil dials plain TCP.
	Dial func(ctx context.Context, network, addr, tlsKey string) (net.Conn, error)
}

func (c *PoolConfig) defaults() {
	if c.MaxStreamsPerConn <= 0 {
		c.MaxStreamsPerConn = 256
	}
	if c.MaxConnsPerHost <= 0 {
		c.MaxConnsPerHost = 16
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
}

// ErrPoolExhausted is returned when every allowed connection to an upstream
// is at its stream limit.
var ErrPoolExhausted = errors.New("h2: upstream connection limit reached")

// errPoolClosed is returned after Pool.Close.
var errPoolClosed = errors.New("h2: pool closed")

// Pool multiplexes streams over per-upstream HTTP/2 connections. It is safe
// for concurrent use.
type Pool struct {
	cfg    PoolConfig
	t      *http2.Transport
	dialer net.Dialer

	mu     sync.Mutex
	hosts  map[poolKey]*hostConns
	closed bool
}

type poolKey struct{ addr, tls string }

type hostConns struct {
	conns   []*http2.ClientConn
	dialing *dialCall // in-flight dial shared by waiters, nil if none
}

type dialCall struct {
	done chan struct{}
	err  error
}

// NewPool returns an empty pool.
func NewPool(cfg PoolConfig) *Pool {
	cfg.defaults()
	p := &Pool{cfg: cfg, hosts: map[poolKey]*hostConns{}}
	p.t = &http2.Transport{
		AllowHTTP:       true,
		IdleConnTimeout: cfg.IdleTimeout,
		ReadIdleTimeout: cfg.HealthCheckInterval,
		PingTimeout:     cfg.DialTimeout,
		// Compression is the client's business, not the proxy's.
		DisableCompression: true,
	}
	return p
}

// RoundTrip sends req on a connection to (addr, tlsKey), dialing one if
// none has a free stream. req.URL.Host is not used for routing. Connection
// failures are wrapped so errors.Is(err, h1.ErrConnectFailure) holds.
func (p *Pool) RoundTrip(req *http.Request, addr, tlsKey string) (*http.Response, error) {
	cc, err := p.get(req.Context(), poolKey{addr, tlsKey})
	if err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}

// get returns a connection with one stream reserved for the caller.
func (p *Pool) get(ctx context.Context, k poolKey) (*http2.ClientConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		h := p.hosts[k]
		if h == nil {
			h = &hostConns{}
			p.hosts[k] = h
		}
		h.conns = slices.DeleteFunc(h.conns, func(cc *http2.ClientConn) bool {
			st := cc.State()
			return st.Closed || st.Closing
		})
		// Reserving under p.mu makes the MaxStreamsPerConn check exact
		// among our callers; streams only finish concurrently.
		for _, cc := range h.conns {
			st := cc.State()
			if st.StreamsActive+st.StreamsReserved+st.StreamsPending < p.cfg.MaxStreamsPerConn && cc.ReserveNewRequest() {
				p.mu.Unlock()
				return cc, nil
			}
		}
		if dc := h.dialing; dc != nil {
			p.mu.Unlock()
			select {
			case <-dc.done:
				if dc.err != nil {
					return nil, dc.err
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if len(h.conns) >= p.cfg.MaxConnsPerHost {
			p.mu.Unlock()
			return nil, ErrPoolExhausted
		}
		dc := &dialCall{done: make(chan struct{})}
		h.dialing = dc
		p.mu.Unlock()

		cc, err := p.dial(k)

		p.mu.Lock()
		h.dialing = nil
		dc.err = err
		close(dc.done)
		if err == nil {
			if p.closed {
				err = errPoolClosed
				_ = cc.Close()
			} else {
				h.conns = append(h.conns, cc)
			}
		}
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// dial is not bound to the caller's context: other streams may be waiting
// for the same connection.
func (p *Pool) dial(k poolKey) (*http2.ClientConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	defer cancel()
	var c net.Conn
	var err error
	switch {
	case p.cfg.Dial != nil:
		c, err = p.cfg.Dial(ctx, "tcp", k.addr, k.tls)
	case k.tls != "":
		err = fmt.Errorf("no TLS dialer for %q", k.tls)
	default:
		c, err = p.dialer.DialContext(ctx, "tcp", k.addr)
	}
	if err != nil {
		return nil, &connectError{addr: k.addr, err: err}
	}
	cc, err := p.t.NewClientConn(c)
	if err != nil {
		_ = c.Close()
		return nil, &connectError{addr: k.addr, err: err}
	}
	return cc, nil
}

// Conns returns the number of open connections to (addr, tlsKey).
func (p *Pool) Conns(addr, tlsKey string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	if h := p.hosts[poolKey{addr, tlsKey}]; h != nil {
		for _, cc := range h.conns {
			if !cc.State().Closed {
				n++
			}
		}
	}
	return n
}

// Close closes every connection, interrupting streams in flight.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	hosts := p.hosts
	p.hosts = map[poolKey]*hostConns{}
	p.mu.Unlock()
	for _, h := range hosts {
		for _, cc := range h.conns {
			_ = cc.Close()
		}
	}
	return nil
}

type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string {
	return "h2: connect " + e.addr + ": " + e.err.Error()
}

func (e *connectError) Unwrap() []error { return []error{h1.ErrConnectFailure, e.err} }
