package runtime

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Fixtures shaped like Weft's control-plane output (internal/translate names):
// the Bookinfo reviews/ratings services seen from a productpage sidecar.

const (
	reviewsHost = "reviews.default.svc.cluster.local"
	ratingsHost = "ratings.default.svc.cluster.local"
	reviewsAll  = "outbound|9080||" + reviewsHost
	reviewsV1   = "outbound|9080|v1|" + reviewsHost
	reviewsV2   = "outbound|9080|v2|" + reviewsHost
	reviewsV3   = "outbound|9080|v3|" + reviewsHost
	ratingsAll  = "outbound|9080||" + ratingsHost
	mysqlAll    = "outbound|3306||mysql.default.svc.cluster.local"
	inbound9080 = "inbound|9080||productpage.default.svc.cluster.local"
)

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		ConnectTimeout: durationpb.New(10 * time.Second),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(4294967295), MaxPendingRequests: wrapperspb.UInt32(4294967295),
			MaxRequests: wrapperspb.UInt32(4294967295), MaxRetries: wrapperspb.UInt32(4294967295),
		}}},
	}
}

func socketAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func lbEndpoint(ip string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddr(ip, port)}},
		HealthStatus:        corev3.HealthStatus_HEALTHY,
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
}

func cla(name string, ips ...string) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, ip := range ips {
		eps = append(eps, lbEndpoint(ip, 9080))
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{Region: "r1", Zone: "z1"},
		LbEndpoints:         eps,
		LoadBalancingWeight: wrapperspb.UInt32(uint32(len(eps))),
	}}}
}

func hcm(rds string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcmv3.HttpConnectionManager{
		StatPrefix: "outbound_0.0.0.0_" + rds,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rds,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: FilterFault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
			{Name: FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
	})}}
}

func tcpProxy(cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpv3.TcpProxy{
		StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster},
	})}}
}

func httpListener(port uint32) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:         "0.0.0.0_9080",
		Address:      socketAddr("0.0.0.0", port),
		BindToPort:   wrapperspb.Bool(false),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcm("9080")}}},
	}
}

func virtualOutbound() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:           "virtualOutbound",
		Address:        socketAddr("0.0.0.0", 15001),
		UseOriginalDst: wrapperspb.Bool(true),
		ListenerFilters: []*listenerv3.ListenerFilter{
			{Name: FilterOriginalDst},
		},
		FilterChains: []*listenerv3.FilterChain{{
			Name:             "virtualOutbound-blackhole",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(15001)},
			Filters:          []*listenerv3.Filter{tcpProxy("BlackHoleCluster")},
		}},
		DefaultFilterChain: &listenerv3.FilterChain{Name: "PassthroughFilterChain", Filters: []*listenerv3.Filter{tcpProxy("PassthroughCluster")}},
	}
}

func virtualInbound() *listenerv3.Listener {
	inlineRoutes := &routev3.RouteConfiguration{Name: "inbound|9080||", VirtualHosts: []*routev3.VirtualHost{{
		Name: "inbound|http|9080", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: inbound9080}}},
		}},
	}}}
	inHCM := &listenerv3.Filter{Name: FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcmv3.HttpConnectionManager{
		StatPrefix:     "inbound_0.0.0.0_9080",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inlineRoutes},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: FilterRouter}},
	})}}
	return &listenerv3.Listener{
		Name:    "virtualInbound",
		Address: socketAddr("0.0.0.0", 15006),
		ListenerFilters: []*listenerv3.ListenerFilter{
			{Name: FilterOriginalDst}, {Name: FilterTLSInspector}, {Name: FilterHTTPInspect},
		},
		FilterChains: []*listenerv3.FilterChain{
			{Name: "0.0.0.0_9080_http", FilterChainMatch: &listenerv3.FilterChainMatch{
				DestinationPort: wrapperspb.UInt32(9080), TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.1", "h2c"},
			}, Filters: []*listenerv3.Filter{inHCM}},
			{Name: "0.0.0.0_9080_tcp", FilterChainMatch: &listenerv3.FilterChainMatch{
				DestinationPort: wrapperspb.UInt32(9080), TransportProtocol: "raw_buffer",
			}, Filters: []*listenerv3.Filter{tcpProxy(inbound9080)}},
		},
		DefaultFilterChain: &listenerv3.FilterChain{Name: "InboundPassthroughFilterChain", Filters: []*listenerv3.Filter{tcpProxy("InboundPassthroughCluster")}},
	}
}

func clusterRoute(c string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}, Timeout: durationpb.New(0)}}
}

func routeConfig9080() *routev3.RouteConfiguration {
	exactHeader := func(name, v string) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}},
		}}
	}
	fault := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
		ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: 418},
		Percentage: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
	}, Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(2 * time.Second)},
		Percentage:         &typev3.FractionalPercent{Numerator: 50, Denominator: typev3.FractionalPercent_HUNDRED},
	}}
	return &routev3.RouteConfiguration{
		Name: "9080",
		VirtualHosts: []*routev3.VirtualHost{
			{
				Name:    "reviews.default.svc.cluster.local:9080",
				Domains: []string{reviewsHost, reviewsHost + ":9080", "reviews", "reviews:9080", "reviews.default", "reviews.default:9080", "10.96.0.10", "10.96.0.10:9080"},
				Routes: []*routev3.Route{
					{Name: "jason", Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
						Headers:       []*routev3.HeaderMatcher{exactHeader("end-user", "jason")},
					}, Action: clusterRoute(reviewsV2)},
					{Name: "regex", Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/api/v[0-9]+/reviews/[0-9]+"}},
						Headers:       []*routev3.HeaderMatcher{exactHeader(":method", "GET")},
					}, Action: clusterRoute(reviewsV3)},
					{Name: "query", Match: &routev3.RouteMatch{
						PathSpecifier:   &routev3.RouteMatch_Path{Path: "/debug"},
						QueryParameters: []*routev3.QueryParameterMatcher{{Name: "canary", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}}}}},
					}, Action: clusterRoute(reviewsV3)},
					{Name: "redirect", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/old"}},
						Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"}, ResponseCode: routev3.RedirectAction_FOUND}}},
					{Name: "direct", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/healthz"}},
						Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "ok"}}}}},
					{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
						Action: &routev3.Route_Route{Route: &routev3.RouteAction{
							ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
								{Name: reviewsV1, Weight: wrapperspb.UInt32(80)},
								{Name: reviewsV3, Weight: wrapperspb.UInt32(20)},
							}}},
							Timeout: durationpb.New(3 * time.Second),
							RetryPolicy: &routev3.RetryPolicy{
								RetryOn:              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
								NumRetries:           wrapperspb.UInt32(2),
								PerTryTimeout:        durationpb.New(time.Second),
								RetriableStatusCodes: []uint32{503},
								RetryHostPredicate:   []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}},
							},
							HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}},
						}},
						RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-route", Value: "default"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
					},
				},
			},
			{
				Name:                 "ratings.default.svc.cluster.local:9080",
				Domains:              []string{ratingsHost, ratingsHost + ":9080", "ratings", "ratings:9080"},
				TypedPerFilterConfig: map[string]*anypb.Any{FilterFault: mustAny(fault)},
				Routes:               []*routev3.Route{{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: clusterRoute(ratingsAll)}},
			},
			{
				Name:    "wildcard-suffix",
				Domains: []string{"*.example.com", "*.api.example.com", "static.*"},
				Routes:  []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: clusterRoute(ratingsAll)}},
			},
			{
				Name:    "allow_any",
				Domains: []string{"*"},
				Routes:  []*routev3.Route{{Name: "allow_any", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: clusterRoute("PassthroughCluster")}},
			},
		},
	}
}

func originalDst(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(10 * time.Second),
	}
}

func staticCluster(name, ip string, port uint32) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(10 * time.Second),
	}
	if ip != "" {
		c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(ip, port)},
		}}}
	}
	return c
}

func mysqlListener() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:         "10.96.0.30_3306",
		Address:      socketAddr("10.96.0.30", 3306),
		BindToPort:   wrapperspb.Bool(false),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpProxy(mysqlAll)}}},
	}
}

// weftResources is a complete productpage sidecar config.
func weftResources() []proto.Message {
	return []proto.Message{
		edsCluster(reviewsAll), edsCluster(reviewsV1), edsCluster(reviewsV2), edsCluster(reviewsV3),
		edsCluster(ratingsAll), edsCluster(mysqlAll),
		originalDst("PassthroughCluster"), originalDst("InboundPassthroughCluster"),
		staticCluster("BlackHoleCluster", "", 0), staticCluster(inbound9080, "127.0.0.1", 9080),
		cla(reviewsAll, "10.1.0.1", "10.1.0.2", "10.1.0.3"),
		cla(reviewsV1, "10.1.0.1"), cla(reviewsV2, "10.1.0.2"), cla(reviewsV3, "10.1.0.3"),
		cla(ratingsAll, "10.2.0.1", "10.2.0.2"), cla(mysqlAll, "10.3.0.1"),
		httpListener(9080), mysqlListener(), virtualOutbound(), virtualInbound(),
		routeConfig9080(),
	}
}
