// Package xdstest provides test support for the xds package and its
// benchmarks: a small but real generator that builds valid Envoy v3
// resources from a model snapshot, and builders for synthetic models. It is
// a separate package so production code never carries test helpers.
package xdstest

import (
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/translate"
)

// Generator builds, for every service port visible to the proxy
// (model.ServicesFor), an EDS cluster, its ClusterLoadAssignment, one
// listener per port with an HTTP connection manager using RDS, and one
// RouteConfiguration per port with a virtual host per service. It reads
// only Proxy.Namespace, Proxy.Labels (through ServicesFor) and the model,
// and counts its calls so tests can check generation is shared.
type Generator struct {
	// Calls and EndpointCalls count Generate and GenerateEndpoints calls.
	Calls, EndpointCalls atomic.Int64
}

// Generate implements xds.Generator.
func (g *Generator) Generate(in translate.Input) (*translate.Resources, error) {
	g.Calls.Add(1)
	if in.Model == nil || in.Proxy == nil {
		return nil, fmt.Errorf("xdstest: nil model or proxy")
	}
	r := &translate.Resources{
		Listeners: map[string]proto.Message{},
		Routes:    map[string]proto.Message{},
		Clusters:  map[string]proto.Message{},
		Endpoints: map[string]proto.Message{},
	}
	vhosts := map[uint32][]*routev3.VirtualHost{}
	for _, svc := range in.Model.ServicesFor(in.Proxy) {
		for _, p := range svc.Ports {
			name := translate.ClusterName(translate.Outbound, p.Number, "", svc.Hostname)
			r.Clusters[name] = edsCluster(name)
			r.Endpoints[name] = loadAssignment(name, in.Model.EndpointsForPort(svc.Hostname, p.Number))
			vhosts[p.Number] = append(vhosts[p.Number], &routev3.VirtualHost{
				Name:    svc.Hostname + ":" + strconv.Itoa(int(p.Number)),
				Domains: []string{svc.Hostname, svc.Hostname + ":" + strconv.Itoa(int(p.Number))},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
				}},
			})
		}
	}
	for port, vh := range vhosts {
		rn := translate.HTTPRouteName(port)
		sort.Slice(vh, func(i, j int) bool { return vh[i].Name < vh[j].Name })
		r.Routes[rn] = &routev3.RouteConfiguration{Name: rn, VirtualHosts: vh}
		ln := translate.OutboundListenerName("0.0.0.0", port)
		l, err := httpListener(ln, port, rn)
		if err != nil {
			return nil, err
		}
		r.Listeners[ln] = l
	}
	return r, nil
}

// GenerateEndpoints implements xds.EndpointGenerator: only the
// ClusterLoadAssignments, for endpoint-only pushes.
func (g *Generator) GenerateEndpoints(in translate.Input) (map[string]proto.Message, error) {
	g.EndpointCalls.Add(1)
	out := map[string]proto.Message{}
	for _, svc := range in.Model.ServicesFor(in.Proxy) {
		for _, p := range svc.Ports {
			name := translate.ClusterName(translate.Outbound, p.Number, "", svc.Hostname)
			out[name] = loadAssignment(name, in.Model.EndpointsForPort(svc.Hostname, p.Number))
		}
	}
	return out, nil
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(10 * time.Second),
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		},
	}
}

func loadAssignment(name string, eps []*model.Endpoint) *endpointv3.ClusterLoadAssignment {
	lb := make([]*endpointv3.LbEndpoint, 0, len(eps))
	for _, e := range eps {
		hs := corev3.HealthStatus_HEALTHY
		if e.Health == model.Unhealthy {
			hs = corev3.HealthStatus_UNHEALTHY
		}
		lb = append(lb, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(e.Address, e.Port),
			}},
			HealthStatus:        hs,
			LoadBalancingWeight: wrapperspb.UInt32(e.Weight),
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lb}},
	}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func httpListener(name string, port uint32, route string) (*listenerv3.Listener, error) {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: route,
			ConfigSource: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}, nil
}

// Service describes one synthetic ServiceEntry.
type Service struct {
	Name, Namespace string
	Port            uint32
	// Endpoints are the endpoint IPs.
	Endpoints []string
	// ExportTo as in the ServiceEntry ("." keeps it in its namespace).
	ExportTo []string
}

// Model builds a model snapshot from synthetic services (one ServiceEntry
// each, static resolution, HTTP port) through the real model.Build.
func Model(version uint64, svcs []Service) (*model.Snapshot, error) {
	objs := make([]*config.Object, 0, len(svcs))
	for _, s := range svcs {
		se := &networkingv1.ServiceEntry{
			Hosts:      []string{s.Name + "." + s.Namespace + ".svc.cluster.local"},
			Addresses:  nil,
			Ports:      []*networkingv1.ServicePort{{Number: s.Port, Name: "http", Protocol: "HTTP"}},
			Resolution: networkingv1.ServiceEntry_STATIC,
			Location:   networkingv1.ServiceEntry_MESH_INTERNAL,
			ExportTo:   s.ExportTo,
		}
		for _, ip := range s.Endpoints {
			se.Endpoints = append(se.Endpoints, &networkingv1.WorkloadEntry{Address: ip})
		}
		objs = append(objs, &config.Object{
			Kind:       config.KindServiceEntry,
			APIVersion: "networking.istio.io/v1",
			Meta:       config.Meta{Name: s.Name, Namespace: s.Namespace},
			Spec:       se,
		})
	}
	return model.Build(config.NewSnapshot(version, objs, nil), model.BuildOptions{})
}

// Services returns n services spread over ns namespaces with perService
// endpoints each ("svc-<i>" in "ns-<i%ns>", port 8080, endpoints 10.x.y.z).
func Services(n, perService, namespaces int) []Service {
	if namespaces < 1 {
		namespaces = 1
	}
	out := make([]Service, n)
	for i := range out {
		eps := make([]string, perService)
		for j := range eps {
			k := i*perService + j
			eps[j] = fmt.Sprintf("10.%d.%d.%d", (k>>16)&0xff, (k>>8)&0xff, k&0xff)
		}
		out[i] = Service{Name: fmt.Sprintf("svc-%d", i), Namespace: fmt.Sprintf("ns-%d", i%namespaces), Port: 8080, Endpoints: eps}
	}
	return out
}
