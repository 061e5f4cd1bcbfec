package tlsorigin

import (
	"maps"
	"sync"
	"sync/atomic"
)

// maxPeers bounds the principal table (endpoints churn over a long life).
const maxPeers = 4096

// peerTable remembers the SPIFFE ID last verified at each (address,
// context). Reads are lock-free and allocation-free; writes copy the map
// and happen only when a handshake sees a different identity.
type peerTable struct {
	mu sync.Mutex
	m  atomic.Pointer[map[peerKey]string]
}

type peerKey struct{ addr, key string }

func (t *peerTable) get(addr, key string) string {
	if m := t.m.Load(); m != nil {
		return (*m)[peerKey{addr, key}]
	}
	return ""
}

func (t *peerTable) set(addr, key, principal string) {
	if t.get(addr, key) == principal {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := map[peerKey]string{}
	if m := t.m.Load(); m != nil && len(*m) < maxPeers {
		next = maps.Clone(*m)
	}
	next[peerKey{addr, key}] = principal
	t.m.Store(&next)
}

// retain drops entries whose context is gone.
func (t *peerTable) retain(keep func(key string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.m.Load()
	if m == nil {
		return
	}
	next := maps.Clone(*m)
	maps.DeleteFunc(next, func(k peerKey, _ string) bool { return !keep(k.key) })
	if len(next) != len(*m) {
		t.m.Store(&next)
	}
}
