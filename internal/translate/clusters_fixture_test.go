package translate

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// Test fixtures for the cluster/endpoint generators. Names carry a "cds"
// prefix because the package's listener/route tests live alongside.

var cdsEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cdsObj(kind config.Kind, ns, name string, spec proto.Message) *config.Object {
	return &config.Object{
		Kind: kind, APIVersion: "networking.istio.io/v1",
		Meta: config.Meta{Name: name, Namespace: ns, CreationTimestamp: cdsEpoch},
		Spec: spec,
	}
}

func cdsSE(ns, name string, se *networkingv1.ServiceEntry) *config.Object {
	return cdsObj(config.KindServiceEntry, ns, name, se)
}

func cdsWE(ns, name string, we *networkingv1.WorkloadEntry) *config.Object {
	return cdsObj(config.KindWorkloadEntry, ns, name, we)
}

func cdsDR(ns, name string, dr *networkingv1.DestinationRule) *config.Object {
	return cdsObj(config.KindDestinationRule, ns, name, dr)
}

func cdsModel(t testing.TB, objs ...*config.Object) *model.Snapshot {
	t.Helper()
	vips, err := model.NewVIPTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(config.NewSnapshot(1, objs, nil), model.BuildOptions{VIPs: vips})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cdsSidecar is a sidecar for WorkloadEntry default/productpage in us-east/us-east-1a.
func cdsSidecar() *model.Proxy {
	return &model.Proxy{
		ID:        "sidecar~10.0.0.1~productpage.default~default.svc.cluster.local",
		Type:      model.ProxySidecar,
		Namespace: "default",
		Labels:    map[string]string{"app": "productpage"},
		IPs:       []string{"10.0.0.1"},
		Metadata:  map[string]string{cdsLocalityMetadataKey: "us-east/us-east-1a"},
		Workload:  config.Key{Kind: config.KindWorkloadEntry, Namespace: "default", Name: "productpage"},
	}
}

func cdsGRPCProxy() *model.Proxy {
	p := cdsSidecar()
	p.ID = "grpc-client"
	p.Type = model.ProxyGRPC
	p.Workload = config.Key{}
	p.IPs = nil
	return p
}

func cdsPort(name string, n uint32, proto string) *networkingv1.ServicePort {
	return &networkingv1.ServicePort{Name: name, Number: n, Protocol: proto}
}

func cdsU32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

func cdsDur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// cdsMesh is the fixture used by the golden files and most table tests:
//
//   - reviews (STATIC, http 9080 + grpc 9090) with three WorkloadEntries in
//     three localities, v2 unhealthy, v3 labelled tlsMode=disabled; a
//     DestinationRule with subsets v1/v2, top-level LEAST_REQUEST + outlier
//     detection + connection pool, port 9090 consistent hash, subset v2 ROUND_ROBIN;
//   - productpage (STATIC) whose endpoint is the test sidecar itself;
//   - httpbin.org (DNS, MESH_EXTERNAL, 443) with SIMPLE TLS origination;
//   - db.example.com (DNS_ROUND_ROBIN) and *.wild.example.com (NONE);
//   - ratings (STATIC, 9080) with ISTIO_MUTUAL and explicit SANs.
func cdsMesh(t testing.TB) *model.Snapshot {
	return cdsModel(t, cdsMeshObjects()...)
}

func cdsMeshObjects() []*config.Object {
	reviewsWE := func(name, ip, version, locality string, extra map[string]string) *config.Object {
		labels := map[string]string{"app": "reviews", "version": version}
		for k, v := range extra {
			labels[k] = v
		}
		return cdsWE("default", name, &networkingv1.WorkloadEntry{
			Address: ip, Labels: labels, Locality: locality, ServiceAccount: "reviews", Weight: 2,
		})
	}
	return []*config.Object{
		cdsSE("default", "reviews", &networkingv1.ServiceEntry{
			Hosts:            []string{"reviews.default.svc.cluster.local"},
			Ports:            []*networkingv1.ServicePort{cdsPort("http", 9080, "HTTP"), cdsPort("grpc", 9090, "GRPC")},
			Resolution:       networkingv1.ServiceEntry_STATIC,
			Location:         networkingv1.ServiceEntry_MESH_INTERNAL,
			WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "reviews"}},
		}),
		reviewsWE("reviews-v1", "10.0.1.1", "v1", "us-east/us-east-1a", nil),
		reviewsWE("reviews-v2", "10.0.1.2", "v2", "us-east/us-east-1b", nil),
		reviewsWE("reviews-v3", "10.0.2.1", "v3", "eu-west/eu-west-1a", map[string]string{cdsTLSModeLabel: "disabled"}),
		cdsDR("default", "reviews", &networkingv1.DestinationRule{
			Host: "reviews",
			TrafficPolicy: &networkingv1.TrafficPolicy{
				LoadBalancer: &networkingv1.LoadBalancerSettings{
					LbPolicy: &networkingv1.LoadBalancerSettings_Simple{Simple: networkingv1.LoadBalancerSettings_LEAST_REQUEST},
				},
				ConnectionPool: &networkingv1.ConnectionPoolSettings{
					Tcp:  &networkingv1.ConnectionPoolSettings_TCPSettings{MaxConnections: 100, ConnectTimeout: cdsDur(3 * time.Second)},
					Http: &networkingv1.ConnectionPoolSettings_HTTPSettings{Http1MaxPendingRequests: 10, Http2MaxRequests: 200, MaxRetries: 3, MaxRequestsPerConnection: 5, IdleTimeout: cdsDur(time.Minute)},
				},
				OutlierDetection: &networkingv1.OutlierDetection{
					Consecutive_5XxErrors:    cdsU32(7),
					ConsecutiveGatewayErrors: cdsU32(4),
					Interval:                 cdsDur(5 * time.Second),
					BaseEjectionTime:         cdsDur(30 * time.Second),
					MaxEjectionPercent:       50,
					MinHealthPercent:         20,
				},
				PortLevelSettings: []*networkingv1.TrafficPolicy_PortTrafficPolicy{{
					Port: &networkingv1.PortSelector{Number: 9090},
					LoadBalancer: &networkingv1.LoadBalancerSettings{LbPolicy: &networkingv1.LoadBalancerSettings_ConsistentHash{
						ConsistentHash: &networkingv1.LoadBalancerSettings_ConsistentHashLB{
							HashKey:       &networkingv1.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"},
							HashAlgorithm: &networkingv1.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networkingv1.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: 2048}},
						},
					}},
				}},
			},
			Subsets: []*networkingv1.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networkingv1.TrafficPolicy{
					LoadBalancer: &networkingv1.LoadBalancerSettings{
						LbPolicy: &networkingv1.LoadBalancerSettings_Simple{Simple: networkingv1.LoadBalancerSettings_ROUND_ROBIN},
					},
				}},
			},
		}),
		cdsSE("default", "productpage", &networkingv1.ServiceEntry{
			Hosts:            []string{"productpage.default.svc.cluster.local"},
			Ports:            []*networkingv1.ServicePort{{Name: "http", Number: 9080, Protocol: "HTTP", TargetPort: 8080}},
			Resolution:       networkingv1.ServiceEntry_STATIC,
			WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "productpage"}},
		}),
		cdsWE("default", "productpage", &networkingv1.WorkloadEntry{
			Address: "10.0.0.1", Labels: map[string]string{"app": "productpage"}, ServiceAccount: "productpage", Locality: "us-east/us-east-1a",
		}),
		cdsSE("default", "httpbin", &networkingv1.ServiceEntry{
			Hosts:      []string{"httpbin.org"},
			Ports:      []*networkingv1.ServicePort{cdsPort("https", 443, "TLS")},
			Resolution: networkingv1.ServiceEntry_DNS,
			Location:   networkingv1.ServiceEntry_MESH_EXTERNAL,
		}),
		cdsDR("default", "httpbin", &networkingv1.DestinationRule{
			Host: "httpbin.org",
			TrafficPolicy: &networkingv1.TrafficPolicy{Tls: &networkingv1.ClientTLSSettings{
				Mode: networkingv1.ClientTLSSettings_SIMPLE, CaCertificates: "/etc/certs/httpbin-ca.pem",
			}},
		}),
		cdsSE("default", "db", &networkingv1.ServiceEntry{
			Hosts:      []string{"db.example.com"},
			Ports:      []*networkingv1.ServicePort{cdsPort("tcp", 5432, "TCP")},
			Resolution: networkingv1.ServiceEntry_DNS_ROUND_ROBIN,
			Location:   networkingv1.ServiceEntry_MESH_EXTERNAL,
		}),
		cdsSE("default", "wild", &networkingv1.ServiceEntry{
			Hosts:      []string{"*.wild.example.com"},
			Ports:      []*networkingv1.ServicePort{cdsPort("http", 80, "HTTP")},
			Resolution: networkingv1.ServiceEntry_NONE,
			Location:   networkingv1.ServiceEntry_MESH_EXTERNAL,
		}),
		cdsSE("default", "ratings", &networkingv1.ServiceEntry{
			Hosts:      []string{"ratings.default.svc.cluster.local"},
			Ports:      []*networkingv1.ServicePort{cdsPort("http", 9080, "HTTP")},
			Resolution: networkingv1.ServiceEntry_STATIC,
			Endpoints:  []*networkingv1.WorkloadEntry{{Address: "10.0.3.1", ServiceAccount: "ratings"}},
		}),
		cdsDR("default", "ratings", &networkingv1.DestinationRule{
			Host: "ratings",
			TrafficPolicy: &networkingv1.TrafficPolicy{Tls: &networkingv1.ClientTLSSettings{
				Mode: networkingv1.ClientTLSSettings_ISTIO_MUTUAL, SubjectAltNames: []string{"spiffe://cluster.local/ns/default/sa/ratings-override"},
			}},
		}),
	}
}

// cdsValidate fails the test unless every resource passes Envoy's proto validation.
func cdsValidate(t testing.TB, res map[string]proto.Message) {
	t.Helper()
	for name, m := range res {
		v, ok := m.(interface{ ValidateAll() error })
		if !ok {
			t.Fatalf("%s: %T has no ValidateAll", name, m)
		}
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: invalid: %v", name, err)
		}
	}
}

func cdsCluster(t testing.TB, res map[string]proto.Message, name string) *clusterv3.Cluster {
	t.Helper()
	m, ok := res[name]
	if !ok {
		t.Fatalf("no cluster %q; have %v", name, cdsSortedKeys(res))
	}
	return m.(*clusterv3.Cluster)
}

func cdsCLA(t testing.TB, res map[string]proto.Message, name string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	m, ok := res[name]
	if !ok {
		t.Fatalf("no assignment %q; have %v", name, cdsSortedKeys(res))
	}
	return m.(*endpointv3.ClusterLoadAssignment)
}

func cdsUpstreamTLS(t testing.TB, ts *corev3.TransportSocket) *tlsv3.UpstreamTlsContext {
	t.Helper()
	if ts.GetName() != cdsTLSSocketName {
		t.Fatalf("transport socket %q, want %q", ts.GetName(), cdsTLSSocketName)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}
