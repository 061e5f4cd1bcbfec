package h2

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// HTTP1Pool carries HTTP/2 streams to upstreams that speak only HTTP/1.1
// (clusters without HTTP/2 protocol options), so an h2c client can call an
// HTTP/1.1 service, as Envoy downgrades. It is net/http's HTTP/1.1
// transport over the same dial hook as the HTTP/2 pool; gRPC is never sent
// this way (it needs HTTP/2 trailers end to end).
type HTTP1Pool struct {
	dial func(ctx context.Context, network, addr, tlsKey string) (net.Conn, error)

	mu sync.Mutex
	tr map[string]*http.Transport // by TLS key
}

// NewHTTP1Pool returns a pool dialing with dial (nil: plain TCP).
func NewHTTP1Pool(dial func(ctx context.Context, network, addr, tlsKey string) (net.Conn, error)) *HTTP1Pool {
	return &HTTP1Pool{dial: dial, tr: map[string]*http.Transport{}}
}

// RoundTrip sends req as HTTP/1.1 to addr. Connection failures are wrapped
// so errors.Is(err, h1.ErrConnectFailure) holds.
func (p *HTTP1Pool) RoundTrip(req *http.Request, addr, tlsKey string) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = "http", addr
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	return p.transport(tlsKey).RoundTrip(out)
}

func (p *HTTP1Pool) transport(key string) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.tr[key]; t != nil {
		return t
	}
	var d net.Dialer
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			var err error
			if p.dial != nil {
				c, err = p.dial(ctx, network, addr, key)
			} else if key != "" {
				err = fmt.Errorf("TLS upstream %q but no dialer configured", key)
			} else {
				c, err = d.DialContext(ctx, network, addr)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %v", h1.ErrConnectFailure, err)
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true, // the client's business
		ForceAttemptHTTP2:   false,
	}
	p.tr[key] = t
	return t
}

// Close closes idle connections.
func (p *HTTP1Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tr {
		t.CloseIdleConnections()
	}
}
