package model

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"sync"
)

// VIPAllocator assigns stable virtual IPs to hosts that have no address.
type VIPAllocator interface {
	// VIPs returns an address for each host, allocating new ones as needed.
	// The same host must get the same address for as long as it exists.
	VIPs(hosts []string) (map[string]string, error)
}

// VIPStore persists allocations so they survive restarts.
type VIPStore interface {
	LoadVIPs() (map[string]string, error)
	SaveVIPs(map[string]string) error
}

// VIPTable allocates from 240.240.0.0/16 (Istio's auto-allocation range):
// a host's first choice is derived from a hash of its name, collisions probe
// forward, and every allocation is persisted through the store. Hosts that
// disappear release their address.
type VIPTable struct {
	mu     sync.Mutex
	store  VIPStore
	byHost map[string]string
}

var _ VIPAllocator = (*VIPTable)(nil)

const vipBase = 240<<24 | 240<<16

// NewVIPTable loads existing allocations from store (nil store: memory only).
func NewVIPTable(store VIPStore) (*VIPTable, error) {
	t := &VIPTable{store: store, byHost: map[string]string{}}
	if store != nil {
		m, err := store.LoadVIPs()
		if err != nil {
			return nil, fmt.Errorf("model: load VIP allocations: %w", err)
		}
		for h, ip := range m {
			t.byHost[h] = ip
		}
	}
	return t, nil
}

// VIPs implements VIPAllocator.
func (t *VIPTable) VIPs(hosts []string) (map[string]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	want := map[string]bool{}
	for _, h := range hosts {
		want[h] = true
	}
	changed := false
	for h := range t.byHost {
		if !want[h] {
			delete(t.byHost, h)
			changed = true
		}
	}
	used := map[string]bool{}
	for _, ip := range t.byHost {
		used[ip] = true
	}
	sorted := append([]string(nil), hosts...)
	sort.Strings(sorted)
	for _, h := range sorted {
		if _, ok := t.byHost[h]; ok {
			continue
		}
		ip, err := pickVIP(h, used)
		if err != nil {
			return nil, err
		}
		t.byHost[h] = ip
		used[ip] = true
		changed = true
	}
	if changed && t.store != nil {
		cp := make(map[string]string, len(t.byHost))
		for h, ip := range t.byHost {
			cp[h] = ip
		}
		if err := t.store.SaveVIPs(cp); err != nil {
			return nil, fmt.Errorf("model: persist VIP allocations: %w", err)
		}
	}
	out := make(map[string]string, len(hosts))
	for _, h := range hosts {
		out[h] = t.byHost[h]
	}
	return out, nil
}

func pickVIP(host string, used map[string]bool) (string, error) {
	h := fnv.New32a()
	h.Write([]byte(host))
	// Skip .0 and .255 style edge addresses by using offsets 1..65534.
	start := h.Sum32()%65534 + 1
	for i := uint32(0); i < 65534; i++ {
		off := (start-1+i)%65534 + 1
		v := uint32(vipBase) | off
		ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
		if !used[ip] {
			return ip, nil
		}
	}
	return "", fmt.Errorf("model: VIP range 240.240.0.0/16 exhausted")
}
