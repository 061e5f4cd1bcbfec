package router

import (
	"sync/atomic"
	"unsafe"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// handoff carries a request's state from Route to RequestEnd without a
// closure: h1 calls both on the connection's goroutine, one after the
// other, with the same *h1.Request (one per connection), so the Request's
// address is a unique key for the request in flight on that connection.
// The table is open-addressed with atomic slots; only the owning goroutine
// removes its key. It holds uintptrs, not pointers: an entry lives only
// between Route and RequestEnd, while h1 keeps the Request alive.
//
// This exists because h1.Decision.Done does not see the byte counts of the
// Summary; a per-request context pointer in h1 would make it unnecessary.
//
// One table serves every Router of the process: Request addresses are unique
// across servers, and the table's size then does not grow with the number of
// listeners.
type handoff struct {
	slots [handoffSlots]slot
}

var shared handoff

const (
	handoffSlots = 1 << 14
	handoffProbe = 64
)

type slot struct {
	key atomic.Uintptr
	val atomic.Pointer[reqState]
}

func keyOf(req *h1.Request) uintptr { return uintptr(unsafe.Pointer(req)) }

func index(k uintptr) uintptr {
	k ^= k >> 17
	k *= 0x9E3779B97F4A7C15
	return k >> 7
}

func (h *handoff) put(req *h1.Request, st *reqState) bool {
	k := keyOf(req)
	i := index(k)
	for n := uintptr(0); n < handoffProbe; n++ {
		s := &h.slots[(i+n)&(handoffSlots-1)]
		if s.key.CompareAndSwap(0, k) {
			s.val.Store(st)
			return true
		}
	}
	return false
}

func (h *handoff) take(req *h1.Request) *reqState {
	k := keyOf(req)
	i := index(k)
	for n := uintptr(0); n < handoffProbe; n++ {
		s := &h.slots[(i+n)&(handoffSlots-1)]
		if s.key.Load() == k {
			st := s.val.Swap(nil)
			s.key.Store(0)
			return st
		}
	}
	return nil
}
