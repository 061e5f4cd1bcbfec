package translate

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

const (
	cdsReviews  = "reviews.default.svc.cluster.local"
	cdsReviews1 = "outbound|9080||" + cdsReviews
)

func cdsRun(t *testing.T, m *model.Snapshot, p *model.Proxy) (map[string]proto.Message, []string, map[string]proto.Message) {
	t.Helper()
	in := Input{Model: m, Proxy: p}
	cds, warns := Clusters(in)
	eds := Endpoints(in)
	cdsValidate(t, cds)
	cdsValidate(t, eds)
	return cds, warns, eds
}

func TestClustersTrafficPolicyMerge(t *testing.T) {
	cds, _, _ := cdsRun(t, cdsMesh(t), cdsSidecar())
	for _, tc := range []struct {
		cluster     string
		lb          clusterv3.Cluster_LbPolicy
		outlier     bool   // outlier detection from the top level survives
		maxConns    uint32 // from the top-level connection pool, or the unbounded default
		description string
	}{
		{"outbound|9080||" + cdsReviews, clusterv3.Cluster_LEAST_REQUEST, true, 100, "top-level policy"},
		{"outbound|9090||" + cdsReviews, clusterv3.Cluster_RING_HASH, false, math.MaxUint32, "port-level replaces top-level wholesale"},
		{"outbound|9080|v1|" + cdsReviews, clusterv3.Cluster_LEAST_REQUEST, true, 100, "subset without policy inherits top-level"},
		{"outbound|9080|v2|" + cdsReviews, clusterv3.Cluster_ROUND_ROBIN, true, 100, "subset lb beats top-level, other fields inherited"},
		{"outbound|9090|v2|" + cdsReviews, clusterv3.Cluster_ROUND_ROBIN, false, math.MaxUint32, "subset lb beats top-level port-level"},
		{"outbound|9090|v1|" + cdsReviews, clusterv3.Cluster_RING_HASH, false, math.MaxUint32, "subset without policy keeps port-level"},
	} {
		t.Run(tc.description, func(t *testing.T) {
			c := cdsCluster(t, cds, tc.cluster)
			if c.GetLbPolicy() != tc.lb {
				t.Errorf("lb_policy %v, want %v", c.GetLbPolicy(), tc.lb)
			}
			if got := c.GetOutlierDetection() != nil; got != tc.outlier {
				t.Errorf("outlier detection present=%v, want %v", got, tc.outlier)
			}
			if got := c.GetCircuitBreakers().GetThresholds()[0].GetMaxConnections().GetValue(); got != tc.maxConns {
				t.Errorf("max_connections %d, want %d", got, tc.maxConns)
			}
		})
	}
}

func TestMergeTrafficPolicySubsetPortLevel(t *testing.T) {
	lb := func(s networkingv1.LoadBalancerSettings_SimpleLB) *networkingv1.LoadBalancerSettings {
		return &networkingv1.LoadBalancerSettings{LbPolicy: &networkingv1.LoadBalancerSettings_Simple{Simple: s}}
	}
	top := &networkingv1.TrafficPolicy{
		LoadBalancer:     lb(networkingv1.LoadBalancerSettings_RANDOM),
		OutlierDetection: &networkingv1.OutlierDetection{Consecutive_5XxErrors: cdsU32(1)},
		PortLevelSettings: []*networkingv1.TrafficPolicy_PortTrafficPolicy{{
			Port: &networkingv1.PortSelector{Number: 80}, LoadBalancer: lb(networkingv1.LoadBalancerSettings_LEAST_REQUEST),
		}},
	}
	subset := &networkingv1.Subset{Name: "a", TrafficPolicy: &networkingv1.TrafficPolicy{
		LoadBalancer: lb(networkingv1.LoadBalancerSettings_ROUND_ROBIN),
		PortLevelSettings: []*networkingv1.TrafficPolicy_PortTrafficPolicy{{
			Port: &networkingv1.PortSelector{Number: 81}, LoadBalancer: lb(networkingv1.LoadBalancerSettings_PASSTHROUGH),
		}},
	}}
	for _, tc := range []struct {
		port    uint32
		subset  *networkingv1.Subset
		want    networkingv1.LoadBalancerSettings_SimpleLB
		outlier bool
	}{
		{79, nil, networkingv1.LoadBalancerSettings_RANDOM, true},
		{80, nil, networkingv1.LoadBalancerSettings_LEAST_REQUEST, false},
		{79, subset, networkingv1.LoadBalancerSettings_ROUND_ROBIN, true},
		{80, subset, networkingv1.LoadBalancerSettings_ROUND_ROBIN, false},
		{81, subset, networkingv1.LoadBalancerSettings_PASSTHROUGH, false},
	} {
		got := MergeTrafficPolicy(top, tc.subset, tc.port)
		if got.GetLoadBalancer().GetSimple() != tc.want || (got.GetOutlierDetection() != nil) != tc.outlier {
			t.Errorf("port %d subset %v: lb %v outlier %v, want %v %v", tc.port, tc.subset.GetName(),
				got.GetLoadBalancer().GetSimple(), got.GetOutlierDetection() != nil, tc.want, tc.outlier)
		}
	}
	if top.GetLoadBalancer().GetSimple() != networkingv1.LoadBalancerSettings_RANDOM {
		t.Error("MergeTrafficPolicy mutated its input")
	}
}

func TestClustersConsistentHash(t *testing.T) {
	cds, _, _ := cdsRun(t, cdsMesh(t), cdsSidecar())
	c := cdsCluster(t, cds, "outbound|9090||"+cdsReviews)
	if c.GetLbPolicy() != clusterv3.Cluster_RING_HASH || c.GetRingHashLbConfig().GetMinimumRingSize().GetValue() != 2048 {
		t.Errorf("want RING_HASH with min ring 2048, got %v %v", c.GetLbPolicy(), c.GetRingHashLbConfig())
	}
	m := cdsMesh(t)
	dr := m.DestinationRuleFor(cdsSidecar(), cdsReviews)
	hp := HashPolicyFor(dr, "", 9090)
	if len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-user" {
		t.Errorf("HashPolicyFor(9090) = %v, want header x-user", hp)
	}
	if hp := HashPolicyFor(dr, "", 9080); hp != nil {
		t.Errorf("HashPolicyFor(9080) = %v, want nil (not consistent hash)", hp)
	}
	if hp := HashPolicyFor(dr, "v2", 9090); hp != nil {
		t.Errorf("HashPolicyFor(v2, 9090) = %v, want nil (subset lb wins)", hp)
	}

	// Maglev and source-IP hashing.
	objs := append(cdsMeshObjects()[:4], cdsDR("default", "reviews", &networkingv1.DestinationRule{
		Host: "reviews",
		TrafficPolicy: &networkingv1.TrafficPolicy{LoadBalancer: &networkingv1.LoadBalancerSettings{
			LbPolicy: &networkingv1.LoadBalancerSettings_ConsistentHash{ConsistentHash: &networkingv1.LoadBalancerSettings_ConsistentHashLB{
				HashKey:       &networkingv1.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true},
				HashAlgorithm: &networkingv1.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &networkingv1.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: 65537}},
			}},
		}},
	}))
	m = cdsModel(t, objs...)
	cds, _, _ = cdsRun(t, m, cdsSidecar())
	c = cdsCluster(t, cds, cdsReviews1)
	if c.GetLbPolicy() != clusterv3.Cluster_MAGLEV || c.GetMaglevLbConfig().GetTableSize().GetValue() != 65537 {
		t.Errorf("want MAGLEV 65537, got %v %v", c.GetLbPolicy(), c.GetMaglevLbConfig())
	}
	hp = HashPolicyFor(m.DestinationRuleFor(cdsSidecar(), cdsReviews), "", 9080)
	if len(hp) != 1 || !hp[0].GetConnectionProperties().GetSourceIp() {
		t.Errorf("HashPolicyFor = %v, want source IP", hp)
	}
	// grpc-go has no MAGLEV: RING_HASH with a warning.
	cds, warns, _ := cdsRun(t, m, cdsGRPCProxy())
	if c := cdsCluster(t, cds, cdsReviews1); c.GetLbPolicy() != clusterv3.Cluster_RING_HASH {
		t.Errorf("grpc: lb %v, want RING_HASH", c.GetLbPolicy())
	}
	cdsWantWarning(t, warns, "MAGLEV")
}

func TestClustersOutlierDetectionAndCircuitBreakers(t *testing.T) {
	cds, _, _ := cdsRun(t, cdsMesh(t), cdsSidecar())
	c := cdsCluster(t, cds, cdsReviews1)
	od := c.GetOutlierDetection()
	want := &clusterv3.OutlierDetection{
		Consecutive_5Xx:                    wrapperspb.UInt32(7),
		EnforcingConsecutive_5Xx:           wrapperspb.UInt32(100),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(4),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		EnforcingSuccessRate:               wrapperspb.UInt32(0),
		Interval:                           cdsDur(5 * time.Second),
		BaseEjectionTime:                   cdsDur(30 * time.Second),
		MaxEjectionPercent:                 wrapperspb.UInt32(50),
	}
	if !proto.Equal(od, want) {
		t.Errorf("outlier detection\n got %v\nwant %v", od, want)
	}
	if got := c.GetCommonLbConfig().GetHealthyPanicThreshold().GetValue(); got != 20 {
		t.Errorf("healthy panic threshold %v, want 20 (minHealthPercent)", got)
	}
	th := c.GetCircuitBreakers().GetThresholds()
	wantTh := &clusterv3.CircuitBreakers_Thresholds{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     wrapperspb.UInt32(100),
		MaxPendingRequests: wrapperspb.UInt32(10),
		MaxRequests:        wrapperspb.UInt32(200),
		MaxRetries:         wrapperspb.UInt32(3),
		TrackRemaining:     true,
	}
	if len(th) != 1 || !proto.Equal(th[0], wantTh) {
		t.Errorf("thresholds\n got %v\nwant %v", th, wantTh)
	}
	if got := c.GetConnectTimeout().AsDuration(); got != 3*time.Second {
		t.Errorf("connect_timeout %v, want 3s", got)
	}
	opts := cdsHTTPOptions(t, c)
	if opts.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue() != 5 ||
		opts.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration() != time.Minute {
		t.Errorf("common http options %v, want 5 requests/conn and 1m idle", opts.GetCommonHttpProtocolOptions())
	}
	// Without a connection pool, Istio's unbounded defaults apply.
	rc := cdsCluster(t, cds, "outbound|9080||ratings.default.svc.cluster.local")
	if got := rc.GetCircuitBreakers().GetThresholds()[0].GetMaxRetries().GetValue(); got != math.MaxUint32 {
		t.Errorf("default max_retries %d, want MaxUint32", got)
	}
	if got := rc.GetConnectTimeout().AsDuration(); got != DefaultConnectTimeout {
		t.Errorf("default connect_timeout %v, want %v", got, DefaultConnectTimeout)
	}

	// grpc keeps max_requests (the only threshold it reads).
	cds, _, _ = cdsRun(t, cdsMesh(t), cdsGRPCProxy())
	g := cdsCluster(t, cds, cdsReviews1)
	if got := g.GetCircuitBreakers().GetThresholds()[0].GetMaxRequests().GetValue(); got != 200 {
		t.Errorf("grpc max_requests %d, want 200", got)
	}
}

func cdsHTTPOptions(t *testing.T, c *clusterv3.Cluster) *httpv3.HttpProtocolOptions {
	t.Helper()
	a := c.GetTypedExtensionProtocolOptions()[HTTPProtocolOptionsName]
	if a == nil {
		t.Fatalf("%s: no %s", c.GetName(), HTTPProtocolOptionsName)
	}
	o := &httpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(o); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestClustersUpstreamProtocol(t *testing.T) {
	m := cdsModel(t, cdsSE("default", "multi", &networkingv1.ServiceEntry{
		Hosts: []string{"multi.default.svc.cluster.local"},
		Ports: []*networkingv1.ServicePort{
			cdsPort("http", 80, "HTTP"), cdsPort("h2", 81, "HTTP2"), cdsPort("grpc", 82, "GRPC"),
			cdsPort("unknown", 83, ""), cdsPort("tcp", 84, "TCP"),
		},
		Resolution: networkingv1.ServiceEntry_STATIC,
		Endpoints:  []*networkingv1.WorkloadEntry{{Address: "10.1.0.1"}},
	}))
	cds, _, _ := cdsRun(t, m, cdsSidecar())
	for _, tc := range []struct {
		port uint32
		want string // "h1" none, "h2", "downstream"
	}{{80, "none"}, {81, "h2"}, {82, "h2"}, {83, "downstream"}, {84, "none"}} {
		c := cdsCluster(t, cds, ClusterName(Outbound, tc.port, "", "multi.default.svc.cluster.local"))
		got := "none"
		if c.GetTypedExtensionProtocolOptions() != nil {
			o := cdsHTTPOptions(t, c)
			switch {
			case o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
				got = "h2"
			case o.GetUseDownstreamProtocolConfig() != nil:
				got = "downstream"
			default:
				got = "h1"
			}
		}
		if got != tc.want {
			t.Errorf("port %d: upstream protocol %s, want %s", tc.port, got, tc.want)
		}
	}
}

func TestClustersDiscoveryTypes(t *testing.T) {
	cds, _, eds := cdsRun(t, cdsMesh(t), cdsSidecar())
	for _, tc := range []struct {
		name string
		typ  clusterv3.Cluster_DiscoveryType
		lb   clusterv3.Cluster_LbPolicy
		eds  bool
	}{
		{cdsReviews1, clusterv3.Cluster_EDS, clusterv3.Cluster_LEAST_REQUEST, true},
		{"outbound|443||httpbin.org", clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LEAST_REQUEST, false},
		{"outbound|5432||db.example.com", clusterv3.Cluster_LOGICAL_DNS, clusterv3.Cluster_LEAST_REQUEST, false},
		{"outbound|80||*.wild.example.com", clusterv3.Cluster_ORIGINAL_DST, clusterv3.Cluster_CLUSTER_PROVIDED, false},
		{PassthroughCluster, clusterv3.Cluster_ORIGINAL_DST, clusterv3.Cluster_CLUSTER_PROVIDED, false},
		{InboundPassthroughCluster, clusterv3.Cluster_ORIGINAL_DST, clusterv3.Cluster_CLUSTER_PROVIDED, false},
		{BlackHoleCluster, clusterv3.Cluster_STATIC, clusterv3.Cluster_ROUND_ROBIN, false},
	} {
		c := cdsCluster(t, cds, tc.name)
		if c.GetType() != tc.typ || c.GetLbPolicy() != tc.lb {
			t.Errorf("%s: %v/%v, want %v/%v", tc.name, c.GetType(), c.GetLbPolicy(), tc.typ, tc.lb)
		}
		if _, ok := eds[tc.name]; ok != tc.eds {
			t.Errorf("%s: has EDS assignment %v, want %v", tc.name, ok, tc.eds)
		}
		if tc.eds && (c.GetEdsClusterConfig().GetServiceName() != tc.name || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil) {
			t.Errorf("%s: eds_cluster_config %v, want ADS and service_name = cluster name", tc.name, c.GetEdsClusterConfig())
		}
	}
	// STRICT_DNS carries the host name inline.
	c := cdsCluster(t, cds, "outbound|443||httpbin.org")
	sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "httpbin.org" || sa.GetPortValue() != 443 {
		t.Errorf("STRICT_DNS endpoint %v, want httpbin.org:443", sa)
	}
	// Every EDS cluster has an assignment, and nothing else does.
	for name, m := range cds {
		if m.(*clusterv3.Cluster).GetType() == clusterv3.Cluster_EDS {
			if _, ok := eds[name]; !ok {
				t.Errorf("EDS cluster %s has no assignment", name)
			}
		}
	}
	for name := range eds {
		if _, ok := cds[name]; !ok {
			t.Errorf("assignment %s has no cluster", name)
		}
	}
}

func TestClustersIstioMutual(t *testing.T) {
	cds, _, _ := cdsRun(t, cdsMesh(t), cdsSidecar())
	c := cdsCluster(t, cds, "outbound|9080||ratings.default.svc.cluster.local")
	if len(c.GetTransportSocketMatches()) != 0 {
		t.Error("explicit DR tls must not also use auto-mTLS matches")
	}
	ctx := cdsUpstreamTLS(t, c.GetTransportSocket())
	if got, want := ctx.GetSni(), "outbound_.9080_._.ratings.default.svc.cluster.local"; got != want {
		t.Errorf("sni %q, want %q", got, want)
	}
	cv := ctx.GetCommonTlsContext().GetCombinedValidationContext()
	sans := cv.GetDefaultValidationContext().GetMatchSubjectAltNames()
	if len(sans) != 1 || sans[0].GetExact() != "spiffe://cluster.local/ns/default/sa/ratings-override" {
		t.Errorf("SANs %v, want the DR's subjectAltNames", sans)
	}
	if cv.GetValidationContextSdsSecretConfig().GetName() != cdsSDSRootSecret ||
		ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName() != cdsSDSCertSecret {
		t.Errorf("SDS secrets %v", ctx.GetCommonTlsContext())
	}
	if !slices.Equal(ctx.GetCommonTlsContext().GetAlpnProtocols(), cdsIstioALPN) {
		t.Errorf("alpn %v, want %v", ctx.GetCommonTlsContext().GetAlpnProtocols(), cdsIstioALPN)
	}

	// SANs derived from endpoint service accounts, subset SNI.
	objs := append(cdsMeshObjects()[:4], cdsDR("default", "reviews", &networkingv1.DestinationRule{
		Host:          "reviews",
		TrafficPolicy: &networkingv1.TrafficPolicy{Tls: &networkingv1.ClientTLSSettings{Mode: networkingv1.ClientTLSSettings_ISTIO_MUTUAL}},
		Subsets:       []*networkingv1.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
	}))
	m := cdsModel(t, objs...)
	cds, _, _ = cdsRun(t, m, cdsSidecar())
	ctx = cdsUpstreamTLS(t, cdsCluster(t, cds, "outbound|9080|v1|"+cdsReviews).GetTransportSocket())
	if ctx.GetSni() != "outbound_.9080_.v1_."+cdsReviews {
		t.Errorf("subset sni %q", ctx.GetSni())
	}
	sans = ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchSubjectAltNames()
	if len(sans) != 1 || sans[0].GetExact() != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Errorf("SANs %v, want spiffe ID of the reviews service account", sans)
	}

	// grpc: certificate provider instances, never SDS.
	cds, _, _ = cdsRun(t, m, cdsGRPCProxy())
	ctx = cdsUpstreamTLS(t, cdsCluster(t, cds, cdsReviews1).GetTransportSocket())
	cc := ctx.GetCommonTlsContext()
	if cc.GetTlsCertificateProviderInstance().GetInstanceName() != cdsGRPCCertProvider ||
		cc.GetValidationContext().GetCaCertificateProviderInstance().GetCertificateName() != cdsSDSRootSecret ||
		len(cc.GetTlsCertificateSdsSecretConfigs()) != 0 {
		t.Errorf("grpc tls context %v", cc)
	}
}

func TestClustersAutoMTLS(t *testing.T) {
	cds, _, eds := cdsRun(t, cdsMesh(t), cdsSidecar())
	c := cdsCluster(t, cds, cdsReviews1)
	tsm := c.GetTransportSocketMatches()
	if len(tsm) != 2 || tsm[0].GetName() != AutoMTLSMatchName || tsm[0].GetMatch().GetFields()["tlsMode"].GetStringValue() != "istio" ||
		len(tsm[1].GetMatch().GetFields()) != 0 || tsm[1].GetTransportSocket().GetName() != cdsRawBufferSocketName {
		t.Fatalf("transport_socket_matches %v", tsm)
	}
	ctx := cdsUpstreamTLS(t, tsm[0].GetTransportSocket())
	if ctx.GetSni() != "outbound_.9080_._."+cdsReviews {
		t.Errorf("auto-mTLS sni %q", ctx.GetSni())
	}
	if c.GetTransportSocket() != nil {
		t.Error("auto-mTLS cluster must not set a default transport_socket")
	}
	// External services and services with explicit tls get no auto-mTLS.
	for _, name := range []string{"outbound|443||httpbin.org", "outbound|5432||db.example.com"} {
		if len(cdsCluster(t, cds, name).GetTransportSocketMatches()) != 0 {
			t.Errorf("%s: mesh-external service got auto-mTLS", name)
		}
	}

	// Endpoint metadata: WorkloadEntry endpoints are mesh workloads unless
	// their tlsMode label says otherwise; plain SE endpoints are not.
	tlsMode := map[string]bool{}
	for _, name := range []string{cdsReviews1, "outbound|9080||ratings.default.svc.cluster.local"} {
		for _, l := range cdsCLA(t, eds, name).GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				md := e.GetMetadata().GetFilterMetadata()[TransportSocketMatchKey]
				tlsMode[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = md.GetFields()["tlsMode"].GetStringValue() == "istio"
			}
		}
	}
	want := map[string]bool{"10.0.1.1": true, "10.0.1.2": true, "10.0.2.1": false, "10.0.3.1": false}
	for ip, w := range want {
		if tlsMode[ip] != w {
			t.Errorf("endpoint %s tlsMode=istio %v, want %v", ip, tlsMode[ip], w)
		}
	}

	// grpc never receives transport_socket_matches.
	cds, _, _ = cdsRun(t, cdsMesh(t), cdsGRPCProxy())
	for name, m := range cds {
		if len(m.(*clusterv3.Cluster).GetTransportSocketMatches()) != 0 {
			t.Errorf("grpc cluster %s has transport_socket_matches", name)
		}
	}
}

func TestClustersOriginationTLS(t *testing.T) {
	se := cdsSE("default", "ext", &networkingv1.ServiceEntry{
		Hosts: []string{"api.example.com"}, Ports: []*networkingv1.ServicePort{cdsPort("https", 443, "HTTP")},
		Resolution: networkingv1.ServiceEntry_DNS, Location: networkingv1.ServiceEntry_MESH_EXTERNAL,
	})
	for _, tc := range []struct {
		name  string
		tls   *networkingv1.ClientTLSSettings
		check func(t *testing.T, c *clusterv3.Cluster)
	}{
		{"mutual files", &networkingv1.ClientTLSSettings{
			Mode: networkingv1.ClientTLSSettings_MUTUAL, ClientCertificate: "/c.pem", PrivateKey: "/k.pem", CaCertificates: "/ca.pem",
			Sni: "api.internal", SubjectAltNames: []string{"api.example.com"},
		}, func(t *testing.T, c *clusterv3.Cluster) {
			ctx := cdsUpstreamTLS(t, c.GetTransportSocket())
			cc := ctx.GetCommonTlsContext()
			if ctx.GetSni() != "api.internal" || cc.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/c.pem" ||
				cc.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != "/k.pem" ||
				cc.GetValidationContext().GetTrustedCa().GetFilename() != "/ca.pem" ||
				cc.GetValidationContext().GetMatchSubjectAltNames()[0].GetExact() != "api.example.com" {
				t.Errorf("context %v", ctx)
			}
		}},
		{"simple credentialName", &networkingv1.ClientTLSSettings{
			Mode: networkingv1.ClientTLSSettings_SIMPLE, CredentialName: "api-cred",
		}, func(t *testing.T, c *clusterv3.Cluster) {
			ctx := cdsUpstreamTLS(t, c.GetTransportSocket())
			cc := ctx.GetCommonTlsContext()
			if ctx.GetSni() != "api.example.com" || len(cc.GetTlsCertificateSdsSecretConfigs()) != 0 ||
				cc.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName() != "api-cred"+cdsSDSCASuffix {
				t.Errorf("context %v", ctx)
			}
		}},
		{"simple insecureSkipVerify", &networkingv1.ClientTLSSettings{
			Mode: networkingv1.ClientTLSSettings_SIMPLE, InsecureSkipVerify: wrapperspb.Bool(true),
		}, func(t *testing.T, c *clusterv3.Cluster) {
			if vc := cdsUpstreamTLS(t, c.GetTransportSocket()).GetCommonTlsContext().GetValidationContextType(); vc != nil {
				t.Errorf("insecureSkipVerify still validates: %v", vc)
			}
		}},
		{"simple system roots", &networkingv1.ClientTLSSettings{Mode: networkingv1.ClientTLSSettings_SIMPLE},
			func(t *testing.T, c *clusterv3.Cluster) {
				vc := cdsUpstreamTLS(t, c.GetTransportSocket()).GetCommonTlsContext().GetValidationContext()
				if vc.GetTrustedCa().GetFilename() != SystemCABundle {
					t.Errorf("trusted_ca %v, want %s", vc.GetTrustedCa(), SystemCABundle)
				}
			}},
		{"disable", &networkingv1.ClientTLSSettings{Mode: networkingv1.ClientTLSSettings_DISABLE},
			func(t *testing.T, c *clusterv3.Cluster) {
				if c.GetTransportSocket() != nil || len(c.GetTransportSocketMatches()) != 0 {
					t.Error("DISABLE must leave the cluster plaintext")
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := cdsModel(t, se, cdsDR("default", "ext", &networkingv1.DestinationRule{
				Host: "api.example.com", TrafficPolicy: &networkingv1.TrafficPolicy{Tls: tc.tls},
			}))
			cds, _, _ := cdsRun(t, m, cdsSidecar())
			tc.check(t, cdsCluster(t, cds, "outbound|443||api.example.com"))
		})
	}
}

func TestClustersInbound(t *testing.T) {
	m := cdsMesh(t)
	byIP := cdsSidecar()
	byIP.Workload = config.Key{} // match on the proxy IP alone
	for _, p := range []*model.Proxy{cdsSidecar(), byIP} {
		cds, _, _ := cdsRun(t, m, p)
		c := cdsCluster(t, cds, "inbound|9080||productpage.default.svc.cluster.local")
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if c.GetType() != clusterv3.Cluster_STATIC || sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 8080 {
			t.Errorf("inbound cluster %v, want STATIC 127.0.0.1:8080 (target port)", c)
		}
		if _, ok := cds["inbound|9080||"+cdsReviews]; ok {
			t.Error("inbound cluster for a service the proxy does not serve")
		}
	}
	cds, _, _ := cdsRun(t, m, cdsSidecar())
	ib := cdsCluster(t, cds, InboundPassthroughCluster)
	if ib.GetUpstreamBindConfig().GetSourceAddress().GetAddress() != InboundPassthroughSource {
		t.Errorf("InboundPassthroughCluster bind %v", ib.GetUpstreamBindConfig())
	}
	if bh := cdsCluster(t, cds, BlackHoleCluster); bh.GetLoadAssignment() != nil {
		t.Error("BlackHoleCluster has endpoints")
	}
	// Gateways get no inbound clusters; grpc clients get no fixed ones.
	gw := cdsSidecar()
	gw.Type = model.ProxyRouter
	cds, _, _ = cdsRun(t, m, gw)
	if _, ok := cds[InboundPassthroughCluster]; ok {
		t.Error("router got InboundPassthroughCluster")
	}
	if _, ok := cds[PassthroughCluster]; !ok {
		t.Error("router lacks PassthroughCluster")
	}
	cds, _, _ = cdsRun(t, m, cdsGRPCProxy())
	for _, n := range []string{PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster} {
		if _, ok := cds[n]; ok {
			t.Errorf("grpc client got %s", n)
		}
	}
}

// TestClustersGRPCAcceptance checks what grpc-go v1.85's CDS/EDS validation
// (internal/xds/xdsclient/xdsresource) requires of every resource.
func TestClustersGRPCAcceptance(t *testing.T) {
	cds, warns, eds := cdsRun(t, cdsMesh(t), cdsGRPCProxy())
	for name, m := range cds {
		c := m.(*clusterv3.Cluster)
		switch c.GetType() {
		case clusterv3.Cluster_EDS:
			if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
				t.Errorf("%s: EDS config source is not ADS", name)
			}
		case clusterv3.Cluster_LOGICAL_DNS:
			la := c.GetLoadAssignment()
			if len(la.GetEndpoints()) != 1 || len(la.GetEndpoints()[0].GetLbEndpoints()) != 1 ||
				la.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue() == 0 {
				t.Errorf("%s: LOGICAL_DNS needs exactly one endpoint with host and port: %v", name, la)
			}
		default:
			t.Errorf("%s: type %v not accepted by grpc-go", name, c.GetType())
		}
		switch c.GetLbPolicy() {
		case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST:
		case clusterv3.Cluster_RING_HASH:
			if c.GetRingHashLbConfig().GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
				t.Errorf("%s: ring hash function must be XX_HASH", name)
			}
		default:
			t.Errorf("%s: lb_policy %v not accepted by grpc-go", name, c.GetLbPolicy())
		}
		if len(c.GetTransportSocketMatches()) != 0 {
			t.Errorf("%s: transport_socket_matches", name)
		}
		if ts := c.GetTransportSocket(); ts != nil {
			cc := cdsUpstreamTLS(t, ts).GetCommonTlsContext()
			if cc.GetValidationContext().GetCaCertificateProviderInstance() == nil {
				t.Errorf("%s: grpc TLS without ca_certificate_provider_instance", name)
			}
		}
	}
	for name, m := range eds {
		cla := m.(*endpointv3.ClusterLoadAssignment)
		prios := map[uint32]bool{}
		addrs := map[string]bool{}
		for _, l := range cla.GetEndpoints() {
			if l.GetLocality() == nil || l.GetLoadBalancingWeight().GetValue() == 0 {
				t.Errorf("%s: locality without ID or weight: %v", name, l)
			}
			prios[l.GetPriority()] = true
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				a := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
				if addrs[a] || e.GetLoadBalancingWeight().GetValue() == 0 {
					t.Errorf("%s: duplicate or zero-weight endpoint %v", name, sa)
				}
				addrs[a] = true
			}
		}
		for i := range len(prios) {
			if !prios[uint32(i)] {
				t.Errorf("%s: priorities %v are not contiguous from 0", name, prios)
			}
		}
	}
	cdsWantWarning(t, warns, "passthrough")
	if _, ok := cds["outbound|443||httpbin.org"]; ok {
		t.Error("grpc got a SIMPLE-TLS cluster it cannot honour")
	}
}

func TestClustersWarnings(t *testing.T) {
	objs := append(cdsMeshObjects()[:4], cdsDR("default", "reviews", &networkingv1.DestinationRule{
		Host: "reviews",
		TrafficPolicy: &networkingv1.TrafficPolicy{
			Tunnel:           &networkingv1.TrafficPolicy_TunnelSettings{Protocol: "CONNECT", TargetHost: "x", TargetPort: 1},
			LoadBalancer:     &networkingv1.LoadBalancerSettings{ZoneAwareLbSetting: &networkingv1.ZoneAwareLoadBalancerSetting{}},
			OutlierDetection: &networkingv1.OutlierDetection{OutlierDetectionHttpErrorCodes: []uint32{503}},
		},
	}))
	_, warns, _ := cdsRun(t, cdsModel(t, objs...), cdsSidecar())
	for _, w := range []string{"tunnel", "zoneAwareLbSetting", "outlierDetectionHttpErrorCodes"} {
		cdsWantWarning(t, warns, w)
	}
}

func cdsWantWarning(t *testing.T, warns []string, substr string) {
	t.Helper()
	for _, w := range warns {
		if strings.Contains(w, substr) {
			return
		}
	}
	t.Errorf("no warning mentioning %q in %q", substr, warns)
}

func TestClustersWarmupRetryBudgetKeepalive(t *testing.T) {
	tp := &networkingv1.TrafficPolicy{
		LoadBalancer: &networkingv1.LoadBalancerSettings{
			LbPolicy: &networkingv1.LoadBalancerSettings_Simple{Simple: networkingv1.LoadBalancerSettings_ROUND_ROBIN},
			Warmup: &networkingv1.WarmupConfiguration{
				Duration: cdsDur(45 * time.Second), Aggression: wrapperspb.Double(2), MinimumPercent: wrapperspb.Double(10),
			},
		},
		ConnectionPool: &networkingv1.ConnectionPoolSettings{
			Tcp: &networkingv1.ConnectionPoolSettings_TCPSettings{
				TcpKeepalive:          &networkingv1.ConnectionPoolSettings_TCPSettings_TcpKeepalive{Probes: 3, Time: cdsDur(time.Minute), Interval: cdsDur(10 * time.Second)},
				MaxConnectionDuration: cdsDur(time.Hour),
			},
			Http: &networkingv1.ConnectionPoolSettings_HTTPSettings{H2UpgradePolicy: networkingv1.ConnectionPoolSettings_HTTPSettings_UPGRADE},
		},
		RetryBudget: &networkingv1.TrafficPolicy_RetryBudget{Percent: wrapperspb.Double(25), MinRetryConcurrency: 5},
	}
	cds, _, _ := cdsRun(t, reviewsWithDR(t, tp), cdsSidecar())
	c := cdsCluster(t, cds, cdsReviews1)
	ss := c.GetRoundRobinLbConfig().GetSlowStartConfig()
	if ss.GetSlowStartWindow().AsDuration() != 45*time.Second || ss.GetAggression().GetDefaultValue() != 2 || ss.GetMinWeightPercent().GetValue() != 10 {
		t.Errorf("slow start %v", ss)
	}
	ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive()
	if ka.GetKeepaliveProbes().GetValue() != 3 || ka.GetKeepaliveTime().GetValue() != 60 || ka.GetKeepaliveInterval().GetValue() != 10 {
		t.Errorf("tcp keepalive %v", ka)
	}
	rb := c.GetCircuitBreakers().GetThresholds()[0].GetRetryBudget()
	if rb.GetBudgetPercent().GetValue() != 25 || rb.GetMinRetryConcurrency().GetValue() != 5 {
		t.Errorf("retry budget %v", rb)
	}
	o := cdsHTTPOptions(t, c)
	if o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("h2UpgradePolicy UPGRADE on an HTTP port must use HTTP/2 upstream")
	}
	if o.GetCommonHttpProtocolOptions().GetMaxConnectionDuration().AsDuration() != time.Hour {
		t.Errorf("max_connection_duration %v", o.GetCommonHttpProtocolOptions())
	}
}
