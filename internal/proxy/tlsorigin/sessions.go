package tlsorigin

import (
	"crypto/tls"
	"sync"
)

// maxSessions bounds the sessions kept per context (one per endpoint).
const maxSessions = 1024

// sessionCache keeps one resumption session per endpoint address of a
// context. Go keys sessions by SNI, which every endpoint of a cluster
// shares: a ticket of one endpoint would be offered to the next, which
// cannot decrypt it. Sessions taken with an earlier workload certificate
// are not resumed, so a rotated certificate reaches the peer on the next
// connection.
type sessionCache struct {
	current func() *tls.Certificate // the workload certificate; nil for file certificates

	mu sync.Mutex
	m  map[string]session
}

type session struct {
	state *tls.ClientSessionState
	cert  *tls.Certificate // workload certificate when the session was stored
}

func newSessionCache(current func() *tls.Certificate) *sessionCache {
	return &sessionCache{current: current, m: map[string]session{}}
}

func (c *sessionCache) forAddr(addr string) tls.ClientSessionCache { return addrSessions{c, addr} }

func (c *sessionCache) get(addr string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[addr]
	if !ok {
		return nil, false
	}
	if c.current != nil && s.cert != c.current() {
		delete(c.m, addr)
		return nil, false
	}
	return s.state, true
}

func (c *sessionCache) put(addr string, st *tls.ClientSessionState) {
	var cert *tls.Certificate
	if c.current != nil {
		cert = c.current()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st == nil {
		delete(c.m, addr)
		return
	}
	if _, ok := c.m[addr]; !ok && len(c.m) >= maxSessions {
		for k := range c.m { // full: drop one at random (map order)
			delete(c.m, k)
			break
		}
	}
	c.m[addr] = session{state: st, cert: cert}
}

func (c *sessionCache) forget(addr string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, addr)
	c.mu.Unlock()
}

// addrSessions is the tls.ClientSessionCache of one connection: Go's key
// (the SNI, or the address without one) is the same for every connection
// of a context to one endpoint, so the address alone keys the session.
type addrSessions struct {
	c    *sessionCache
	addr string
}

func (a addrSessions) Get(string) (*tls.ClientSessionState, bool) { return a.c.get(a.addr) }
func (a addrSessions) Put(_ string, st *tls.ClientSessionState)   { a.c.put(a.addr, st) }
