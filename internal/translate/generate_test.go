package translate

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
)

// TestGenerateConsistentHashPairsRouteAndCluster checks the join between
// CDS and RDS: a consistentHash DestinationRule gives the cluster a hashing
// LB and the route that targets it the hash key.
func TestGenerateConsistentHashPairsRouteAndCluster(t *testing.T) {
	se := rtObj(config.KindServiceEntry, "default", "cart", 0, &networkingv1.ServiceEntry{
		Hosts: []string{"cart.default.svc.cluster.local"}, Ports: rtPorts(rtPort("http", 8080, "HTTP")),
		Resolution: networkingv1.ServiceEntry_STATIC, Endpoints: []*networkingv1.WorkloadEntry{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}},
	})
	dr := rtObj(config.KindDestinationRule, "default", "cart", 0, &networkingv1.DestinationRule{
		Host: "cart",
		TrafficPolicy: &networkingv1.TrafficPolicy{LoadBalancer: &networkingv1.LoadBalancerSettings{
			LbPolicy: &networkingv1.LoadBalancerSettings_ConsistentHash{ConsistentHash: &networkingv1.LoadBalancerSettings_ConsistentHashLB{
				HashKey: &networkingv1.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"},
			}},
		}},
	})
	for _, withVS := range []bool{false, true} {
		objs := []*config.Object{se, dr}
		if withVS {
			objs = append(objs, rtObj(config.KindVirtualService, "default", "cart", 0, &networkingv1.VirtualService{
				Hosts: []string{"cart"},
				Http:  []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{rtDest("cart", "", 0)}}},
			}))
		}
		res, err := Generator{}.Generate(Input{Model: rtModel(t, objs...), Proxy: productpageProxy()})
		if err != nil {
			t.Fatal(err)
		}
		rc, ok := res.Routes["8080"].(*routev3.RouteConfiguration)
		if !ok {
			t.Fatalf("withVS=%v: no route config 8080", withVS)
		}
		found := false
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetRoute().GetCluster() == "outbound|8080||cart.default.svc.cluster.local" {
					hp := r.GetRoute().GetHashPolicy()
					if len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-user" {
						t.Fatalf("withVS=%v: route to cart has hash policy %v, want header x-user", withVS, hp)
					}
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("withVS=%v: no route to the cart cluster", withVS)
		}
		if _, ok := res.Clusters["outbound|8080||cart.default.svc.cluster.local"]; !ok {
			t.Fatalf("withVS=%v: cart cluster missing", withVS)
		}
	}
}
