package translate

import (
	"math"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/workloadmeta"
)

// Labels and metadata keys used to place a proxy and endpoints in the topology.
const (
	// cdsLocalityMetadataKey is the node metadata key holding "region/zone/subzone".
	cdsLocalityMetadataKey = "LOCALITY"
	cdsLabelRegion         = "topology.kubernetes.io/region"
	cdsLabelZone           = "topology.kubernetes.io/zone"
	cdsLabelSubzone        = "topology.istio.io/subzone"
	cdsLabelNetwork        = "topology.istio.io/network"
)

// Endpoints returns one ClusterLoadAssignment per EDS cluster Clusters
// produces for in.Proxy (subset clusters included), keyed by cluster name.
// A cluster without endpoints still gets an (empty) assignment: Envoy keeps
// an EDS cluster warming until one arrives.
//
// Endpoints are grouped by locality (load_balancing_weight of a locality is
// the sum of its endpoint weights, which grpc-go requires); when the
// DestinationRule enables locality failover (see localityMode) groups get
// priorities relative to the proxy's locality, and distribute rules rewrite
// locality weights. Endpoints with a duplicate address:port keep the first.
func Endpoints(in Input) map[string]proto.Message {
	out := map[string]proto.Message{}
	for _, s := range outboundSpecs(in, nil) {
		if s.typ != clusterv3.Cluster_EDS || grpcDropsTLS(in, s) {
			continue
		}
		out[s.name] = sharedLoadAssignment(in, s)
	}
	return out
}

// claKey is everything buildLoadAssignment reads for an EDS cluster,
// except for label-based failover (not cached): the spec by name and
// DestinationRule (which fix service, port, subset and policy), whether
// the proxy is a gRPC client, and the proxy's locality.
type claKey struct {
	name     string
	dr       *model.DestinationRule
	grpc     bool
	locality string
}

// sharedLoadAssignment returns buildLoadAssignment's result for an EDS
// cluster, built once per model and key: proxy classes that differ only in
// things a load assignment does not read (namespace, most labels, IPs)
// share it, and the xds package then marshals it once.
func sharedLoadAssignment(in Input, s *clusterSpec) *endpointv3.ClusterLoadAssignment {
	mode := localityMode(in, s.policy)
	if mode.failover && len(mode.failoverPriority) > 0 {
		return buildLoadAssignment(in, s, s.endpoints(in.Model)) // reads proxy labels and network
	}
	k := claKey{name: s.name, dr: s.dr, grpc: in.Proxy.Type == model.ProxyGRPC}
	if l := mode.proxy; l != nil {
		k.locality = l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
	}
	c := cacheOf(in.Model)
	if v, ok := c.loadAssignments.Load(k); ok {
		return v.(*endpointv3.ClusterLoadAssignment)
	}
	v, _ := c.loadAssignments.LoadOrStore(k, buildLoadAssignment(in, s, s.endpoints(in.Model)))
	return v.(*endpointv3.ClusterLoadAssignment)
}

// grpcDropsTLS mirrors applyTLS: grpc clusters with file-based TLS are not sent.
func grpcDropsTLS(in Input, s *clusterSpec) bool {
	if in.Proxy.Type != model.ProxyGRPC {
		return false
	}
	m := s.policy.GetTls().GetMode()
	return s.policy.GetTls() != nil && (m == networkingv1.ClientTLSSettings_SIMPLE || m == networkingv1.ClientTLSSettings_MUTUAL)
}

// buildLoadAssignment builds the assignment for a spec from the given endpoints
// (for EDS, or inline for DNS clusters).
func buildLoadAssignment(in Input, s *clusterSpec, eps []*model.Endpoint) *endpointv3.ClusterLoadAssignment {
	grpc := in.Proxy.Type == model.ProxyGRPC
	mode := localityMode(in, s.policy)

	type groupKey struct {
		labelPrio int
		locality  string
	}
	groups := map[groupKey][]*endpointv3.LbEndpoint{}
	seen := map[string]bool{}
	shared := cacheOf(in.Model)
	for _, e := range eps {
		if grpc && cdsIsUnix(e.Address) {
			continue // reported by Clusters
		}
		key := e.Address + "|" + strconv.FormatUint(uint64(e.Port), 10)
		if seen[key] {
			continue // Envoy tolerates duplicates, grpc-go NACKs them
		}
		seen[key] = true
		k := groupKey{locality: e.Locality}
		if mode.failover && len(mode.failoverPriority) > 0 {
			k.labelPrio = labelPriority(mode, in.Proxy, e)
		}
		groups[k] = append(groups[k], sharedLbEndpoint(shared, e))
	}

	keys := make([]groupKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: s.name}
	type prioritized struct {
		prio int
		key  groupKey
		llb  *endpointv3.LocalityLbEndpoints
	}
	var all []prioritized
	for _, k := range keys {
		loc := cdsParseLocality(k.locality)
		llb := &endpointv3.LocalityLbEndpoints{Locality: loc, LbEndpoints: groups[k]}
		var total uint64
		for _, e := range llb.LbEndpoints {
			total += uint64(e.GetLoadBalancingWeight().GetValue())
		}
		llb.LoadBalancingWeight = wrapperspb.UInt32(uint32(min(total, math.MaxUint32)))
		prio := 0
		if mode.failover {
			prio = k.labelPrio*5 + localityPriority(mode, loc)
		}
		all = append(all, prioritized{prio, k, llb})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].prio != all[j].prio {
			return all[i].prio < all[j].prio
		}
		return all[i].key.locality < all[j].key.locality
	})
	// Priorities must run 0..N without gaps (Envoy and grpc-go both insist).
	next, last := -1, -1
	for _, p := range all {
		if p.prio != last {
			next++
			last = p.prio
		}
		p.llb.Priority = uint32(next)
		cla.Endpoints = append(cla.Endpoints, p.llb)
	}
	if mode.distribute != nil {
		applyDistribute(cla, mode.distribute)
	}
	return cla
}

func cdsLbEndpoint(e *model.Endpoint) *endpointv3.LbEndpoint {
	weight := e.Weight
	if weight == 0 {
		weight = 1
	}
	health := corev3.HealthStatus_HEALTHY
	if e.Health == model.Unhealthy {
		health = corev3.HealthStatus_UNHEALTHY
	}
	lb := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: cdsEndpointAddress(e.Address, e.Port),
		}},
		HealthStatus:        health,
		LoadBalancingWeight: wrapperspb.UInt32(weight),
	}
	md := map[string]*structpb.Struct{}
	if endpointTLSMode(e) {
		md[TransportSocketMatchKey] = &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}
	}
	if f := workloadFields(e); len(f) > 0 {
		md[workloadmeta.FilterNamespace] = &structpb.Struct{Fields: f}
	}
	if len(md) > 0 {
		lb.Metadata = &corev3.Metadata{FilterMetadata: md}
	}
	return lb
}

// workloadFields is the endpoint's filter_metadata["istio"]: Istio's
// "workload" string ("name;namespace;canonical-service;canonical-revision;cluster")
// for endpoints of a WorkloadEntry, plus its app and version labels. The
// source proxy labels its telemetry with them (destination_workload,
// destination_app, destination_version, ...) where Istio would use metadata
// exchange.
func workloadFields(e *model.Endpoint) map[string]*structpb.Value {
	f := map[string]*structpb.Value{}
	if e.Workload.Name != "" {
		// The mesh has no cluster id yet: the cluster field stays empty.
		w := workloadmeta.FromLabels(e.Workload.Name, e.Workload.Namespace, e.Labels, "")
		f[workloadmeta.KeyWorkload] = structpb.NewStringValue(w.String())
	}
	if v := workloadmeta.App(e.Labels); v != "" {
		f[workloadmeta.KeyApp] = structpb.NewStringValue(v)
	}
	if v := workloadmeta.Version(e.Labels); v != "" {
		f[workloadmeta.KeyVersion] = structpb.NewStringValue(v)
	}
	return f
}

func cdsIsUnix(addr string) bool { return strings.HasPrefix(addr, "unix://") }

// cdsEndpointAddress is a socket address for an IP or host name, or a pipe for "unix://PATH".
func cdsEndpointAddress(addr string, port uint32) *corev3.Address {
	if cdsIsUnix(addr) {
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: strings.TrimPrefix(addr, "unix://")}}}
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// cdsParseLocality splits "region/zone/subzone". grpc-go rejects a locality
// without an ID message, so an empty one is still a (blank) Locality.
func cdsParseLocality(s string) *corev3.Locality {
	parts := strings.SplitN(s, "/", 3)
	l := &corev3.Locality{Region: parts[0]}
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

// ProxyLocality returns the proxy's locality from node metadata LOCALITY
// ("region/zone/subzone"), else from its topology labels; nil if unknown.
func ProxyLocality(p *model.Proxy) *corev3.Locality {
	if s := p.Metadata[cdsLocalityMetadataKey]; s != "" {
		return cdsParseLocality(s)
	}
	r := p.Labels[cdsLabelRegion]
	if r == "" {
		return nil
	}
	return &corev3.Locality{Region: r, Zone: p.Labels[cdsLabelZone], SubZone: p.Labels[cdsLabelSubzone]}
}

// localityPlan is how locality load balancing applies to one cluster for one proxy.
type localityPlan struct {
	proxy *corev3.Locality
	// distribute is the first distribute rule whose "from" matches the proxy.
	distribute       *networkingv1.LocalityLoadBalancerSetting_Distribute
	failover         bool
	failoverRules    []*networkingv1.LocalityLoadBalancerSetting_Failover
	failoverPriority []string
}

// localityMode decides locality load balancing as Istio does: it is on
// unless localityLbSetting.enabled is false (Istio's mesh default enables
// it), needs a known proxy locality, and then either distributes by weight
// (when a distribute rule matches the proxy) or fails over by priority —
// the latter only with outlierDetection configured, because without
// ejection Envoy never moves traffic to a lower priority.
func localityMode(in Input, pol *networkingv1.TrafficPolicy) localityPlan {
	ll := pol.GetLoadBalancer().GetLocalityLbSetting()
	if ll.GetEnabled() != nil && !ll.GetEnabled().GetValue() {
		return localityPlan{}
	}
	loc := ProxyLocality(in.Proxy)
	if loc == nil {
		return localityPlan{}
	}
	plan := localityPlan{proxy: loc}
	for _, d := range ll.GetDistribute() {
		if localityMatch(loc, d.GetFrom()) {
			plan.distribute = d
			return plan
		}
	}
	if pol.GetOutlierDetection() != nil {
		plan.failover = true
		plan.failoverRules = ll.GetFailover()
		plan.failoverPriority = ll.GetFailoverPriority()
	}
	return plan
}

// localityMatch matches "region/zone/subzone" patterns where any part may be
// "*" and missing trailing parts match anything (Istio semantics).
func localityMatch(l *corev3.Locality, pattern string) bool {
	parts := strings.SplitN(pattern, "/", 3)
	get := func(i int) string {
		if i < len(parts) {
			return parts[i]
		}
		return ""
	}
	r, z, sz := get(0), get(1), get(2)
	return (r == "*" || r == l.GetRegion()) &&
		(z == "*" || z == "" || z == l.GetZone()) &&
		(sz == "*" || sz == "" || sz == l.GetSubZone())
}

// localityPriority is Istio's: 0 same region/zone/subzone, 1 same zone,
// 2 same region, 3 the failover region named for the proxy's region (or any
// other region when no rule names one), 4 regions a failover rule excludes.
func localityPriority(plan localityPlan, l *corev3.Locality) int {
	p := plan.proxy
	switch {
	case p.GetRegion() == l.GetRegion() && p.GetZone() == l.GetZone() && p.GetSubZone() == l.GetSubZone():
		return 0
	case p.GetRegion() == l.GetRegion() && p.GetZone() == l.GetZone():
		return 1
	case p.GetRegion() == l.GetRegion():
		return 2
	}
	for _, f := range plan.failoverRules {
		if f.GetFrom() == p.GetRegion() {
			if l.GetRegion() != f.GetTo() {
				return 4
			}
			break
		}
	}
	return 3
}

// labelPriority implements failoverPriority: the more leading labels an
// endpoint shares with the proxy, the higher its priority (0 best). An entry
// "key=value" compares the endpoint against value instead of the proxy's label.
func labelPriority(plan localityPlan, p *model.Proxy, e *model.Endpoint) int {
	n := len(plan.failoverPriority)
	for i, entry := range plan.failoverPriority {
		key, want, explicit := strings.Cut(entry, "=")
		if !explicit {
			want = proxyTopologyLabel(plan.proxy, p, key)
		}
		got := endpointTopologyLabel(e, key)
		if want == "" || got != want {
			return n - i
		}
	}
	return 0
}

func proxyTopologyLabel(loc *corev3.Locality, p *model.Proxy, key string) string {
	switch key {
	case cdsLabelRegion:
		return loc.GetRegion()
	case cdsLabelZone:
		return loc.GetZone()
	case cdsLabelSubzone:
		return loc.GetSubZone()
	case cdsLabelNetwork:
		if v := p.Metadata["NETWORK"]; v != "" {
			return v
		}
	}
	return p.Labels[key]
}

func endpointTopologyLabel(e *model.Endpoint, key string) string {
	l := cdsParseLocality(e.Locality)
	switch key {
	case cdsLabelRegion:
		return l.GetRegion()
	case cdsLabelZone:
		return l.GetZone()
	case cdsLabelSubzone:
		return l.GetSubZone()
	case cdsLabelNetwork:
		if e.Network != "" {
			return e.Network
		}
	}
	return e.Labels[key]
}

// applyDistribute rewrites locality weights from a distribute rule: each
// "to" pattern's percentage is split across the localities it matches in
// proportion to their endpoint weight; localities no pattern matches get no
// traffic and are dropped. Patterns apply in sorted order, first match wins.
func applyDistribute(cla *endpointv3.ClusterLoadAssignment, d *networkingv1.LocalityLoadBalancerSetting_Distribute) {
	unmatched := map[int]bool{}
	for i := range cla.Endpoints {
		unmatched[i] = true
	}
	for _, pattern := range cdsSortedKeys(d.GetTo()) {
		pct := d.GetTo()[pattern]
		var idx []int
		var total uint64
		for i, l := range cla.Endpoints {
			if unmatched[i] && localityMatch(l.GetLocality(), pattern) {
				delete(unmatched, i)
				idx = append(idx, i)
				total += uint64(l.GetLoadBalancingWeight().GetValue())
			}
		}
		for _, i := range idx {
			w := math.Ceil(float64(uint64(pct)*uint64(cla.Endpoints[i].GetLoadBalancingWeight().GetValue())) / float64(total))
			if w >= 1 {
				cla.Endpoints[i].LoadBalancingWeight = wrapperspb.UInt32(uint32(w))
			} else {
				unmatched[i] = true // 0% means no traffic
			}
		}
	}
	if len(unmatched) == 0 {
		return
	}
	kept := cla.Endpoints[:0]
	for i, l := range cla.Endpoints {
		if !unmatched[i] {
			kept = append(kept, l)
		}
	}
	cla.Endpoints = kept
}
