package translate

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// TestProxyMetadataKeysComplete fails when translation starts reading a
// Proxy.Metadata key that ProxyMetadataKeys does not list (the xds cache
// would then share output between proxies that must differ).
func TestProxyMetadataKeysComplete(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`Metadata\[("?[A-Za-z_]+"?)\]`)
	known := map[string]bool{`"LOCALITY"`: true, "cdsLocalityMetadataKey": true}
	for _, k := range ProxyMetadataKeys {
		known[`"`+k+`"`] = true
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			if !known[m[1]] {
				t.Errorf("%s reads Proxy.Metadata[%s], which ProxyMetadataKeys does not list", f, m[1])
			}
		}
	}
}
