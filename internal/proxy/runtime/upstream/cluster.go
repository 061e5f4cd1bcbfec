package upstream

import (
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Cluster is an upstream cluster: immutable CDS config plus the current
// endpoint set (swapped on EDS updates) and live circuit-breaker counters.
type Cluster struct {
	Name           string
	Type           clusterv3.Cluster_DiscoveryType
	LbPolicy       clusterv3.Cluster_LbPolicy
	EDSServiceName string // CLA name for EDS clusters (service_name or Name)
	ConnectTimeout time.Duration
	// HTTP2 is true when upstream HTTP must use HTTP/2 (explicit http2 options).
	HTTP2 bool
	// UseDownstreamProtocol mirrors use_downstream_protocol_config.
	UseDownstreamProtocol bool
	MaxRequestsPerConn    uint32
	IdleTimeout           time.Duration
	// TLS is the cluster's transport_socket (nil: plaintext).
	// SocketMatches are its transport_socket_matches (Istio's auto mTLS):
	// each endpoint gets the first whose criteria its metadata satisfies,
	// else TLS (see TLSFor and Endpoint.TLS).
	TLS           *UpstreamTLS
	SocketMatches []SocketMatch
	Thresholds    Thresholds
	Outlier       *OutlierConfig // nil: outlier detection disabled
	// LocalityWeighted enables locality weights (common_lb_config.locality_weighted_lb_config).
	LocalityWeighted bool
	// PanicThreshold is healthy_panic_threshold in percent (default 50; 0 disables).
	PanicThreshold float64
	RingMinSize    uint64
	RingMaxSize    uint64
	MaglevSize     uint64
	ChoiceCount    uint32 // least-request choices (default 2)

	src            *clusterv3.Cluster
	passthroughTLS *UpstreamTLS
	eps            atomic.Pointer[EndpointSet]
	rr             atomic.Uint64
	cb             [numResources]atomic.Int64
	now            func() int64
}

// Thresholds are the DEFAULT-priority circuit-breaker limits (Envoy defaults
// 1024/1024/1024/3).
type Thresholds struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
	// RetryBudget, when set, replaces MaxRetries: active retries may be
	// at most BudgetPercent of the active requests (pending included),
	// and never fewer than MinRetryConcurrency (Envoy's retry_budget;
	// defaults 20 % and 3).
	RetryBudget *RetryBudget
}

// RetryBudget is Envoy's circuit_breakers.thresholds.retry_budget.
type RetryBudget struct {
	BudgetPercent       float64
	MinRetryConcurrency uint32
}

// Resource is a circuit-breaker counter.
type Resource int

// Circuit-breaker resources.
const (
	Requests Resource = iota
	PendingRequests
	Connections
	Retries
	numResources
)

// Acquire takes one unit of r; it returns false (and takes nothing) when the
// threshold is reached — the caller answers 503 "upstream overflow".
func (c *Cluster) Acquire(r Resource) bool {
	limit := int64(c.limit(r))
	if c.cb[r].Add(1) > limit {
		c.cb[r].Add(-1)
		return false
	}
	return true
}

// Release returns one unit of r taken by Acquire.
func (c *Cluster) Release(r Resource) { c.cb[r].Add(-1) }

// InUse reports the current value of a circuit-breaker counter.
func (c *Cluster) InUse(r Resource) int64 { return c.cb[r].Load() }

func (c *Cluster) limit(r Resource) uint32 {
	if r == Retries && c.Thresholds.RetryBudget != nil {
		b := c.Thresholds.RetryBudget
		active := c.cb[Requests].Load() + c.cb[PendingRequests].Load()
		return max(b.MinRetryConcurrency, uint32(float64(active)*b.BudgetPercent/100))
	}
	switch r {
	case Requests:
		return c.Thresholds.MaxRequests
	case PendingRequests:
		return c.Thresholds.MaxPendingRequests
	case Connections:
		return c.Thresholds.MaxConnections
	default:
		return c.Thresholds.MaxRetries
	}
}

// Source returns the Cluster proto (for config dumps; do not modify).
func (c *Cluster) Source() *clusterv3.Cluster { return c.src }

// EndpointSet returns the currently published endpoint set, or nil.
func (c *Cluster) EndpointSet() *EndpointSet { return c.eps.Load() }

// Publish makes s the cluster's endpoint set. The runtime calls it when the
// snapshot that carries s is stored, so requests on older snapshots see the
// new endpoints too — the same as Envoy, where EDS updates a live cluster.
func (c *Cluster) Publish(s *EndpointSet) { c.eps.Store(s) }

// Endpoints returns the cluster's current endpoints (all priorities; shared, do
// not modify).
func (c *Cluster) Endpoints() []*Endpoint {
	if s := c.eps.Load(); s != nil {
		return s.all
	}
	return nil
}

// NewCluster compiles a Cluster. now is the clock for outlier detection
// (unix nanoseconds). Errors are *FieldError naming the offending field.
func NewCluster(pb *clusterv3.Cluster, now func() int64) (*Cluster, error) {
	name := pb.GetName()
	e := fieldErr
	c := &Cluster{
		Name:           name,
		src:            pb,
		now:            now,
		ConnectTimeout: 5 * time.Second,
		Thresholds:     Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3},
		PanicThreshold: 50,
		RingMinSize:    1024,
		RingMaxSize:    8 * 1024 * 1024,
		MaglevSize:     65537,
		ChoiceCount:    2,
	}
	if _, ok := pb.GetClusterDiscoveryType().(*clusterv3.Cluster_ClusterType); ok {
		return nil, e("cluster_type", "custom cluster type %q is not supported", pb.GetClusterType().GetName())
	}
	c.Type = pb.GetType()
	switch c.Type {
	case clusterv3.Cluster_EDS:
		c.EDSServiceName = pb.GetEdsClusterConfig().GetServiceName()
		if c.EDSServiceName == "" {
			c.EDSServiceName = name
		}
		if src := pb.GetEdsClusterConfig().GetEdsConfig(); src != nil && src.GetAds() == nil && src.GetConfigSourceSpecifier() != nil {
			return nil, e("eds_cluster_config.eds_config", "only ADS config sources are supported")
		}
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS, clusterv3.Cluster_ORIGINAL_DST:
	default:
		return nil, e("type", "cluster type %s is not supported", c.Type)
	}
	c.LbPolicy = pb.GetLbPolicy()
	switch c.LbPolicy {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST, clusterv3.Cluster_RANDOM,
		clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV:
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if c.Type != clusterv3.Cluster_ORIGINAL_DST {
			return nil, e("lb_policy", "CLUSTER_PROVIDED is only supported for ORIGINAL_DST clusters")
		}
	default:
		return nil, e("lb_policy", "load balancing policy %s is not supported", c.LbPolicy)
	}
	if pb.GetLoadBalancingPolicy() != nil {
		return nil, e("load_balancing_policy", "typed load balancing policies are not supported; use lb_policy")
	}
	if pb.GetLbSubsetConfig() != nil {
		return nil, e("lb_subset_config", "subset load balancing is not supported")
	}
	if len(pb.GetHealthChecks()) > 0 {
		return nil, e("health_checks", "active health checking is not supported")
	}
	if d := pb.GetConnectTimeout(); d != nil {
		c.ConnectTimeout = d.AsDuration()
	}
	if v := pb.GetMaxRequestsPerConnection(); v != nil {
		c.MaxRequestsPerConn = v.GetValue()
	}
	if pb.GetHttp2ProtocolOptions() != nil {
		c.HTTP2 = true
	}
	if o := pb.GetCommonHttpProtocolOptions(); o != nil {
		c.IdleTimeout = o.GetIdleTimeout().AsDuration()
		if v := o.GetMaxRequestsPerConnection(); v != nil {
			c.MaxRequestsPerConn = v.GetValue()
		}
	}
	for k, a := range pb.GetTypedExtensionProtocolOptions() {
		if k != httpProtocolOptionsKey {
			return nil, e("typed_extension_protocol_options["+k+"]", "unsupported protocol options")
		}
		var hpo httpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&hpo); err != nil {
			return nil, e("typed_extension_protocol_options["+k+"]", "decode: %v", err)
		}
		switch {
		case hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
			c.HTTP2 = true
		case hpo.GetUseDownstreamProtocolConfig() != nil:
			c.UseDownstreamProtocol = true
		case hpo.GetAutoConfig() != nil:
			return nil, e("typed_extension_protocol_options["+k+"].auto_config", "ALPN-negotiated upstream protocol is not supported")
		}
		if o := hpo.GetCommonHttpProtocolOptions(); o != nil {
			c.IdleTimeout = o.GetIdleTimeout().AsDuration()
			if v := o.GetMaxRequestsPerConnection(); v != nil {
				c.MaxRequestsPerConn = v.GetValue()
			}
		}
	}
	for _, t := range pb.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue // weft-proxy has no HIGH priority routes
		}
		if v := t.GetMaxConnections(); v != nil {
			c.Thresholds.MaxConnections = v.GetValue()
		}
		if v := t.GetMaxPendingRequests(); v != nil {
			c.Thresholds.MaxPendingRequests = v.GetValue()
		}
		if v := t.GetMaxRequests(); v != nil {
			c.Thresholds.MaxRequests = v.GetValue()
		}
		if v := t.GetMaxRetries(); v != nil {
			c.Thresholds.MaxRetries = v.GetValue()
		}
		if rb := t.GetRetryBudget(); rb != nil {
			b := &RetryBudget{BudgetPercent: 20, MinRetryConcurrency: 3}
			if p := rb.GetBudgetPercent(); p != nil {
				if p.GetValue() < 0 || p.GetValue() > 100 {
					return nil, e("circuit_breakers.thresholds.retry_budget.budget_percent", "%v is outside 0..100", p.GetValue())
				}
				b.BudgetPercent = p.GetValue()
			}
			if m := rb.GetMinRetryConcurrency(); m != nil {
				b.MinRetryConcurrency = m.GetValue()
			}
			c.Thresholds.RetryBudget = b
		}
	}
	if od := pb.GetOutlierDetection(); od != nil {
		c.Outlier = outlierConfig(od)
	}
	if cl := pb.GetCommonLbConfig(); cl != nil {
		if cl.GetLocalityWeightedLbConfig() != nil {
			c.LocalityWeighted = true
		}
		if cl.GetZoneAwareLbConfig() != nil {
			return nil, e("common_lb_config.zone_aware_lb_config", "zone-aware routing is not supported")
		}
		if p := cl.GetHealthyPanicThreshold(); p != nil {
			c.PanicThreshold = p.GetValue()
		}
	}
	if r := pb.GetRingHashLbConfig(); r != nil {
		if v := r.GetMinimumRingSize(); v != nil {
			c.RingMinSize = v.GetValue()
		}
		if v := r.GetMaximumRingSize(); v != nil {
			c.RingMaxSize = v.GetValue()
		}
		if c.RingMinSize > c.RingMaxSize {
			return nil, e("ring_hash_lb_config.minimum_ring_size", "exceeds maximum_ring_size")
		}
	}
	if m := pb.GetMaglevLbConfig(); m != nil && m.GetTableSize() != nil {
		c.MaglevSize = m.GetTableSize().GetValue()
		if !isPrime(c.MaglevSize) {
			return nil, e("maglev_lb_config.table_size", "%d is not prime", c.MaglevSize)
		}
	}
	if l := pb.GetLeastRequestLbConfig(); l != nil && l.GetChoiceCount() != nil {
		c.ChoiceCount = l.GetChoiceCount().GetValue()
		if c.ChoiceCount < 2 {
			c.ChoiceCount = 2
		}
	}
	if ts := pb.GetTransportSocket(); ts != nil {
		t, err := upstreamTLS(ts, "")
		if err != nil {
			return nil, prefixed("transport_socket.", err)
		}
		c.TLS = t
	}
	for i, m := range pb.GetTransportSocketMatches() {
		f := "transport_socket_matches[" + itoa(i) + "]"
		if m.GetName() == "" {
			return nil, e(f+".name", "required")
		}
		if m.GetTransportSocket() == nil {
			return nil, e(f+".transport_socket", "required")
		}
		t, err := upstreamTLS(m.GetTransportSocket(), m.GetName())
		if err != nil {
			return nil, prefixed(f+".transport_socket.", err)
		}
		c.SocketMatches = append(c.SocketMatches, SocketMatch{Name: m.GetName(), Criteria: m.GetMatch().GetFields(), TLS: t})
	}
	c.passthroughTLS = c.TLSFor(nil, nil)
	return c, nil
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for i := uint64(2); i*i <= n; i++ {
		if n%i == 0 {
			return false
		}
	}
	return true
}
