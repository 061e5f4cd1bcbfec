package translate

import (
	"fmt"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
)

// cdsScaleObjects builds nServices STATIC services in namespace "default",
// each with epsPerService WorkloadEntries spread over 3 zones and 2 versions,
// and a DestinationRule with subsets v1/v2 (plus outlier detection, so
// locality failover is on) for the first nDR services.
func cdsScaleObjects(nServices, epsPerService, nDR int) []*config.Object {
	var objs []*config.Object
	zones := []string{"us-east/us-east-1a", "us-east/us-east-1b", "eu-west/eu-west-1a"}
	for i := range nServices {
		app := fmt.Sprintf("svc%04d", i)
		objs = append(objs, cdsSE("default", app, &networkingv1.ServiceEntry{
			Hosts:            []string{app + ".default.svc.cluster.local"},
			Ports:            []*networkingv1.ServicePort{cdsPort("http", 8080, "HTTP")},
			Resolution:       networkingv1.ServiceEntry_STATIC,
			WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": app}},
		}))
		for j := range epsPerService {
			objs = append(objs, cdsWE("default", fmt.Sprintf("%s-%d", app, j), &networkingv1.WorkloadEntry{
				Address:        fmt.Sprintf("10.%d.%d.%d", i/250+100, i%250, j+1),
				Labels:         map[string]string{"app": app, "version": fmt.Sprintf("v%d", j%2+1)},
				Locality:       zones[j%len(zones)],
				ServiceAccount: app,
			}))
		}
		if i < nDR {
			objs = append(objs, cdsDR("default", app, &networkingv1.DestinationRule{
				Host: app,
				TrafficPolicy: &networkingv1.TrafficPolicy{
					OutlierDetection: &networkingv1.OutlierDetection{Consecutive_5XxErrors: cdsU32(5), Interval: cdsDur(10 * time.Second)},
				},
				Subsets: []*networkingv1.Subset{
					{Name: "v1", Labels: map[string]string{"version": "v1"}},
					{Name: "v2", Labels: map[string]string{"version": "v2"}},
				},
			}))
		}
	}
	return objs
}

// BenchmarkClustersEndpoints1000Services: 1,000 services, 10,000 endpoints,
// 300 DestinationRules with 2 subsets, full CDS + EDS for one sidecar.
func BenchmarkClustersEndpoints1000Services(b *testing.B) {
	m := cdsModel(b, cdsScaleObjects(1000, 10, 300)...)
	in := Input{Model: m, Proxy: cdsSidecar()}
	b.ReportAllocs()
	for b.Loop() {
		cds, _ := Clusters(in)
		eds := Endpoints(in)
		if len(cds) < 1600 || len(eds) < 1600 {
			b.Fatalf("got %d clusters, %d assignments", len(cds), len(eds))
		}
	}
}

func TestClustersScaleValid(t *testing.T) {
	m := cdsModel(t, cdsScaleObjects(50, 10, 20)...)
	cds, _, eds := cdsRun(t, m, cdsSidecar())
	// 50 default clusters + 20*2 subset clusters + 3 fixed.
	if len(cds) != 50+40+3 || len(eds) != 90 {
		t.Errorf("got %d clusters, %d assignments; want 93 and 90", len(cds), len(eds))
	}
}

// BenchmarkClustersEndpoints1000ServicesColdModel is the benchmark above
// for the first class of a model: the per-model cache (owner index, shared
// LbEndpoints and load assignments) is dropped before every run. The warm
// one is the cost of every further class of the same model.
func BenchmarkClustersEndpoints1000ServicesColdModel(b *testing.B) {
	m := cdsModel(b, cdsScaleObjects(1000, 10, 300)...)
	in := Input{Model: m, Proxy: cdsSidecar()}
	b.ReportAllocs()
	for b.Loop() {
		latestModel.Lock()
		latestModel.c = nil
		latestModel.Unlock()
		cds, _ := Clusters(in)
		eds := Endpoints(in)
		if len(cds) < 1600 || len(eds) < 1600 {
			b.Fatalf("got %d clusters, %d assignments", len(cds), len(eds))
		}
	}
}
