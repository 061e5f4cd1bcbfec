package translate

import (
	"fmt"
	"testing"

	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// benchMesh builds n services over 10 namespaces, each with 10 inline
// endpoints; every fifth service also has a TCP port, and the first vsCount
// services get a VirtualService with a header route and a weighted split.
func benchMesh(b *testing.B, n, vsCount int) *model.Snapshot {
	b.Helper()
	var objs []*config.Object
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns%d", i%10)
		name := fmt.Sprintf("svc%d", i)
		ports := rtPorts(rtPort("http", 8080, "HTTP"))
		if i%5 == 0 {
			ports = append(ports, rtPort("tcp", 5432, "TCP"))
		}
		se := &networkingv1.ServiceEntry{
			Hosts:      []string{name + "." + ns + ".svc.cluster.local"},
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 100+i/65536, (i/256)%256, i%256)},
			Ports:      ports,
			Resolution: networkingv1.ServiceEntry_STATIC,
		}
		for e := 0; e < 10; e++ {
			se.Endpoints = append(se.Endpoints, &networkingv1.WorkloadEntry{
				Address: fmt.Sprintf("172.%d.%d.%d", 16+e, (i/256)%256, i%256),
				Labels:  map[string]string{"app": name, "version": fmt.Sprintf("v%d", e%2+1)},
			})
		}
		objs = append(objs, rtObj(config.KindServiceEntry, ns, name, 0, se))
		if i < vsCount {
			objs = append(objs, rtObj(config.KindVirtualService, ns, name, i, &networkingv1.VirtualService{
				Hosts: []string{name},
				Http: []*networkingv1.HTTPRoute{
					{
						Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{"end-user": rtExact("jason")}}},
						Route: []*networkingv1.HTTPRouteDestination{rtDest(name, "v2", 0)},
					},
					{Route: []*networkingv1.HTTPRouteDestination{rtDest(name, "v1", 90), rtDest(name, "v2", 10)}},
				},
			}))
		}
	}
	return rtModel(b, objs...)
}

func BenchmarkRoutes1000Services(b *testing.B) {
	snap := benchMesh(b, 1000, 200)
	in := Input{Model: snap, Proxy: &model.Proxy{ID: "bench", Type: model.ProxySidecar, Namespace: "ns0",
		Labels: map[string]string{"app": "svc0"}, IPs: []string{"172.16.0.0"}}}
	l, _ := Listeners(in)
	r, _ := Routes(in)
	if len(l) < 200 || len(r) != 1 {
		b.Fatalf("unexpected output: %d listeners, %d route configurations", len(l), len(r))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Listeners(in)
		Routes(in)
	}
}
