// Package tcp is weft-proxy's L4 forwarding path: it connects a downstream
// connection to an upstream address (plain TCP, or through a dialer that
// originates TLS) and copies bytes both ways with half-close, an idle
// timeout, byte counters and pooled buffers. The HTTP/1.1 engine reuses Pipe
// for upgraded (WebSocket) connections.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

const bufSize = 32 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Config configures a Proxy. Zero values pick the defaults in brackets.
type Config struct {
	// ConnectTimeout bounds dialing the upstream [5s].
	ConnectTimeout time.Duration
	// IdleTimeout closes the pair when neither direction moved a byte for
	// this long [1h]. Negative disables it.
	IdleTimeout time.Duration
	// Dial, when set, establishes the upstream connection (e.g. with the
	// cluster's upstream TLS); the ctx carries the connect deadline. Nil
	// dials plain TCP.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Stats counts one forwarded connection.
type Stats struct {
	Sent     int64 // downstream -> upstream
	Received int64 // upstream -> downstream
	Duration time.Duration
}

// Proxy forwards TCP connections.
type Proxy struct {
	cfg    Config
	dialer net.Dialer
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Hour
	}
	return &Proxy{cfg: cfg, dialer: net.Dialer{Timeout: cfg.ConnectTimeout}}
}

// Forward dials addr and relays bytes between down and the upstream until
// both directions are done. It closes down in all cases.
func (p *Proxy) Forward(down net.Conn, addr string) (Stats, error) {
	start := time.Now()
	up, err := p.Dial(addr)
	if err != nil {
		down.Close()
		return Stats{Duration: time.Since(start)}, err
	}
	st, err := p.Relay(down, up)
	st.Duration = time.Since(start)
	return st, err
}

// Dial connects to addr within ConnectTimeout (through Config.Dial when set).
func (p *Proxy) Dial(addr string) (net.Conn, error) {
	if p.cfg.Dial == nil {
		up, err := p.dialer.Dial("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("tcp: dial %s: %w", addr, err)
		}
		return up, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	defer cancel()
	up, err := p.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: dial %s: %w", addr, err)
	}
	return up, nil
}

// Relay copies between down and an established upstream until both
// directions are done, then closes both.
func (p *Proxy) Relay(down, up net.Conn) (Stats, error) {
	start := time.Now()
	sent, recv, err := Pipe(down, up, p.cfg.IdleTimeout)
	return Stats{Sent: sent, Received: recv, Duration: time.Since(start)}, err
}

// halfCloser is implemented by *net.TCPConn and *net.UnixConn.
type halfCloser interface{ CloseWrite() error }

// Pipe copies a->b and b->a concurrently (one extra goroutine). When one
// side reaches EOF, the write half of the other is closed so the peer sees
// EOF while the reverse direction keeps flowing. An idle timeout > 0 ends
// the pipe when no byte moved in either direction for that long. Both
// connections are closed on return. Pipe reports bytes copied a->b, b->a and
// the first error other than EOF or an idle timeout.
func Pipe(a, b net.Conn, idle time.Duration) (aToB, bToA int64, err error) {
	var last lastActive
	last.touch()
	done := make(chan result, 1)
	go func() {
		n, err := copyHalf(b, a, idle, &last)
		done <- result{n, err}
	}()
	bToA, err2 := copyHalf(a, b, idle, &last)
	r := <-done
	a.Close()
	b.Close()
	aToB = r.n
	for _, e := range []error{r.err, err2} {
		if e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	return aToB, bToA, err
}

type result struct {
	n   int64
	err error
}

// lastActive is shared by both directions so that a long one-way transfer
// keeps the idle reader of the other direction alive.
type lastActive struct {
	mu sync.Mutex
	t  time.Time
}

func (l *lastActive) touch() {
	l.mu.Lock()
	l.t = time.Now()
	l.mu.Unlock()
}

func (l *lastActive) since() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.t)
}

// copyHalf copies src to dst; on EOF it half-closes dst, on error it closes
// both so the other direction unblocks.
func copyHalf(dst, src net.Conn, idle time.Duration, last *lastActive) (int64, error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	var n int64
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(idle))
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			last.touch()
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				src.Close()
				dst.Close()
				return n, werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, os.ErrDeadlineExceeded) && last.since() < idle {
				continue // the other direction is active
			}
			if rerr == io.EOF {
				if hc, ok := dst.(halfCloser); ok {
					_ = hc.CloseWrite()
				} else {
					dst.Close()
				}
				return n, nil
			}
			src.Close()
			dst.Close()
			if errors.Is(rerr, os.ErrDeadlineExceeded) {
				return n, nil
			}
			return n, rerr
		}
	}
}
