package xds

import (
	"maps"
	"testing"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/translate"
	"github.com/weftmesh/weft/internal/xds/xdstest"
)

// TestSplitGenerationMatchesWhole checks that, for translate's generator,
// the entry xds builds from the shared outbound part and the per-class
// inbound part holds exactly the resources (by content hash, i.e. by
// deterministic encoding) of whole-class generation; and that proxies
// which differ only in IPs that own nothing share one entry.
func TestSplitGenerationMatchesWhole(t *testing.T) {
	svcs := xdstest.Services(20, 3, 2)
	m, err := xdstest.Model(1, svcs)
	if err != nil {
		t.Fatal(err)
	}
	meta := DefaultClassMetadata
	sidecar := func(ns string, ips ...string) *model.Proxy {
		return &model.Proxy{ID: "x", Type: model.ProxySidecar, Namespace: ns, ServiceAccount: "default",
			Labels: map[string]string{"app": "a"}, IPs: ips, Metadata: map[string]string{"CLUSTER_ID": "k"}}
	}
	proxies := []*model.Proxy{
		sidecar("ns-0", "10.200.0.1"),
		sidecar("ns-0", "10.200.0.2"),
		sidecar("ns-0", svcs[2].Endpoints[0]),                       // owns an endpoint of svc-2
		sidecar("ns-1", svcs[1].Endpoints[1], "10.200.0.3"),         // owns one of svc-1
		sidecar("ns-1", svcs[1].Endpoints[2], svcs[3].Endpoints[0]), // two services
		{ID: "w", Type: model.ProxySidecar, Namespace: "ns-0", Workload: config.Key{Kind: config.KindWorkloadEntry, Namespace: "ns-0", Name: "none"}},
		{ID: "g", Type: model.ProxyGRPC, Namespace: "ns-1", IPs: []string{svcs[1].Endpoints[0]}},
	}
	whole := GeneratorFunc(translate.Generator{}.Generate) // hides the split
	split := translate.Generator{}
	keys := map[string]string{}
	memo := newWireMemo() // shared, as in a push: messages translate shares are encoded once
	for i, p := range proxies {
		wp, err := generateWhole(whole, m, classProxy(p, meta), nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := generateOutbound(split, m, outboundProxy(p, meta), memo)
		if err != nil {
			t.Fatal(err)
		}
		in, err := generateInbound(split, m, classProxy(p, meta), nil)
		if err != nil {
			t.Fatal(err)
		}
		e := newClassEntry(OutboundClassKey(p, meta), out, in)
		for _, typ := range xdsTypes {
			if !maps.Equal(wp.sets[typ].hashes, e.sets[typ].hashes) {
				t.Errorf("proxy %d: %s differs between whole and split generation:\nwhole %v\nsplit %v",
					i, shortType(typ), wp.sets[typ].hashes, e.sets[typ].hashes)
			}
		}
		keys[string(rune('a'+i))] = e.key
	}
	if keys["a"] != keys["b"] {
		t.Error("sidecars differing only in IPs that own nothing do not share an entry")
	}
	if keys["a"] == keys["c"] {
		t.Error("a sidecar owning an endpoint shares the entry of one owning none")
	}
}
