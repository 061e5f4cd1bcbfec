package translate

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
)

// HTTPProtocolOptionsName is the typed_extension_protocol_options key Envoy
// reads upstream HTTP settings from.
const HTTPProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Istio's ring hash default; Envoy's own default (1024) is the same, set
// explicitly so the value does not depend on the proxy.
const defaultMinRingSize = 1024

// policyApplier applies a merged DestinationRule traffic policy (and the
// defaults Istio applies without one) to an outbound cluster.
type policyApplier struct {
	in   Input
	c    *clusterv3.Cluster
	spec *clusterSpec
	grpc bool
	w    *cdsWarnings

	// HTTP protocol options, assembled by several settings and attached once.
	common       *corev3.HttpProtocolOptions
	http2        *corev3.Http2ProtocolOptions
	forceHTTP2   bool
	useClientPro bool
	// drop is set when the cluster cannot be sent safely at all.
	drop bool
}

func (p *policyApplier) apply() {
	pol := p.spec.policy
	p.applyLoadBalancer(pol.GetLoadBalancer())
	p.applyConnectionPool(pol.GetConnectionPool())
	p.applyOutlierDetection(pol.GetOutlierDetection())
	p.applyRetryBudget(pol.GetRetryBudget())
	p.applyLocality(pol)
	p.applyTLS(pol.GetTls())
	if !p.grpc {
		p.attachHTTPOptions()
	}
}

func (p *policyApplier) where() string {
	if p.spec.origin == "" {
		return "cluster " + p.spec.name
	}
	return p.spec.origin + " (cluster " + p.spec.name + ")"
}

func (p *policyApplier) applyLoadBalancer(lb *networkingv1.LoadBalancerSettings) {
	c := p.c
	if p.spec.typ == clusterv3.Cluster_ORIGINAL_DST {
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		if ch := lb.GetConsistentHash(); ch != nil {
			p.w.add("%s: consistentHash is ignored for passthrough clusters", p.where())
		}
		return
	}
	// Istio's default became LEAST_REQUEST (1.14+); grpc-go accepts it too.
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	if ch := lb.GetConsistentHash(); ch != nil {
		p.applyConsistentHash(ch)
	} else {
		switch lb.GetSimple() {
		case networkingv1.LoadBalancerSettings_ROUND_ROBIN:
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		case networkingv1.LoadBalancerSettings_RANDOM:
			if p.grpc {
				p.w.add("%s: grpc clients do not support RANDOM load balancing; using ROUND_ROBIN", p.where())
				c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
			} else {
				c.LbPolicy = clusterv3.Cluster_RANDOM
			}
		case networkingv1.LoadBalancerSettings_LEAST_CONN, networkingv1.LoadBalancerSettings_LEAST_REQUEST,
			networkingv1.LoadBalancerSettings_UNSPECIFIED:
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		}
	}
	p.applyWarmup(lb)
	if lb.GetZoneAwareLbSetting() != nil {
		p.w.add("%s: loadBalancer.zoneAwareLbSetting is not supported and was ignored", p.where())
	}
}

func (p *policyApplier) applyConsistentHash(ch *networkingv1.LoadBalancerSettings_ConsistentHashLB) {
	c := p.c
	if mg := ch.GetMaglev(); mg != nil {
		if p.grpc {
			p.w.add("%s: grpc clients do not support MAGLEV; using RING_HASH", p.where())
		} else {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if mg.GetTableSize() > 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{
					TableSize: wrapperspb.UInt64(mg.GetTableSize()),
				}}
			}
			return
		}
	}
	c.LbPolicy = clusterv3.Cluster_RING_HASH
	size := ch.GetRingHash().GetMinimumRingSize()
	if size == 0 {
		size = ch.GetMinimumRingSize() // deprecated spelling
	}
	if size == 0 {
		size = defaultMinRingSize
	}
	c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
		MinimumRingSize: wrapperspb.UInt64(size),
		HashFunction:    clusterv3.Cluster_RingHashLbConfig_XX_HASH, // the only one grpc-go accepts
	}}
}

// applyWarmup maps warmup / warmupDurationSecs to Envoy's slow start, which
// exists only for ROUND_ROBIN and LEAST_REQUEST.
func (p *policyApplier) applyWarmup(lb *networkingv1.LoadBalancerSettings) {
	window := lb.GetWarmup().GetDuration()
	if window == nil {
		window = lb.GetWarmupDurationSecs()
	}
	if window == nil {
		return
	}
	if p.grpc {
		p.w.add("%s: grpc clients do not support warmup (slow start); ignored", p.where())
		return
	}
	ss := &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: window}
	if a := lb.GetWarmup().GetAggression(); a != nil {
		ss.Aggression = &corev3.RuntimeDouble{DefaultValue: a.GetValue(), RuntimeKey: "weft.warmup.aggression"}
	}
	if mp := lb.GetWarmup().GetMinimumPercent(); mp != nil {
		ss.MinWeightPercent = &typev3.Percent{Value: mp.GetValue()}
	}
	switch p.c.LbPolicy {
	case clusterv3.Cluster_ROUND_ROBIN:
		p.c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: ss}}
	case clusterv3.Cluster_LEAST_REQUEST:
		p.c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: ss}}
	default:
		p.w.add("%s: warmup applies only to ROUND_ROBIN and LEAST_REQUEST; ignored for %s", p.where(), p.c.LbPolicy)
	}
}

// cdsDefaultThresholds are Istio's: Envoy's own defaults (1024 connections,
// 3 retries) surprise users in a mesh, so everything is unbounded unless
// the DestinationRule sets a limit.
func cdsDefaultThresholds() *clusterv3.CircuitBreakers_Thresholds {
	return &clusterv3.CircuitBreakers_Thresholds{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
		TrackRemaining:     true,
	}
}

func (p *policyApplier) thresholds() *clusterv3.CircuitBreakers_Thresholds {
	if p.c.CircuitBreakers == nil {
		t := cdsDefaultThresholds()
		if p.grpc {
			// grpc-go reads only max_requests; keep its clusters minimal.
			t = &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
		}
		p.c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
	}
	return p.c.CircuitBreakers.Thresholds[0]
}

func (p *policyApplier) applyConnectionPool(cp *networkingv1.ConnectionPoolSettings) {
	if !p.grpc {
		p.thresholds() // Istio's defaults apply with or without a connectionPool
	}
	if cp == nil {
		return
	}
	if tcp := cp.GetTcp(); tcp != nil {
		if p.grpc {
			p.w.add("%s: grpc clients ignore connectionPool.tcp; ignored", p.where())
		} else {
			if tcp.GetMaxConnections() > 0 {
				p.thresholds().MaxConnections = wrapperspb.UInt32(uint32(tcp.GetMaxConnections()))
			}
			if tcp.GetConnectTimeout() != nil {
				p.c.ConnectTimeout = tcp.GetConnectTimeout()
			}
			if ka := tcp.GetTcpKeepalive(); ka != nil {
				k := &corev3.TcpKeepalive{}
				if ka.GetProbes() > 0 {
					k.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
				}
				if t := ka.GetTime(); t != nil {
					k.KeepaliveTime = wrapperspb.UInt32(uint32(t.AsDuration().Seconds()))
				}
				if t := ka.GetInterval(); t != nil {
					k.KeepaliveInterval = wrapperspb.UInt32(uint32(t.AsDuration().Seconds()))
				}
				p.c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: k}
			}
			if d := tcp.GetMaxConnectionDuration(); d != nil {
				p.commonOpts().MaxConnectionDuration = d
			}
			if d := tcp.GetIdleTimeout(); d != nil {
				// For HTTP clusters http.idleTimeout (below) wins; TCP proxying
				// reads tcp.idleTimeout from the listener side.
				p.commonOpts().IdleTimeout = d
			}
		}
	}
	h := cp.GetHttp()
	if h == nil {
		return
	}
	if h.GetHttp2MaxRequests() > 0 {
		p.thresholds().MaxRequests = wrapperspb.UInt32(uint32(h.GetHttp2MaxRequests()))
	}
	if p.grpc {
		if h.GetHttp1MaxPendingRequests() > 0 || h.GetMaxRetries() > 0 || h.GetMaxRequestsPerConnection() > 0 ||
			h.GetIdleTimeout() != nil || h.GetH2UpgradePolicy() != networkingv1.ConnectionPoolSettings_HTTPSettings_DEFAULT ||
			h.GetUseClientProtocol() || h.GetMaxConcurrentStreams() > 0 || h.GetHttp2KeepAlive() != nil {
			p.w.add("%s: grpc clients support only connectionPool.http.http2MaxRequests; other http settings ignored", p.where())
		}
		return
	}
	if h.GetHttp1MaxPendingRequests() > 0 {
		p.thresholds().MaxPendingRequests = wrapperspb.UInt32(uint32(h.GetHttp1MaxPendingRequests()))
	}
	if h.GetMaxRetries() > 0 {
		p.thresholds().MaxRetries = wrapperspb.UInt32(uint32(h.GetMaxRetries()))
	}
	if h.GetMaxRequestsPerConnection() > 0 {
		p.commonOpts().MaxRequestsPerConnection = wrapperspb.UInt32(uint32(h.GetMaxRequestsPerConnection()))
	}
	if d := h.GetIdleTimeout(); d != nil {
		p.commonOpts().IdleTimeout = d
	}
	if h.GetMaxConcurrentStreams() > 0 {
		p.h2Opts().MaxConcurrentStreams = wrapperspb.UInt32(uint32(h.GetMaxConcurrentStreams()))
	}
	if ka := h.GetHttp2KeepAlive(); ka != nil {
		p.h2Opts().ConnectionKeepalive = &corev3.KeepaliveSettings{Interval: ka.GetInterval(), Timeout: ka.GetTimeout()}
	}
	if h.GetH2UpgradePolicy() == networkingv1.ConnectionPoolSettings_HTTPSettings_UPGRADE && p.spec.port.Protocol == model.ProtocolHTTP {
		p.forceHTTP2 = true
	}
	p.useClientPro = h.GetUseClientProtocol()
}

func (p *policyApplier) commonOpts() *corev3.HttpProtocolOptions {
	if p.common == nil {
		p.common = &corev3.HttpProtocolOptions{}
	}
	return p.common
}

func (p *policyApplier) h2Opts() *corev3.Http2ProtocolOptions {
	if p.http2 == nil {
		p.http2 = &corev3.Http2ProtocolOptions{}
	}
	return p.http2
}

// attachHTTPOptions sets the upstream HTTP protocol: HTTP/2 for HTTP2/GRPC
// ports (and HTTP ports with h2UpgradePolicy UPGRADE), the downstream
// protocol for ports whose protocol is unknown (sniffed) or when
// useClientProtocol is set, HTTP/1.1 otherwise.
func (p *policyApplier) attachHTTPOptions() {
	opts := upstreamHTTPOptions(p.spec.port.Protocol, p.forceHTTP2, p.useClientPro, p.common, p.http2)
	if opts == nil {
		return
	}
	a, err := anypb.New(opts)
	if err != nil {
		p.w.add("%s: marshal HttpProtocolOptions: %v", p.where(), err)
		return
	}
	p.c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsName: a}
}

func upstreamHTTPOptions(proto model.Protocol, forceH2, useClient bool, common *corev3.HttpProtocolOptions, h2 *corev3.Http2ProtocolOptions) *httpv3.HttpProtocolOptions {
	h2opts := h2
	if h2opts == nil {
		h2opts = &corev3.Http2ProtocolOptions{}
	}
	opts := &httpv3.HttpProtocolOptions{CommonHttpProtocolOptions: common}
	switch {
	case useClient || proto == model.ProtocolUnsupported:
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: h2opts,
			},
		}
	case proto.IsHTTP2() || forceH2:
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2opts},
			},
		}
	case common != nil || h2 != nil:
		// Settings without a protocol change: state HTTP/1.1 explicitly so
		// Envoy accepts the options block.
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			},
		}
	default:
		return nil
	}
	return opts
}

// applyOutlierDetection follows Istio: success-rate ejection off, each
// consecutive-error detector enforced at 100% when set, and the panic
// threshold taken from minHealthPercent (0 disables panic mode, which suits
// services with few endpoints).
func (p *policyApplier) applyOutlierDetection(od *networkingv1.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	if e := od.GetConsecutive_5XxErrors(); e != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(cdsEnforce(e.GetValue()))
	} else if od.GetConsecutiveErrors() > 0 { //nolint:staticcheck // deprecated field still honoured
		v := uint32(od.GetConsecutiveErrors()) //nolint:staticcheck
		out.Consecutive_5Xx = wrapperspb.UInt32(v)
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
		p.w.add("%s: outlierDetection.consecutiveErrors is deprecated; treated as consecutive5xxErrors", p.where())
	}
	if e := od.GetConsecutiveGatewayErrors(); e != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(cdsEnforce(e.GetValue()))
	}
	if od.GetInterval() != nil {
		out.Interval = od.GetInterval()
	}
	if od.GetBaseEjectionTime() != nil {
		out.BaseEjectionTime = od.GetBaseEjectionTime()
	}
	if od.GetMaxEjectionPercent() > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(min(od.GetMaxEjectionPercent(), 100)))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if v := od.GetConsecutiveLocalOriginFailures().GetValue(); v > 0 {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v)
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
		if p.grpc {
			p.w.add("%s: grpc clients do not support splitExternalLocalOriginErrors; ignored", p.where())
		}
	} else if od.GetConsecutiveLocalOriginFailures() != nil {
		p.w.add("%s: outlierDetection.consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors; ignored", p.where())
	}
	if len(od.GetOutlierDetectionHttpErrorCodes()) > 0 {
		p.w.add("%s: outlierDetection.outlierDetectionHttpErrorCodes is not supported and was ignored", p.where())
	}
	if p.grpc {
		// grpc-go implements only the success-rate and failure-percentage
		// algorithms plus the timing fields; consecutive-error counters are
		// not understood, so send just what it uses.
		out = &clusterv3.OutlierDetection{
			Interval:             out.Interval,
			BaseEjectionTime:     out.BaseEjectionTime,
			MaxEjectionPercent:   out.MaxEjectionPercent,
			EnforcingSuccessRate: wrapperspb.UInt32(0),
		}
		if od.GetConsecutive_5XxErrors() != nil || od.GetConsecutiveGatewayErrors() != nil {
			p.w.add("%s: grpc clients do not implement consecutive-error ejection; only interval/baseEjectionTime/maxEjectionPercent were sent", p.where())
		}
	}
	p.c.OutlierDetection = out
	if !p.grpc && od.GetMinHealthPercent() >= 0 {
		p.commonLb().HealthyPanicThreshold = &typev3.Percent{Value: float64(od.GetMinHealthPercent())}
	}
}

func cdsEnforce(v uint32) uint32 {
	if v > 0 {
		return 100
	}
	return 0
}

func (p *policyApplier) commonLb() *clusterv3.Cluster_CommonLbConfig {
	if p.c.CommonLbConfig == nil {
		p.c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	return p.c.CommonLbConfig
}

func (p *policyApplier) applyRetryBudget(rb *networkingv1.TrafficPolicy_RetryBudget) {
	if rb == nil {
		return
	}
	if p.grpc {
		p.w.add("%s: grpc clients do not support retryBudget; ignored", p.where())
		return
	}
	b := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}
	if rb.GetPercent() != nil {
		b.BudgetPercent = &typev3.Percent{Value: rb.GetPercent().GetValue()}
	}
	if rb.GetMinRetryConcurrency() > 0 {
		b.MinRetryConcurrency = wrapperspb.UInt32(rb.GetMinRetryConcurrency())
	}
	if rb.GetBudgetInterval() != nil {
		p.w.add("%s: retryBudget.budgetInterval is not supported and was ignored", p.where())
	}
	t := p.thresholds()
	t.RetryBudget = b
	t.MaxRetries = nil // Envoy ignores max_retries when a budget is set
}

// applyLocality sets the cluster half of locality load balancing: Envoy's
// locality-weighted balancing when distribute weights are in use. Priorities
// for failover live in the ClusterLoadAssignment (see Endpoints).
func (p *policyApplier) applyLocality(pol *networkingv1.TrafficPolicy) {
	mode := localityMode(p.in, pol)
	if mode.distribute != nil {
		if p.grpc {
			return // grpc-go always weights localities; nothing to configure
		}
		p.commonLb().LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		}
	}
	ll := pol.GetLoadBalancer().GetLocalityLbSetting()
	if ll != nil && len(ll.GetDistribute()) > 0 && len(ll.GetFailover()) > 0 {
		p.w.add("%s: localityLbSetting.distribute and failover are exclusive; distribute wins", p.where())
	}
}
