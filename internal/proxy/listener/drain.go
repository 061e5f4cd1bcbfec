package listener

// Draining of connections whose filter chain changed, as Envoy does: a
// connection is served by the chain it was dispatched with, and when an
// update removes or changes that chain (PeerAuthentication PERMISSIVE ->
// STRICT, say) the connection must not go on as if it had been accepted
// under the new one.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/runtime"
)

// defaultChainDrainTime is how long a TCP connection on a changed chain
// may go on before it is closed (Config.DrainTime).
const defaultChainDrainTime = 5 * time.Second

// chainConn is an accepted connection and the (listener, filter chain) it
// was dispatched with.
type chainConn struct {
	listener string
	chain    uint64 // runtime.FilterChain.Hash

	mu      sync.Mutex
	drained bool
	drain   func() // set by the server that took the connection
	// flag is what the HTTP engines poll (ServeConnDraining).
	flag atomic.Bool
}

// onDrain sets how the connection drains; if the drain already started, f
// runs now.
func (cc *chainConn) onDrain(f func()) {
	cc.mu.Lock()
	cc.drain = f
	started := cc.drained
	cc.mu.Unlock()
	if started {
		f()
	}
}

// startDrain drains the connection once.
func (cc *chainConn) startDrain() {
	cc.mu.Lock()
	if cc.drained {
		cc.mu.Unlock()
		return
	}
	cc.drained = true
	cc.flag.Store(true)
	f := cc.drain
	cc.mu.Unlock()
	if f != nil {
		f()
	}
}

// trackChain registers a connection dispatched by listener l's chain fc;
// the caller untracks it when the connection ends.
func (m *Manager) trackChain(l *runtime.Listener, fc *runtime.FilterChain) *chainConn {
	cc := &chainConn{listener: l.Name, chain: fc.Hash}
	m.mu.Lock()
	m.chainConns[cc] = struct{}{}
	m.mu.Unlock()
	return cc
}

func (m *Manager) untrackChain(cc *chainConn) {
	m.mu.Lock()
	delete(m.chainConns, cc)
	m.mu.Unlock()
}

// drainChangedChains drains every connection whose chain is not in s any
// more with the same content: HTTP/1.1 connections answer their next
// response with Connection: close and close (at once when idle), HTTP/2
// ones get GOAWAY, TCP ones are closed after the drain time.
func (m *Manager) drainChangedChains(s *runtime.Snapshot) {
	var stale []*chainConn
	m.mu.Lock()
	for cc := range m.chainConns {
		if !s.Listener(cc.listener).HasChain(cc.chain) {
			stale = append(stale, cc)
		}
	}
	m.mu.Unlock()
	if len(stale) == 0 {
		return
	}
	m.log.Info("draining connections of changed filter chains", "connections", len(stale))
	for _, cc := range stale {
		cc.startDrain()
	}
}

func (m *Manager) chainDrainTime() time.Duration {
	if m.cfg.DrainTime > 0 {
		return m.cfg.DrainTime
	}
	return defaultChainDrainTime
}
