package translate

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// TestGenerateSplitMatchesWhole checks the contract the xds package relies
// on to share outbound output between workloads: GenerateOutbound given a
// proxy with IPs and workload removed, merged with GenerateInbound given the
// full proxy, equals Generate for the full proxy — resource by resource.
func TestGenerateSplitMatchesWhole(t *testing.T) {
	bookinfo := rtModel(t, bookinfoObjects()...)
	mesh := cdsMesh(t)
	cases := []struct {
		name  string
		model *model.Snapshot
		proxy *model.Proxy
	}{
		{"bookinfo/productpage", bookinfo, productpageProxy()},
		{"bookinfo/details", bookinfo, detailsProxy()},
		{"bookinfo/ratings", bookinfo, ratingsProxy()},
		{"bookinfo/grpc", bookinfo, grpcProxy()},
		{"bookinfo/router", bookinfo, &model.Proxy{Type: model.ProxyRouter, Namespace: "default"}},
		{"mesh/sidecar", mesh, cdsSidecar()},
		{"mesh/grpc", mesh, cdsGRPCProxy()},
		{"scale/sidecar-owning-endpoints", cdsModel(t, cdsScaleObjects(20, 3, 5)...), &model.Proxy{
			Type: model.ProxySidecar, Namespace: "default", Labels: map[string]string{"app": "svc0001"},
			IPs:      []string{"10.100.1.1", "10.100.2.2"},
			Workload: config.Key{Kind: config.KindWorkloadEntry, Namespace: "default", Name: "svc0003-0"},
			Metadata: map[string]string{cdsLocalityMetadataKey: "us-east/us-east-1a"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := Generator{}
			whole, err := g.Generate(Input{Model: tc.model, Proxy: tc.proxy})
			if err != nil {
				t.Fatal(err)
			}
			anon := *tc.proxy
			anon.IPs, anon.Workload = nil, config.Key{}
			split, err := g.GenerateOutbound(Input{Model: tc.model, Proxy: &anon})
			if err != nil {
				t.Fatal(err)
			}
			in, err := g.GenerateInbound(Input{Model: tc.model, Proxy: tc.proxy})
			if err != nil {
				t.Fatal(err)
			}
			if len(in.Warnings) != 0 {
				t.Errorf("GenerateInbound warned: %v", in.Warnings)
			}
			split.Merge(in)
			for _, typ := range []string{ListenerType, RouteType, ClusterType, EndpointType} {
				a, b := whole.ByType(typ), split.ByType(typ)
				if len(a) != len(b) {
					t.Errorf("%s: whole has %d resources, split %d", typ, len(a), len(b))
				}
				for name, m := range a {
					if !proto.Equal(m, b[name]) {
						t.Errorf("%s %s differs between whole and split generation", typ, name)
					}
				}
			}
			if len(whole.Warnings) != len(split.Warnings) {
				t.Errorf("warnings: whole %d, split %d", len(whole.Warnings), len(split.Warnings))
			}
		})
	}
}

// TestGenerateSplitInboundIsOwn checks that the split is not vacuous: a
// sidecar that owns endpoints gets inbound clusters and filter chains from
// GenerateInbound only.
func TestGenerateSplitInboundIsOwn(t *testing.T) {
	m := cdsModel(t, cdsScaleObjects(5, 2, 0)...)
	p := &model.Proxy{Type: model.ProxySidecar, Namespace: "default", IPs: []string{"10.100.2.1"}}
	in, _ := Generator{}.GenerateInbound(Input{Model: m, Proxy: p})
	if _, ok := in.Clusters["inbound|8080||svc0002.default.svc.cluster.local"]; !ok || len(in.Clusters) != 1 {
		t.Errorf("inbound clusters = %v", cdsSortedKeys(in.Clusters))
	}
	if _, ok := in.Listeners[VirtualInboundListener]; !ok || len(in.Listeners) != 1 {
		t.Errorf("inbound listeners = %v", cdsSortedKeys(in.Listeners))
	}
	out, _ := Generator{}.GenerateOutbound(Input{Model: m, Proxy: p})
	for name := range out.Clusters {
		if name[:8] == "inbound|" {
			t.Errorf("outbound generation produced %s", name)
		}
	}
	if _, ok := out.Listeners[VirtualInboundListener]; ok {
		t.Errorf("outbound generation produced %s", VirtualInboundListener)
	}
}

// TestGenerateConcurrentSharesModelCache runs generation for several
// proxies of one model in parallel (as the xds package does) and checks
// each result equals a sequential run: the per-model cache (owner index,
// shared LbEndpoints) must be safe and must not leak between proxies.
func TestGenerateConcurrentSharesModelCache(t *testing.T) {
	m := cdsModel(t, cdsScaleObjects(30, 4, 10)...)
	var proxies []*model.Proxy
	for i := range 8 {
		p := cdsSidecar()
		p.IPs = []string{m.Endpoints(m.Services()[i].Hostname)[0].Address}
		if i%2 == 1 {
			p.Metadata = map[string]string{cdsLocalityMetadataKey: "eu-west/eu-west-1a"}
		}
		proxies = append(proxies, p)
	}
	proxies = append(proxies, cdsGRPCProxy())
	want := make([]*Resources, len(proxies))
	for i, p := range proxies {
		want[i], _ = Generator{}.Generate(Input{Model: m, Proxy: p})
	}
	got := make([]*Resources, len(proxies))
	done := make(chan int)
	for i, p := range proxies {
		go func() {
			got[i], _ = Generator{}.Generate(Input{Model: m, Proxy: p})
			done <- i
		}()
	}
	for range proxies {
		<-done
	}
	for i := range proxies {
		for _, typ := range []string{ListenerType, RouteType, ClusterType, EndpointType} {
			a, b := want[i].ByType(typ), got[i].ByType(typ)
			if len(a) != len(b) {
				t.Fatalf("proxy %d %s: %d vs %d resources", i, typ, len(a), len(b))
			}
			for name, r := range a {
				if !proto.Equal(r, b[name]) {
					t.Errorf("proxy %d: %s %s differs between sequential and parallel generation", i, typ, name)
				}
			}
		}
	}
}
