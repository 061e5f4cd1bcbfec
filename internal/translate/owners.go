package translate

import (
	"cmp"
	"slices"
	"sync"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// ownerIndex lists, for one model snapshot, where each endpoint address
// and each WorkloadEntry appears: the inbound side of every sidecar needs
// "my endpoints", and scanning all endpoints per proxy (10,000 of them,
// for 1,000 proxies, twice) dominated endpoint-only pushes.
type ownerIndex struct {
	byAddr     map[string][]endpointRef
	byWorkload map[config.Key][]endpointRef
}

// endpointRef is one endpoint by position: the service's index in
// Model.Services() and the endpoint's in Model.Endpoints(host).
type endpointRef struct{ svc, ep int }

// ownerCache holds the index of the most recent model. Snapshots are
// immutable, so the pointer identifies the content; generation runs for
// one model at a time, so one entry suffices.
var ownerCache struct {
	sync.Mutex
	model *model.Snapshot
	index *ownerIndex
}

func ownersOf(m *model.Snapshot) *ownerIndex {
	ownerCache.Lock()
	defer ownerCache.Unlock()
	if ownerCache.model == m {
		return ownerCache.index
	}
	idx := &ownerIndex{byAddr: map[string][]endpointRef{}, byWorkload: map[config.Key][]endpointRef{}}
	for i, svc := range m.Services() {
		for j, e := range m.Endpoints(svc.Hostname) {
			idx.byAddr[e.Address] = append(idx.byAddr[e.Address], endpointRef{i, j})
			if e.Workload.Name != "" {
				idx.byWorkload[e.Workload] = append(idx.byWorkload[e.Workload], endpointRef{i, j})
			}
		}
	}
	ownerCache.model, ownerCache.index = m, idx
	return idx
}

// ownedEndpoints calls f for every endpoint that belongs to p (by
// WorkloadEntry or address, see ownsEndpoint), in model order: services
// in Model.Services() order, endpoints in Model.Endpoints order — the
// order a full scan would visit them in.
func ownedEndpoints(m *model.Snapshot, p *model.Proxy, f func(svc *model.Service, e *model.Endpoint)) {
	idx := ownersOf(m)
	var refs []endpointRef
	if p.Workload.Name != "" {
		refs = append(refs, idx.byWorkload[p.Workload]...)
	}
	for _, ip := range p.IPs {
		refs = append(refs, idx.byAddr[ip]...)
	}
	if len(refs) == 0 {
		return
	}
	slices.SortFunc(refs, func(a, b endpointRef) int {
		if c := cmp.Compare(a.svc, b.svc); c != 0 {
			return c
		}
		return cmp.Compare(a.ep, b.ep)
	})
	refs = slices.Compact(refs)
	svcs := m.Services()
	for _, r := range refs {
		svc := svcs[r.svc]
		f(svc, m.Endpoints(svc.Hostname)[r.ep])
	}
}
