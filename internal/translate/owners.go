package translate

import (
	"cmp"
	"slices"
	"sync"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

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

// modelCache holds what translate derives from one model snapshot alone
// (never from a proxy), shared by the generation of every proxy class.
// Snapshots are immutable, so the pointer identifies the content; the xds
// package generates for one model at a time, so only the latest is kept.
type modelCache struct {
	model      *model.Snapshot
	ownersOnce sync.Once
	owners     *ownerIndex
	// lbEndpoints maps *model.Endpoint to its *endpointv3.LbEndpoint
	// (cdsLbEndpoint reads nothing else); shared, so read-only.
	lbEndpoints sync.Map
	// loadAssignments maps claKey to a shared, read-only
	// *endpointv3.ClusterLoadAssignment (see sharedLoadAssignment).
	loadAssignments sync.Map
	// clusters maps clusterKey to a *sharedCluster (see sharedOutboundCluster).
	clusters sync.Map
}

var latestModel struct {
	sync.Mutex
	c *modelCache
}

func cacheOf(m *model.Snapshot) *modelCache {
	latestModel.Lock()
	defer latestModel.Unlock()
	if c := latestModel.c; c != nil && c.model == m {
		return c
	}
	c := &modelCache{model: m}
	latestModel.c = c
	return c
}

func ownersOf(m *model.Snapshot) *ownerIndex {
	c := cacheOf(m)
	c.ownersOnce.Do(func() {
		idx := &ownerIndex{byAddr: map[string][]endpointRef{}, byWorkload: map[config.Key][]endpointRef{}}
		for i, svc := range m.Services() {
			for j, e := range m.Endpoints(svc.Hostname) {
				idx.byAddr[e.Address] = append(idx.byAddr[e.Address], endpointRef{i, j})
				if e.Workload.Name != "" {
					idx.byWorkload[e.Workload] = append(idx.byWorkload[e.Workload], endpointRef{i, j})
				}
			}
		}
		c.owners = idx
	})
	return c.owners
}

// sharedLbEndpoint returns cdsLbEndpoint(e), built once per model: every
// class, and every subset cluster, that includes e gets the same message.
func sharedLbEndpoint(c *modelCache, e *model.Endpoint) *endpointv3.LbEndpoint {
	if v, ok := c.lbEndpoints.Load(e); ok {
		return v.(*endpointv3.LbEndpoint)
	}
	v, _ := c.lbEndpoints.LoadOrStore(e, cdsLbEndpoint(e))
	return v.(*endpointv3.LbEndpoint)
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
