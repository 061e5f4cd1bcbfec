// Package mirror sends shadow copies of requests (Envoy's
// request_mirror_policies, Istio's VirtualService mirror/mirrors) and
// discards the answers. A shadow never delays or fails the original: copies
// are sent on their own goroutines, concurrency is bounded, and a copy that
// finds the bound reached is dropped and counted.
//
// Shadows travel as HTTP/1.1 over the same dial hook as regular upstream
// traffic (so mesh mTLS applies) with net/http's client: mirroring is off
// the hot path, so it trades the engine's zero-allocation path for a small,
// obviously correct sender.
package mirror

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// Config configures a Sender.
type Config struct {
	// Dial establishes upstream connections (TLS for a non-empty tlsKey),
	// like h1.PoolConfig.Dial; nil dials plain TCP and refuses TLS keys.
	Dial func(ctx context.Context, network, addr, tlsKey string) (net.Conn, error)
	// MaxInFlight bounds shadow requests in flight [64].
	MaxInFlight int
	// Timeout bounds one shadow request, answer included [10s].
	Timeout time.Duration
	// MaxDiscard bounds how much of a shadow answer's body is read before
	// the connection is dropped [1 MiB].
	MaxDiscard int64
	Logger     *slog.Logger
}

// Stats counts shadow requests.
type Stats struct {
	Sent    uint64 // answered (any status)
	Failed  uint64 // connect or protocol failure, timeout
	Dropped uint64 // MaxInFlight reached
	Skipped uint64 // body not buffered (streamed): not mirrored
}

// Sender implements h1.Mirrorer.
type Sender struct {
	cfg  Config
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	tr   map[string]*http.Transport // by TLS key
	stop context.Context
	halt context.CancelFunc

	sent, failed, dropped, skipped atomic.Uint64
}

var _ h1.Mirrorer = (*Sender)(nil)

// New returns a Sender.
func New(cfg Config) *Sender {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxDiscard <= 0 {
		cfg.MaxDiscard = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Sender{cfg: cfg, sem: make(chan struct{}, cfg.MaxInFlight), tr: map[string]*http.Transport{}, stop: ctx, halt: cancel}
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(), Skipped: s.skipped.Load()}
}

// Mirror implements h1.Mirrorer.
func (s *Sender) Mirror(head, body []byte, unbuffered bool, targets []h1.Mirror) {
	if s.stop.Err() != nil {
		s.dropped.Add(uint64(len(targets)))
		return
	}
	if unbuffered {
		s.skipped.Add(uint64(len(targets)))
		return
	}
	var h, b []byte // copied once, shared read-only by every target
	for _, t := range targets {
		select {
		case s.sem <- struct{}{}:
		default:
			s.dropped.Add(1)
			continue
		}
		if h == nil {
			h = bytes.Clone(head)
			b = bytes.Clone(body)
		}
		s.wg.Add(1)
		go s.send(h, b, t)
	}
}

func (s *Sender) send(head, body []byte, t h1.Mirror) {
	defer func() { <-s.sem; s.wg.Done() }()
	ctx, cancel := context.WithTimeout(s.stop, s.cfg.Timeout)
	defer cancel()
	req, err := h1.NewClientRequest(ctx, head, body, t.Upstream)
	if err != nil { // the engine built this head: a bug, not input
		s.failed.Add(1)
		s.cfg.Logger.Error("mirror: unreadable shadow head", "component", "mirror", "err", err)
		return
	}
	resp, err := s.transport(t.UpstreamTLS).RoundTrip(req)
	if err != nil {
		s.failed.Add(1)
		if s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
			s.cfg.Logger.Debug("mirror: shadow request failed", "component", "mirror", "upstream", t.Upstream, "err", err)
		}
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.cfg.MaxDiscard))
	resp.Body.Close()
	s.sent.Add(1)
}

// transport returns the shared client transport for one TLS key.
func (s *Sender) transport(key string) *http.Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tr := s.tr[key]; tr != nil {
		return tr
	}
	dial := s.cfg.Dial
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dial != nil {
				return dial(ctx, network, addr, key)
			}
			if key != "" {
				return nil, errNoTLS
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // a shadow is the original request, no Accept-Encoding added
		ForceAttemptHTTP2:   false,
	}
	s.tr[key] = tr
	return tr
}

type mirrorError string

func (e mirrorError) Error() string { return string(e) }

const errNoTLS = mirrorError("mirror: TLS upstream but no dialer configured")

// Close cancels shadow requests in flight, waits for them and closes idle
// connections.
func (s *Sender) Close() {
	s.halt()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tr := range s.tr {
		tr.CloseIdleConnections()
	}
}

// Collectors exports the counters as weft_mirror_requests_total{result}.
func (s *Sender) Collectors() []prometheus.Collector {
	return telemetry.OutcomeCounters("weft_mirror_requests_total",
		"Shadow (mirrored) requests by outcome: sent (answered), failed, dropped (too many in flight), skipped (streamed body).",
		telemetry.Outcome{Result: "sent", N: &s.sent}, telemetry.Outcome{Result: "failed", N: &s.failed},
		telemetry.Outcome{Result: "dropped", N: &s.dropped}, telemetry.Outcome{Result: "skipped", N: &s.skipped})
}
