package translate

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// cdsAddrs maps endpoint address -> locality priority in an assignment.
func cdsAddrs(cla *endpointv3.ClusterLoadAssignment) map[string]uint32 {
	out := map[string]uint32{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			a := e.GetEndpoint().GetAddress()
			if p := a.GetPipe(); p != nil {
				out["unix://"+p.GetPath()] = l.GetPriority()
				continue
			}
			out[a.GetSocketAddress().GetAddress()] = l.GetPriority()
		}
	}
	return out
}

func TestEndpointsSubsetSelection(t *testing.T) {
	_, _, eds := cdsRun(t, cdsMesh(t), cdsSidecar())
	for _, tc := range []struct {
		cluster string
		want    []string
	}{
		{"outbound|9080||" + cdsReviews, []string{"10.0.1.1", "10.0.1.2", "10.0.2.1"}},
		{"outbound|9080|v1|" + cdsReviews, []string{"10.0.1.1"}},
		{"outbound|9090|v2|" + cdsReviews, []string{"10.0.1.2"}},
	} {
		got := cdsAddrs(cdsCLA(t, eds, tc.cluster))
		if len(got) != len(tc.want) {
			t.Errorf("%s: endpoints %v, want %v", tc.cluster, got, tc.want)
		}
		for _, a := range tc.want {
			if _, ok := got[a]; !ok {
				t.Errorf("%s: missing %s (have %v)", tc.cluster, a, got)
			}
		}
		if cla := cdsCLA(t, eds, tc.cluster); cla.GetClusterName() != tc.cluster {
			t.Errorf("cluster_name %q, want %q", cla.GetClusterName(), tc.cluster)
		}
	}
}

// reviewsWithDR is the reviews service from cdsMesh plus a custom DestinationRule.
func reviewsWithDR(t *testing.T, tp *networkingv1.TrafficPolicy, extra ...*config.Object) *model.Snapshot {
	objs := append(cdsMeshObjects()[:4], cdsDR("default", "reviews", &networkingv1.DestinationRule{Host: "reviews", TrafficPolicy: tp}))
	return cdsModel(t, append(objs, extra...)...)
}

func TestEndpointsLocalityFailover(t *testing.T) {
	outlier := &networkingv1.OutlierDetection{Consecutive_5XxErrors: cdsU32(3), Interval: cdsDur(time.Second)}
	for _, tc := range []struct {
		name  string
		tp    *networkingv1.TrafficPolicy
		proxy func(*model.Proxy)
		want  map[string]uint32
	}{
		{"failover with outlier detection", &networkingv1.TrafficPolicy{OutlierDetection: outlier}, nil,
			map[string]uint32{"10.0.1.1": 0, "10.0.1.2": 1, "10.0.2.1": 2}},
		{"no outlier detection: no priorities", &networkingv1.TrafficPolicy{}, nil,
			map[string]uint32{"10.0.1.1": 0, "10.0.1.2": 0, "10.0.2.1": 0}},
		{"explicitly disabled", &networkingv1.TrafficPolicy{OutlierDetection: outlier, LoadBalancer: &networkingv1.LoadBalancerSettings{
			LocalityLbSetting: &networkingv1.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(false)},
		}}, nil, map[string]uint32{"10.0.1.1": 0, "10.0.1.2": 0, "10.0.2.1": 0}},
		{"proxy locality from labels", &networkingv1.TrafficPolicy{OutlierDetection: outlier}, func(p *model.Proxy) {
			p.Metadata = nil
			p.Labels = map[string]string{cdsLabelRegion: "eu-west", cdsLabelZone: "eu-west-1a"}
		}, map[string]uint32{"10.0.2.1": 0, "10.0.1.1": 1, "10.0.1.2": 1}},
		{"unknown proxy locality", &networkingv1.TrafficPolicy{OutlierDetection: outlier}, func(p *model.Proxy) {
			p.Metadata = nil
		}, map[string]uint32{"10.0.1.1": 0, "10.0.1.2": 0, "10.0.2.1": 0}},
		{"failoverPriority by label", &networkingv1.TrafficPolicy{OutlierDetection: outlier, LoadBalancer: &networkingv1.LoadBalancerSettings{
			LocalityLbSetting: &networkingv1.LocalityLoadBalancerSetting{FailoverPriority: []string{"version"}},
		}}, func(p *model.Proxy) { p.Labels = map[string]string{"version": "v3"} },
			// v3 shares the label (priority 0 even though it is in another region).
			map[string]uint32{"10.0.2.1": 0, "10.0.1.1": 1, "10.0.1.2": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := cdsSidecar()
			if tc.proxy != nil {
				tc.proxy(p)
			}
			_, _, eds := cdsRun(t, reviewsWithDR(t, tc.tp), p)
			got := cdsAddrs(cdsCLA(t, eds, cdsReviews1))
			for a, w := range tc.want {
				if got[a] != w {
					t.Errorf("%s priority %d, want %d (all: %v)", a, got[a], w, got)
				}
			}
		})
	}
}

func TestEndpointsFailoverRegion(t *testing.T) {
	// Three regions; the failover rule sends us-east to ap-south before eu-west.
	extra := cdsWE("default", "reviews-v4", &networkingv1.WorkloadEntry{
		Address: "10.0.4.1", Labels: map[string]string{"app": "reviews", "version": "v4"}, Locality: "ap-south/ap-south-1a",
	})
	tp := &networkingv1.TrafficPolicy{
		OutlierDetection: &networkingv1.OutlierDetection{Consecutive_5XxErrors: cdsU32(3)},
		LoadBalancer: &networkingv1.LoadBalancerSettings{LocalityLbSetting: &networkingv1.LocalityLoadBalancerSetting{
			Failover: []*networkingv1.LocalityLoadBalancerSetting_Failover{{From: "us-east", To: "ap-south"}},
		}},
	}
	_, _, eds := cdsRun(t, reviewsWithDR(t, tp, extra), cdsSidecar())
	got := cdsAddrs(cdsCLA(t, eds, cdsReviews1))
	want := map[string]uint32{"10.0.1.1": 0, "10.0.1.2": 1, "10.0.4.1": 2, "10.0.2.1": 3}
	for a, w := range want {
		if got[a] != w {
			t.Errorf("%s priority %d, want %d (all %v)", a, got[a], w, got)
		}
	}
}

func TestEndpointsLocalityDistribute(t *testing.T) {
	tp := &networkingv1.TrafficPolicy{LoadBalancer: &networkingv1.LoadBalancerSettings{LocalityLbSetting: &networkingv1.LocalityLoadBalancerSetting{
		Distribute: []*networkingv1.LocalityLoadBalancerSetting_Distribute{{
			From: "us-east/us-east-1a/*",
			To:   map[string]uint32{"us-east/us-east-1a/*": 80, "us-east/us-east-1b/*": 20},
		}},
	}}}
	cds, _, eds := cdsRun(t, reviewsWithDR(t, tp), cdsSidecar())
	if cdsCluster(t, cds, cdsReviews1).GetCommonLbConfig().GetLocalityWeightedLbConfig() == nil {
		t.Error("distribute needs locality_weighted_lb_config on the cluster")
	}
	weights := map[string]uint32{}
	for _, l := range cdsCLA(t, eds, cdsReviews1).GetEndpoints() {
		weights[l.GetLocality().GetZone()] = l.GetLoadBalancingWeight().GetValue()
	}
	want := map[string]uint32{"us-east-1a": 80, "us-east-1b": 20}
	if len(weights) != len(want) || weights["us-east-1a"] != 80 || weights["us-east-1b"] != 20 {
		t.Errorf("locality weights %v, want %v (eu-west dropped)", weights, want)
	}
}

func TestEndpointsHealthWeightMetadata(t *testing.T) {
	vips, _ := model.NewVIPTable(nil)
	m, err := model.Build(config.NewSnapshot(1, cdsMeshObjects(), nil), model.BuildOptions{
		VIPs: vips,
		Health: func(k config.Key) (model.Health, bool) {
			return model.Unhealthy, k.Name == "reviews-v2"
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, eds := cdsRun(t, m, cdsSidecar())
	for _, l := range cdsCLA(t, eds, cdsReviews1).GetEndpoints() {
		var sum uint32
		for _, e := range l.GetLbEndpoints() {
			ip := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			want := corev3.HealthStatus_HEALTHY
			if ip == "10.0.1.2" {
				want = corev3.HealthStatus_UNHEALTHY
			}
			if e.GetHealthStatus() != want {
				t.Errorf("%s health %v, want %v", ip, e.GetHealthStatus(), want)
			}
			if e.GetLoadBalancingWeight().GetValue() != 2 {
				t.Errorf("%s weight %d, want 2 (WorkloadEntry weight)", ip, e.GetLoadBalancingWeight().GetValue())
			}
			sum += e.GetLoadBalancingWeight().GetValue()
			if wl := e.GetMetadata().GetFilterMetadata()["istio"].GetFields()["workload"].GetStringValue(); wl == "" {
				t.Errorf("%s: no istio workload metadata", ip)
			}
		}
		if l.GetLoadBalancingWeight().GetValue() != sum {
			t.Errorf("locality %v weight %d, want sum of endpoints %d", l.GetLocality(), l.GetLoadBalancingWeight().GetValue(), sum)
		}
	}
}

func TestEndpointsUnixAndEmpty(t *testing.T) {
	m := cdsModel(t,
		cdsSE("default", "uds", &networkingv1.ServiceEntry{
			Hosts: []string{"uds.default.svc.cluster.local"}, Ports: []*networkingv1.ServicePort{cdsPort("http", 80, "HTTP")},
			Resolution: networkingv1.ServiceEntry_STATIC,
			Endpoints:  []*networkingv1.WorkloadEntry{{Address: "unix:///var/run/app.sock"}},
		}),
		cdsSE("default", "empty", &networkingv1.ServiceEntry{
			Hosts: []string{"empty.default.svc.cluster.local"}, Ports: []*networkingv1.ServicePort{cdsPort("http", 80, "HTTP")},
			Resolution: networkingv1.ServiceEntry_STATIC,
		}),
	)
	_, _, eds := cdsRun(t, m, cdsSidecar())
	got := cdsAddrs(cdsCLA(t, eds, "outbound|80||uds.default.svc.cluster.local"))
	if _, ok := got["unix:///var/run/app.sock"]; !ok || len(got) != 1 {
		t.Errorf("unix endpoint: got %v, want one pipe /var/run/app.sock", got)
	}
	if cla := cdsCLA(t, eds, "outbound|80||empty.default.svc.cluster.local"); len(cla.GetEndpoints()) != 0 {
		t.Errorf("empty service assignment %v, want no endpoints", cla)
	}
	// grpc cannot dial pipes: the endpoint is left out and reported.
	_, warns, eds := cdsRun(t, m, cdsGRPCProxy())
	if got := cdsAddrs(cdsCLA(t, eds, "outbound|80||uds.default.svc.cluster.local")); len(got) != 0 {
		t.Errorf("grpc unix endpoints %v, want none", got)
	}
	cdsWantWarning(t, warns, "Unix socket")
}

// cdsServing simulates Envoy's priority selection without overprovisioning
// headroom: traffic goes to the healthy endpoints of the lowest priority
// that has any.
func cdsServing(cla *endpointv3.ClusterLoadAssignment) []string {
	best := map[uint32][]string{}
	minPrio := uint32(1 << 31)
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			if e.GetHealthStatus() == corev3.HealthStatus_UNHEALTHY {
				continue
			}
			best[l.GetPriority()] = append(best[l.GetPriority()], e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			minPrio = min(minPrio, l.GetPriority())
		}
	}
	return best[minPrio]
}

func TestEndpointsFailoverSimulation(t *testing.T) {
	tp := &networkingv1.TrafficPolicy{OutlierDetection: &networkingv1.OutlierDetection{Consecutive_5XxErrors: cdsU32(3)}}
	objs := append(cdsMeshObjects()[:4], cdsDR("default", "reviews", &networkingv1.DestinationRule{Host: "reviews", TrafficPolicy: tp}))
	for _, tc := range []struct {
		name      string
		unhealthy map[string]bool
		want      string
	}{
		{"all healthy: local zone", nil, "10.0.1.1"},
		{"local zone down: same region", map[string]bool{"reviews-v1": true}, "10.0.1.2"},
		{"region down: other region", map[string]bool{"reviews-v1": true, "reviews-v2": true}, "10.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vips, _ := model.NewVIPTable(nil)
			m, err := model.Build(config.NewSnapshot(1, objs, nil), model.BuildOptions{VIPs: vips,
				Health: func(k config.Key) (model.Health, bool) { return model.Unhealthy, tc.unhealthy[k.Name] }})
			if err != nil {
				t.Fatal(err)
			}
			_, _, eds := cdsRun(t, m, cdsSidecar())
			got := cdsServing(cdsCLA(t, eds, cdsReviews1))
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("traffic goes to %v, want [%s]", got, tc.want)
			}
		})
	}
}
