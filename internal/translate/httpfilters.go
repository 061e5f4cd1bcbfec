package translate

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// HTTP filter chains differ per client: Envoy and weft-proxy get the full
// Istio chain (fault, cors, router) so per-route fault and CORS configs take
// effect; grpc-go NACKs any filter it does not know, so proxyless clients get
// router only, plus fault when some route injects faults.

// httpFilterSet says which optional HTTP filters an HCM carries before the router.
type httpFilterSet struct {
	fault bool
	cors  bool
}

// sidecarHTTPFilters is the outbound sidecar chain, in Istio's order.
var sidecarHTTPFilters = httpFilterSet{fault: true, cors: true}

func (s httpFilterSet) filters() []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	if s.fault {
		out = append(out, typedHTTPFilter(wellknown.Fault, &faultv3.HTTPFault{}))
	}
	if s.cors {
		out = append(out, typedHTTPFilter(wellknown.CORS, &corsv3.Cors{}))
	}
	return append(out, typedHTTPFilter(wellknown.Router, &routerv3.Router{}))
}

func typedHTTPFilter(name string, cfg proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packTyped(cfg)}}
}

// routeADSConfigSource points RDS at the ADS stream the proxy already has open.
func routeADSConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// rdsHCM is an HTTP connection manager whose routes come over ADS by name.
func rdsHCM(statPrefix, routeName string, filters httpFilterSet) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    routeADSConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: filters.filters(),
	}
}

// inlineHCM is an HTTP connection manager with an inline route table (inbound chains).
func inlineHCM(statPrefix string, rc *routev3.RouteConfiguration, filters httpFilterSet) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    filters.filters(),
	}
}

func hcmNetworkFilter(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packTyped(hcm)},
	}
}

// tcpProxyFilter forwards a connection to one cluster.
func tcpProxyFilter(statPrefix, cluster string) *listenerv3.Filter {
	return tcpProxyNetworkFilter(&tcpproxyv3.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})
}

func tcpProxyNetworkFilter(tp *tcpproxyv3.TcpProxy) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name:       wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packTyped(tp)},
	}
}

// packTyped packs m. Marshalling a well-formed generated message cannot fail;
// a failure here is a programming error, so it panics.
func packTyped(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("translate: pack %T: %v", m, err))
	}
	return a
}
