package upstream

import (
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/workloadmeta"
)

// Endpoint is one upstream host of a cluster.
type Endpoint struct {
	// Addr is "host:port" ready to dial; Address is set when host is an IP.
	Addr     string
	Address  netip.AddrPort
	Hostname string // DNS name for STRICT_DNS/LOGICAL_DNS endpoints
	Port     uint32
	Weight   uint32
	Priority uint32
	Locality string // "region/zone/subzone"
	Health   corev3.HealthStatus
	// TLS is the transport to this endpoint, picked from the cluster's
	// transport_socket_matches by the endpoint's metadata (nil: plaintext).
	TLS *UpstreamTLS
	// Workload is the workload behind the endpoint, from its
	// filter_metadata["istio"] (workloadmeta's "workload" string plus app
	// and version), nil when weftd sent none. WorkloadKey is that metadata
	// verbatim: equal across EDS updates for the same workload, so
	// telemetry can cache label tuples by it.
	Workload    *workloadmeta.Workload
	WorkloadKey string

	active atomic.Int64
	od     *outlierState // shared with the same address in later EDS versions
	group  *outlierGroup
}

// TLSKey is the endpoint's UpstreamTLS.Key, "" for plaintext: the
// h1.Decision.UpstreamTLS of requests to it. It does not allocate.
func (e *Endpoint) TLSKey() string {
	if e.TLS == nil {
		return ""
	}
	return e.TLS.Key
}

// Begin marks a request to this endpoint as active (least-request LB).
func (e *Endpoint) Begin() { e.active.Add(1) }

// End marks a request started with Begin as finished.
func (e *Endpoint) End() { e.active.Add(-1) }

// Active is the number of in-flight requests.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// healthyStatus is Envoy's notion: UNKNOWN and HEALTHY take traffic.
func healthyStatus(h corev3.HealthStatus) bool {
	return h == corev3.HealthStatus_UNKNOWN || h == corev3.HealthStatus_HEALTHY
}

// EndpointSet is one immutable ClusterLoadAssignment with its LB tables
// (schedules, rings and maglev tables built once).
type EndpointSet struct {
	src    *endpointv3.ClusterLoadAssignment
	all    []*Endpoint
	levels []*level
	// loadCum[i] is the cumulative percentage (0..100) of traffic for levels[i]
	// computed with the overprovisioning factor at build time.
	loadCum []uint32
	group   *outlierGroup
}

// level is one priority level.
type level struct {
	priority uint32
	all      []*Endpoint
	healthy  []*Endpoint
	// schedule is a weighted round-robin sequence of indexes into healthy,
	// also used for weighted random.
	schedule []uint32
	ring     []ringEntry // RING_HASH
	maglev   []uint32    // MAGLEV
}

// NewEndpointSet compiles cla for cluster c. Outlier-detection state of
// endpoints also present in prev (same address) is carried over. Errors are
// *FieldError naming the offending field.
func NewEndpointSet(c *Cluster, cla *endpointv3.ClusterLoadAssignment, prev *EndpointSet) (*EndpointSet, error) {
	e := fieldErr
	set := &EndpointSet{src: cla, group: &outlierGroup{cfg: c.Outlier, now: c.now}}
	var prevByAddr map[string]*outlierState
	if prev != nil && c.Outlier != nil {
		prevByAddr = make(map[string]*outlierState, len(prev.all))
		for _, ep := range prev.all {
			if ep.od != nil {
				prevByAddr[ep.Addr] = ep.od
			}
		}
	}
	overprov := uint32(140)
	if p := cla.GetPolicy(); p != nil {
		if v := p.GetOverprovisioningFactor(); v != nil {
			overprov = v.GetValue()
		}
		if len(p.GetDropOverloads()) > 0 {
			return nil, e("policy.drop_overloads", "drop overloads are not supported")
		}
	}
	byPrio := map[uint32]*level{}
	// Locality weights are folded into per-host schedule weights: host weight
	// scaled by locality_weight / (sum of lb weights in the locality).
	type weighted struct {
		ep *Endpoint
		w  float64
	}
	weights := map[*level][]weighted{}
	for i, lle := range cla.GetEndpoints() {
		prio := lle.GetPriority()
		lv := byPrio[prio]
		if lv == nil {
			lv = &level{priority: prio}
			byPrio[prio] = lv
		}
		loc := lle.GetLocality()
		locName := loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone()
		var sumW float64
		var eps []*Endpoint
		for j, lb := range lle.GetLbEndpoints() {
			ep, err := endpointFrom(lb)
			if err != nil {
				return nil, e("endpoints["+itoa(i)+"].lb_endpoints["+itoa(j)+"]", "%v", err)
			}
			ep.Priority, ep.Locality, ep.group = prio, locName, set.group
			ep.TLS = c.TLSFor(lb.GetMetadata(), lle.GetMetadata())
			if c.Outlier != nil {
				if st := prevByAddr[ep.Addr]; st != nil {
					ep.od = st
				} else {
					ep.od = &outlierState{}
				}
				if ep.od.ejectedUntil.Load() != 0 {
					set.group.ejected.Add(1)
				}
			}
			set.all = append(set.all, ep)
			lv.all = append(lv.all, ep)
			if healthyStatus(ep.Health) {
				lv.healthy = append(lv.healthy, ep)
				sumW += float64(ep.Weight)
				eps = append(eps, ep)
			}
		}
		lw := 1.0
		if c.LocalityWeighted {
			if v := lle.GetLoadBalancingWeight(); v != nil {
				lw = float64(v.GetValue())
			} else {
				lw = 0 // Envoy: a locality without weight gets no traffic
			}
		}
		for _, ep := range eps {
			w := float64(ep.Weight)
			if c.LocalityWeighted && sumW > 0 {
				w = lw * w / sumW * 1000
			}
			weights[lv] = append(weights[lv], weighted{ep, w})
		}
	}
	set.group.total = int32(len(set.all))
	for _, lv := range byPrio {
		set.levels = append(set.levels, lv)
	}
	sort.Slice(set.levels, func(i, j int) bool { return set.levels[i].priority < set.levels[j].priority })
	for _, lv := range set.levels {
		ws := weights[lv]
		// healthy is re-derived from the weighted list to keep indexes aligned.
		lv.healthy = lv.healthy[:0]
		fw := make([]float64, 0, len(ws))
		for _, w := range ws {
			if w.w <= 0 {
				continue
			}
			lv.healthy = append(lv.healthy, w.ep)
			fw = append(fw, w.w)
		}
		lv.schedule = wrrSchedule(fw)
		switch c.LbPolicy {
		case lbRingHash:
			lv.ring = buildRing(lv.healthy, fw, c.RingMinSize, c.RingMaxSize)
		case lbMaglev:
			lv.maglev = buildMaglev(lv.healthy, fw, c.MaglevSize)
		}
	}
	set.loadCum = priorityLoad(set.levels, overprov)
	return set, nil
}

func endpointFrom(lb *endpointv3.LbEndpoint) (*Endpoint, error) {
	ep := lb.GetEndpoint()
	if ep == nil {
		return nil, errf("endpoint_name (named endpoints) is not supported")
	}
	sa := ep.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, errf("address: only socket addresses are supported")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, errf("address.socket_address.protocol: only TCP is supported")
	}
	out := &Endpoint{Port: sa.GetPortValue(), Health: lb.GetHealthStatus(), Weight: 1}
	if sa.GetNamedPort() != "" {
		return nil, errf("address.socket_address.named_port is not supported")
	}
	if w := lb.GetLoadBalancingWeight(); w != nil && w.GetValue() > 0 {
		out.Weight = w.GetValue()
	}
	out.Workload, out.WorkloadKey = workloadOf(lb.GetMetadata().GetFilterMetadata()[workloadmeta.FilterNamespace])
	if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil {
		out.Address = netip.AddrPortFrom(ip.Unmap(), uint16(out.Port))
		out.Addr = out.Address.String()
	} else {
		if sa.GetAddress() == "" {
			return nil, errf("address.socket_address.address is empty")
		}
		out.Hostname = sa.GetAddress()
		out.Addr = sa.GetAddress() + ":" + strconv.FormatUint(uint64(out.Port), 10)
	}
	return out, nil
}

// workloadOf reads the workload weftd describes in an endpoint's
// filter_metadata["istio"]. Metadata that is not weftd's (or Istio's) form is
// ignored rather than rejected: it only labels telemetry.
func workloadOf(md *structpb.Struct) (*workloadmeta.Workload, string) {
	f := md.GetFields()
	raw := f[workloadmeta.KeyWorkload].GetStringValue()
	app, version := f[workloadmeta.KeyApp].GetStringValue(), f[workloadmeta.KeyVersion].GetStringValue()
	if raw == "" && app == "" && version == "" {
		return nil, ""
	}
	if raw == "" {
		// Only app/version labels (an endpoint without a WorkloadEntry):
		// the canonical pair follows from them by Istio's rule.
		raw = ";;" + app + ";" + version + ";"
	}
	w, ok := workloadmeta.Parse(raw, app, version)
	if !ok {
		return nil, ""
	}
	return &w, raw + "|" + app + "|" + version
}

// priorityLoad distributes 100% of traffic over priority levels the way Envoy
// does: level health = min(100, overprovisioning * healthy/total); each level
// takes what is left up to its health; if total health < 100 the loads are
// normalised. With no healthy host anywhere, everything goes to level 0.
func priorityLoad(levels []*level, overprov uint32) []uint32 {
	if len(levels) == 0 {
		return nil
	}
	health := make([]uint32, len(levels))
	var sum uint32
	for i, lv := range levels {
		if len(lv.all) == 0 {
			continue
		}
		h := uint32(uint64(overprov) * uint64(len(lv.healthy)) / uint64(len(lv.all)))
		health[i] = min(100, h)
		sum += health[i]
	}
	load := make([]uint32, len(levels))
	switch {
	case sum == 0:
		load[0] = 100
	case sum >= 100:
		left := uint32(100)
		for i, h := range health {
			load[i] = min(left, h)
			left -= load[i]
		}
	default:
		var given uint32
		for i, h := range health {
			load[i] = h * 100 / sum
			given += load[i]
		}
		for i := range load { // rounding remainder to the first loaded level
			if load[i] > 0 {
				load[i] += 100 - given
				break
			}
		}
	}
	cum := make([]uint32, len(levels))
	var acc uint32
	for i, l := range load {
		acc += l
		cum[i] = acc
	}
	return cum
}

// wrrSchedule returns a smooth weighted round-robin sequence (nginx-style) of
// indexes; equal weights give 0..n-1. Weights are scaled so the sequence has
// at most 4096 entries.
func wrrSchedule(w []float64) []uint32 {
	n := len(w)
	if n == 0 {
		return nil
	}
	equal := true
	for _, x := range w {
		if x != w[0] {
			equal = false
			break
		}
	}
	if equal {
		s := make([]uint32, n)
		for i := range s {
			s[i] = uint32(i)
		}
		return s
	}
	var maxW, total float64
	for _, x := range w {
		maxW = max(maxW, x)
		total += x
	}
	iw := make([]int, n)
	sum := 0
	scale := 1.0
	if total > 4096 {
		scale = 4096 / total
	} else if minPositive(w) < 1 {
		scale = 1 / minPositive(w)
	}
	for i, x := range w {
		iw[i] = max(1, int(x*scale+0.5))
		sum += iw[i]
	}
	g := iw[0]
	for _, x := range iw {
		g = gcd(g, x)
	}
	sum = 0
	for i := range iw {
		iw[i] /= g
		sum += iw[i]
	}
	cur := make([]int, n)
	s := make([]uint32, 0, sum)
	for range sum {
		best := 0
		for i := range cur {
			cur[i] += iw[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		s = append(s, uint32(best))
	}
	return s
}

func minPositive(w []float64) float64 {
	m := 0.0
	for _, x := range w {
		if x > 0 && (m == 0 || x < m) {
			m = x
		}
	}
	if m == 0 {
		return 1
	}
	return m
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick chooses an endpoint for one request: the priority level by Envoy's
// priority load (hash-derived when hasHash), then the cluster's lb_policy
// within the level, skipping outlier-ejected hosts. A level whose hosts are
// all ejected fails over to the next level. When no healthy host exists
// anywhere and the panic threshold is non-zero, Pick balances over all hosts
// (Envoy's panic mode). It returns nil when the cluster has no endpoints
// (ORIGINAL_DST clusters always: the caller dials the original destination).
// Pick does not allocate.
func (c *Cluster) Pick(hash uint64, hasHash bool) *Endpoint {
	set := c.eps.Load()
	if set == nil || len(set.levels) == 0 {
		return nil
	}
	start := 0
	if len(set.levels) > 1 {
		var r uint32
		if hasHash {
			r = uint32(hash % 100)
		} else {
			r = rand.Uint32N(100)
		}
		for i, cum := range set.loadCum {
			if r < cum {
				start = i
				break
			}
		}
	}
	for i := range set.levels {
		lv := set.levels[(start+i)%len(set.levels)]
		if ep := c.pickIn(lv, hash, hasHash); ep != nil {
			return ep
		}
	}
	if c.PanicThreshold > 0 {
		for _, lv := range set.levels {
			if len(lv.all) > 0 {
				return lv.all[int(c.rr.Add(1)%uint64(len(lv.all)))]
			}
		}
	}
	return nil
}

func (c *Cluster) pickIn(lv *level, hash uint64, hasHash bool) *Endpoint {
	n := len(lv.schedule)
	if n == 0 {
		return nil
	}
	switch c.LbPolicy {
	case lbRingHash:
		if !hasHash {
			hash = rand.Uint64()
		}
		return ringPick(lv, hash, c)
	case lbMaglev:
		if !hasHash {
			hash = rand.Uint64()
		}
		return maglevPick(lv, hash, c)
	case lbLeastRequest:
		var best *Endpoint
		for range c.ChoiceCount {
			ep := lv.healthy[lv.schedule[rand.IntN(n)]]
			if !c.available(ep) {
				continue
			}
			if best == nil || ep.active.Load() < best.active.Load() {
				best = ep
			}
		}
		if best != nil {
			return best
		}
		return c.probe(lv, rand.IntN(n))
	case lbRandom:
		return c.probe(lv, rand.IntN(n))
	default: // ROUND_ROBIN
		return c.probe(lv, int(c.rr.Add(1)%uint64(n)))
	}
}

// probe returns the first available host in the schedule from i on.
func (c *Cluster) probe(lv *level, i int) *Endpoint {
	n := len(lv.schedule)
	for k := 0; k < n; k++ {
		ep := lv.healthy[lv.schedule[(i+k)%n]]
		if c.available(ep) {
			return ep
		}
	}
	return nil
}

func (c *Cluster) available(ep *Endpoint) bool {
	if ep.od == nil {
		return true
	}
	return ep.od.available(ep.group)
}

// Source returns the ClusterLoadAssignment (do not modify).
func (s *EndpointSet) Source() *endpointv3.ClusterLoadAssignment { return s.src }
