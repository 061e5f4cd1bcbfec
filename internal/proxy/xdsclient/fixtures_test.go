package xdsclient

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Resources shaped like Weft's control-plane output (internal/translate
// naming): a productpage sidecar's view of reviews v1/v2/v3.

const (
	reviewsHost = "reviews.default.svc.cluster.local"
	reviewsV1   = "outbound|9080|v1|" + reviewsHost
	reviewsV2   = "outbound|9080|v2|" + reviewsHost
	reviewsV3   = "outbound|9080|v3|" + reviewsHost
)

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

var ads = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: name, EdsConfig: ads},
		ConnectTimeout:       durationpb.New(10 * time.Second),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

func passthrough() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 "PassthroughCluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
	}
}

func cla(name string, ips ...string) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, ip := range ips {
		eps = append(eps, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}},
			}}},
			HealthStatus: corev3.HealthStatus_HEALTHY,
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

func listener9080(httpFilters ...string) *listenerv3.Listener {
	var fs []*hcmv3.HttpFilter
	for _, f := range httpFilters {
		fs = append(fs, &hcmv3.HttpFilter{Name: f})
	}
	fs = append(fs, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
	return &listenerv3.Listener{
		Name: "0.0.0.0_9080",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080},
		}}},
		BindToPort: wrapperspb.Bool(false),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcmv3.HttpConnectionManager{
				StatPrefix:     "outbound_0.0.0.0_9080",
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "9080", ConfigSource: ads}},
				HttpFilters:    fs,
			})},
		}}}},
	}
}

func routes9080() *routev3.RouteConfiguration {
	cl := func(c string) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}}
	}
	return &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{
		{
			Name:    reviewsHost + ":9080",
			Domains: []string{reviewsHost, reviewsHost + ":9080", "reviews", "reviews:9080"},
			Routes: []*routev3.Route{
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{
					Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}},
				}}}, Action: cl(reviewsV2)},
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
						{Name: reviewsV1, Weight: wrapperspb.UInt32(50)}, {Name: reviewsV3, Weight: wrapperspb.UInt32(50)},
					}}},
				}}},
			},
		},
		{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: cl("PassthroughCluster")}}},
	}}
}

type bundle struct {
	clusters  []types.Resource
	endpoints []types.Resource
	listeners []types.Resource
	routes    []types.Resource
}

func bookinfo() bundle {
	return bundle{
		clusters:  []types.Resource{edsCluster(reviewsV1), edsCluster(reviewsV2), edsCluster(reviewsV3), passthrough()},
		endpoints: []types.Resource{cla(reviewsV1, "10.1.0.1"), cla(reviewsV2, "10.1.0.2"), cla(reviewsV3, "10.1.0.3")},
		listeners: []types.Resource{listener9080()},
		routes:    []types.Resource{routes9080()},
	}
}

func (b bundle) snapshot(version string) *cachev3.Snapshot {
	s, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  b.clusters,
		resourcev3.EndpointType: b.endpoints,
		resourcev3.ListenerType: b.listeners,
		resourcev3.RouteType:    b.routes,
	})
	if err != nil {
		panic(err)
	}
	return s
}

func routes9080NoV1() *routev3.RouteConfiguration {
	rc := routes9080()
	wc := rc.VirtualHosts[0].Routes[1].GetRoute().GetWeightedClusters()
	wc.Clusters = wc.Clusters[1:]
	return rc
}
