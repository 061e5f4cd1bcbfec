package translate

import (
	"slices"
	"testing"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// TestOwnedEndpointsMatchesScan checks the index against the full scan it
// replaces, for proxies owning endpoints by address, by WorkloadEntry, by
// both, and not at all, across two model snapshots (the cache must follow
// the model).
func TestOwnedEndpointsMatchesScan(t *testing.T) {
	for _, m := range []*model.Snapshot{cdsModel(t, cdsScaleObjects(30, 4, 5)...), rtModel(t, bookinfoObjects()...), cdsMesh(t)} {
		var proxies []*model.Proxy
		for _, svc := range m.Services() {
			for _, e := range m.Endpoints(svc.Hostname) {
				proxies = append(proxies,
					&model.Proxy{IPs: []string{e.Address}},
					&model.Proxy{IPs: []string{"192.0.2.1", e.Address, e.Address}},
					&model.Proxy{Workload: e.Workload},
					&model.Proxy{Workload: e.Workload, IPs: []string{e.Address}})
			}
		}
		proxies = append(proxies, &model.Proxy{}, &model.Proxy{IPs: []string{"192.0.2.1"}},
			&model.Proxy{Workload: config.Key{Kind: config.KindWorkloadEntry, Namespace: "x", Name: "none"}})
		for _, p := range proxies {
			var want, got []*model.Endpoint
			for _, svc := range m.Services() {
				for _, e := range m.Endpoints(svc.Hostname) {
					if ownsEndpoint(p, e) {
						want = append(want, e)
					}
				}
			}
			ownedEndpoints(m, p, func(_ *model.Service, e *model.Endpoint) { got = append(got, e) })
			if !slices.Equal(got, want) {
				t.Fatalf("proxy %+v: index gives %d endpoints, scan %d", p, len(got), len(want))
			}
		}
	}
}

// TestSharedClustersReplayWarnings checks that a proxy served from the
// per-model cluster cache gets the same warnings as one that built them.
func TestSharedClustersReplayWarnings(t *testing.T) {
	m := cdsMesh(t)
	total := 0
	for _, p := range []*model.Proxy{cdsSidecar(), cdsGRPCProxy()} {
		in := Input{Model: m, Proxy: p}
		latestModel.Lock()
		latestModel.c = nil
		latestModel.Unlock()
		cold, coldW := Clusters(in)
		warm, warmW := Clusters(in)
		if !slices.Equal(coldW, warmW) {
			t.Errorf("%s: warnings differ:\ncold %q\nwarm %q", p.Type, coldW, warmW)
		}
		if len(cold) != len(warm) {
			t.Errorf("%s: %d vs %d clusters", p.Type, len(cold), len(warm))
		}
		total += len(coldW)
	}
	if total == 0 {
		t.Fatal("fixture produced no warnings; the test checks nothing")
	}
}
