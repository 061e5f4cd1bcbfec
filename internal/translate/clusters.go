package translate

import (
	"fmt"
	"maps"
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
)

// DefaultConnectTimeout is Istio's mesh default connect_timeout for clusters.
const DefaultConnectTimeout = 10 * time.Second

// Clusters returns the CDS resources for in.Proxy, keyed by cluster name, and
// one warning for every piece of config that was not (or not fully)
// translated. Warnings are deduplicated and in generation order.
//
// Sidecars get one outbound cluster per visible service port
// ("outbound|PORT||HOST") plus one per DestinationRule subset
// ("outbound|PORT|SUBSET|HOST"), the inbound clusters of their own workload
// ("inbound|PORT||HOST", see InboundPorts) and PassthroughCluster,
// BlackHoleCluster and InboundPassthroughCluster. Gateways (ProxyRouter) get
// the outbound clusters plus PassthroughCluster and BlackHoleCluster.
// Proxyless gRPC clients get only outbound clusters of the kinds grpc-go
// accepts (EDS and LOGICAL_DNS, lb_policy ROUND_ROBIN/RING_HASH/LEAST_REQUEST,
// no transport_socket_matches); anything else is left out with a warning.
//
// Defaults follow Istio: lb_policy LEAST_REQUEST when the DestinationRule
// names none, connect_timeout 10s, unbounded circuit breaker thresholds, and
// auto-mTLS (see applyAutoMTLS and endpointTLSMode) for mesh-internal
// services whose effective policy sets no tls. The DestinationRule policy
// for each cluster is MergeTrafficPolicy's result.
func Clusters(in Input) (map[string]proto.Message, []string) {
	out, warnings := outboundClusters(in)
	maps.Copy(out, InboundClusters(in))
	return out, warnings
}

// InboundClusters returns the clusters that depend on which workload the
// proxy is: a sidecar's inbound clusters (see InboundPorts), nothing for
// other proxy types. Clusters is the union of these and the outbound and
// fixed clusters, which never read in.Proxy.IPs or in.Proxy.Workload.
func InboundClusters(in Input) map[string]proto.Message {
	out := map[string]proto.Message{}
	if in.Proxy.Type == model.ProxySidecar {
		for _, ip := range InboundPorts(in) {
			out[ip.ClusterName] = buildInboundCluster(ip)
		}
	}
	return out
}

// outboundClusters is Clusters without InboundClusters.
func outboundClusters(in Input) (map[string]proto.Message, []string) {
	w := &cdsWarnings{}
	out := map[string]proto.Message{}
	for _, spec := range outboundSpecs(in, w) {
		if c := sharedOutboundCluster(in, spec, w); c != nil {
			out[c.Name] = c
		}
	}
	if in.Proxy.Type == model.ProxyGRPC {
		return out, w.list
	}
	for _, c := range fixedClusters(in.Proxy.Type) {
		out[c.Name] = c
	}
	return out, w.list
}

// cdsWarnings collects unique warning strings in order.
type cdsWarnings struct {
	list []string
	seen map[string]bool
}

func (w *cdsWarnings) add(format string, args ...any) {
	if w == nil {
		return
	}
	s := fmt.Sprintf(format, args...)
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if w.seen[s] {
		return
	}
	w.seen[s] = true
	w.list = append(w.list, s)
}

// clusterSpec is one outbound cluster to build: which service port and subset,
// the effective (merged) traffic policy, and how endpoints are discovered.
// Clusters and Endpoints both derive from the same specs so EDS names and CDS
// references always agree.
type clusterSpec struct {
	name   string
	svc    *model.Service
	port   model.Port
	dr     *model.DestinationRule
	subset *networkingv1.Subset // nil for the default cluster
	policy *networkingv1.TrafficPolicy
	typ    clusterv3.Cluster_DiscoveryType
	// origin names the DestinationRule in warnings.
	origin string
}

func (s *clusterSpec) subsetName() string {
	if s.subset == nil {
		return ""
	}
	return s.subset.GetName()
}

// endpoints returns the service endpoints on the spec's port that the subset selects.
func (s *clusterSpec) endpoints(m *model.Snapshot) []*model.Endpoint {
	eps := m.EndpointsForPort(s.svc.Hostname, s.port.Number)
	if s.subset == nil || len(s.subset.GetLabels()) == 0 {
		return eps
	}
	var out []*model.Endpoint
	for _, e := range eps {
		if model.LabelsMatch(s.subset.GetLabels(), e.Labels) {
			out = append(out, e)
		}
	}
	return out
}

// outboundSpecs lists the outbound clusters for in.Proxy in a stable order.
func outboundSpecs(in Input, w *cdsWarnings) []*clusterSpec {
	var specs []*clusterSpec
	for _, svc := range in.Model.ServicesFor(in.Proxy) {
		dr := in.Model.DestinationRuleFor(in.Proxy, svc.Hostname)
		origin := ""
		if dr != nil {
			origin = fmt.Sprintf("DestinationRule %s/%s", dr.Object.Namespace, dr.Object.Name)
			warnUnsupportedDR(dr, origin, w)
		}
		for _, port := range svc.Ports {
			if port.Protocol == model.ProtocolUDP {
				w.add("service %s port %d: UDP is not supported; no cluster generated", svc.Hostname, port.Number)
				continue
			}
			specs = append(specs, newSpec(in, svc, port, dr, nil, origin))
			if dr == nil {
				continue
			}
			for _, ss := range dr.Spec.GetSubsets() {
				if ss.GetName() == "" {
					continue
				}
				specs = append(specs, newSpec(in, svc, port, dr, ss, origin))
			}
		}
	}
	return specs
}

func newSpec(in Input, svc *model.Service, port model.Port, dr *model.DestinationRule, ss *networkingv1.Subset, origin string) *clusterSpec {
	s := &clusterSpec{svc: svc, port: port, dr: dr, subset: ss, origin: origin}
	s.name = ClusterName(Outbound, port.Number, s.subsetName(), svc.Hostname)
	if dr != nil {
		s.policy = MergeTrafficPolicy(dr.Spec.GetTrafficPolicy(), ss, port.Number)
	}
	switch svc.Resolution {
	case model.ResolutionDNS:
		s.typ = clusterv3.Cluster_STRICT_DNS
	case model.ResolutionDNSRoundRobin:
		s.typ = clusterv3.Cluster_LOGICAL_DNS
	case model.ResolutionNone:
		s.typ = clusterv3.Cluster_ORIGINAL_DST
	default:
		s.typ = clusterv3.Cluster_EDS
	}
	if s.policy.GetLoadBalancer().GetSimple() == networkingv1.LoadBalancerSettings_PASSTHROUGH {
		s.typ = clusterv3.Cluster_ORIGINAL_DST
	}
	if in.Proxy.Type == model.ProxyGRPC && s.typ == clusterv3.Cluster_STRICT_DNS {
		// grpc-go has no STRICT_DNS; LOGICAL_DNS (one host name) is the closest it accepts.
		s.typ = clusterv3.Cluster_LOGICAL_DNS
	}
	return s
}

// MergeTrafficPolicy returns the traffic policy that applies to the cluster
// for port and subset (nil: the default cluster), merged as Istio does:
// top-level fields, replaced wholesale by a top-level portLevelSettings entry
// for the port, then each field the subset sets, then the subset's own
// portLevelSettings entry for the port. Port-level settings do not inherit:
// a field they leave empty falls back to the default, not to the outer level
// (Istio documents this). The result shares sub-messages with the inputs and
// must be treated as read-only. It returns nil when nothing applies.
func MergeTrafficPolicy(top *networkingv1.TrafficPolicy, subset *networkingv1.Subset, port uint32) *networkingv1.TrafficPolicy {
	merged := applyPortLevel(top, port)
	sp := subset.GetTrafficPolicy()
	if sp == nil {
		return merged
	}
	out := &networkingv1.TrafficPolicy{}
	if merged != nil {
		*out = networkingv1.TrafficPolicy{
			LoadBalancer:     merged.LoadBalancer,
			ConnectionPool:   merged.ConnectionPool,
			OutlierDetection: merged.OutlierDetection,
			Tls:              merged.Tls,
			Tunnel:           merged.Tunnel,
			ProxyProtocol:    merged.ProxyProtocol,
			RetryBudget:      merged.RetryBudget,
		}
	}
	if sp.LoadBalancer != nil {
		out.LoadBalancer = sp.LoadBalancer
	}
	if sp.ConnectionPool != nil {
		out.ConnectionPool = sp.ConnectionPool
	}
	if sp.OutlierDetection != nil {
		out.OutlierDetection = sp.OutlierDetection
	}
	if sp.Tls != nil {
		out.Tls = sp.Tls
	}
	if sp.Tunnel != nil {
		out.Tunnel = sp.Tunnel
	}
	if sp.ProxyProtocol != nil {
		out.ProxyProtocol = sp.ProxyProtocol
	}
	if sp.RetryBudget != nil {
		out.RetryBudget = sp.RetryBudget
	}
	if pl := portLevel(sp, port); pl != nil {
		out.LoadBalancer, out.ConnectionPool, out.OutlierDetection, out.Tls = pl.LoadBalancer, pl.ConnectionPool, pl.OutlierDetection, pl.Tls
	}
	return out
}

func applyPortLevel(p *networkingv1.TrafficPolicy, port uint32) *networkingv1.TrafficPolicy {
	if p == nil {
		return nil
	}
	pl := portLevel(p, port)
	if pl == nil {
		return p
	}
	return &networkingv1.TrafficPolicy{
		LoadBalancer:     pl.LoadBalancer,
		ConnectionPool:   pl.ConnectionPool,
		OutlierDetection: pl.OutlierDetection,
		Tls:              pl.Tls,
		Tunnel:           p.Tunnel,
		ProxyProtocol:    p.ProxyProtocol,
		RetryBudget:      p.RetryBudget,
	}
}

func portLevel(p *networkingv1.TrafficPolicy, port uint32) *networkingv1.TrafficPolicy_PortTrafficPolicy {
	for _, pl := range p.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			return pl
		}
	}
	return nil
}

// warnUnsupportedDR reports DestinationRule fields Weft does not translate at all.
func warnUnsupportedDR(dr *model.DestinationRule, origin string, w *cdsWarnings) {
	check := func(where string, p *networkingv1.TrafficPolicy) {
		if p.GetTunnel() != nil {
			w.add("%s: %s.tunnel is not supported and was ignored", origin, where)
		}
		if p.GetProxyProtocol() != nil {
			w.add("%s: %s.proxyProtocol is not supported and was ignored", origin, where)
		}
	}
	check("trafficPolicy", dr.Spec.GetTrafficPolicy())
	for _, ss := range dr.Spec.GetSubsets() {
		check("subsets["+ss.GetName()+"].trafficPolicy", ss.GetTrafficPolicy())
	}
}

func buildOutboundCluster(in Input, s *clusterSpec, w *cdsWarnings) *clusterv3.Cluster {
	grpc := in.Proxy.Type == model.ProxyGRPC
	if grpc && s.typ == clusterv3.Cluster_ORIGINAL_DST {
		w.add("cluster %s: grpc clients cannot use passthrough (ORIGINAL_DST) clusters; left out", s.name)
		return nil
	}
	c := &clusterv3.Cluster{
		Name:                 s.name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: s.typ},
		ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
	}
	if !grpc {
		c.Metadata = clusterMetadata(s)
	}
	switch s.typ {
	case clusterv3.Cluster_EDS:
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: cdsADS(), ServiceName: s.name}
		if grpc {
			for _, e := range s.endpoints(in.Model) {
				if cdsIsUnix(e.Address) {
					w.add("cluster %s: grpc clients cannot reach Unix socket endpoint %s; left out of EDS", s.name, e.Address)
				}
			}
		}
	case clusterv3.Cluster_STRICT_DNS:
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
		c.RespectDnsTtl = true
		c.LoadAssignment = buildLoadAssignment(in, s, s.endpoints(in.Model))
	case clusterv3.Cluster_LOGICAL_DNS:
		eps := s.endpoints(in.Model)
		if len(eps) == 0 {
			// Envoy and grpc-go both reject a LOGICAL_DNS cluster without its one host.
			w.add("cluster %s: no endpoint selected to resolve; LOGICAL_DNS cluster left out", s.name)
			return nil
		} else if len(eps) > 1 {
			// Envoy and grpc-go both require exactly one host for LOGICAL_DNS.
			w.add("cluster %s: LOGICAL_DNS uses only the first of %d endpoints (%s)", s.name, len(eps), eps[0].Address)
			eps = eps[:1]
		}
		if !grpc {
			c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
			c.RespectDnsTtl = true
		}
		c.LoadAssignment = buildLoadAssignment(in, s, eps)
		if grpc {
			// grpc-go wants exactly one locality with one endpoint and nothing else.
			stripForGRPCLogicalDNS(c.LoadAssignment)
		}
	case clusterv3.Cluster_ORIGINAL_DST:
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	}

	p := &policyApplier{c: c, spec: s, grpc: grpc, w: w, in: in}
	p.apply()
	if p.drop {
		return nil
	}
	return c
}

// clusterKey is everything buildOutboundCluster reads: the spec by name
// and DestinationRule (which fix service, port, subset, policy and, with
// grpc, discovery type), whether the proxy is a gRPC client, and the
// proxy's locality (locality-weighted balancing depends on it). The model
// is the cache's own.
type clusterKey struct {
	name     string
	dr       *model.DestinationRule
	grpc     bool
	locality string
}

// sharedCluster is a built outbound cluster (nil if left out) with the
// warnings building it produced, replayed for every proxy that gets it.
type sharedCluster struct {
	c        *clusterv3.Cluster
	warnings []string
}

// sharedOutboundCluster returns buildOutboundCluster's result, built once
// per model and key: proxy classes that differ only in what a cluster does
// not read (namespace, labels, IPs) share the message, and the xds package
// then encodes it once.
func sharedOutboundCluster(in Input, s *clusterSpec, w *cdsWarnings) *clusterv3.Cluster {
	k := clusterKey{name: s.name, dr: s.dr, grpc: in.Proxy.Type == model.ProxyGRPC}
	if l := ProxyLocality(in.Proxy); l != nil {
		k.locality = l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
	}
	mc := cacheOf(in.Model)
	v, ok := mc.clusters.Load(k)
	if !ok {
		local := &cdsWarnings{}
		sc := &sharedCluster{c: buildOutboundCluster(in, s, local), warnings: local.list}
		v, _ = mc.clusters.LoadOrStore(k, sc)
	}
	sc := v.(*sharedCluster)
	for _, msg := range sc.warnings {
		w.add("%s", msg)
	}
	return sc.c
}

func stripForGRPCLogicalDNS(cla *endpointv3.ClusterLoadAssignment) {
	for _, l := range cla.Endpoints {
		l.Priority = 0
		for i, e := range l.LbEndpoints {
			e = proto.Clone(e).(*endpointv3.LbEndpoint) // LbEndpoints are shared (sharedLbEndpoint)
			e.Metadata = nil
			e.HealthStatus = corev3.HealthStatus_UNKNOWN
			l.LbEndpoints[i] = e
		}
	}
}

func cdsADS() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// clusterMetadata carries Istio's "istio" filter metadata (the service the
// cluster belongs to and its subset), which telemetry reads to label metrics.
func clusterMetadata(s *clusterSpec) *corev3.Metadata {
	// Built directly rather than with structpb.NewStruct (same message):
	// this runs for every outbound cluster of every class.
	svc := &structpb.Struct{Fields: map[string]*structpb.Value{
		"host":      structpb.NewStringValue(s.svc.Hostname),
		"namespace": structpb.NewStringValue(s.svc.Namespace),
		"name":      structpb.NewStringValue(cdsShortHost(s.svc.Hostname)),
	}}
	fields := map[string]*structpb.Value{
		"services":              structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStructValue(svc)}}),
		"default_original_port": structpb.NewNumberValue(float64(s.port.Number)),
	}
	if s.subset != nil {
		fields["subset"] = structpb.NewStringValue(s.subset.GetName())
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: fields}}}
}

func cdsShortHost(host string) string {
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			return host[:i]
		}
	}
	return host
}

// cdsSortedKeys returns map keys in order (for deterministic iteration in tests and goldens).
func cdsSortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
