package translate

import (
	"cmp"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/model"
)

// InboundPassthroughSource is the source address for connections the
// sidecar makes to its own application. The capture rules skip traffic from
// it, so the app's replies are not redirected back into the proxy (Istio's
// 127.0.0.6).
const InboundPassthroughSource = "127.0.0.6"

// InboundPort is one service port served by the proxy's own workload.
type InboundPort struct {
	Service *model.Service
	Port    model.Port
	// EndpointPort is where the application listens (the port inbound
	// traffic arrives on after capture).
	EndpointPort uint32
	// ClusterName is ClusterName(Inbound, Port.Number, "", Service.Hostname).
	ClusterName string
}

// InboundPorts lists the service ports whose endpoints belong to in.Proxy:
// an endpoint is the proxy's when it came from the proxy's WorkloadEntry or
// its address is one of the proxy's IPs. Sorted by host, then port. The
// listener generator uses the same list so inbound filter chains and
// inbound clusters agree.
func InboundPorts(in Input) []InboundPort {
	var out []InboundPort
	var seen map[string]map[uint32]bool // host -> service ports done
	ownedEndpoints(in.Model, in.Proxy, func(svc *model.Service, e *model.Endpoint) {
		if seen[svc.Hostname][e.ServicePort] {
			return
		}
		port, ok := svc.PortByNumber(e.ServicePort)
		if !ok {
			return
		}
		if seen == nil {
			seen = map[string]map[uint32]bool{}
		}
		if seen[svc.Hostname] == nil {
			seen[svc.Hostname] = map[uint32]bool{}
		}
		seen[svc.Hostname][e.ServicePort] = true
		out = append(out, InboundPort{
			Service:      svc,
			Port:         port,
			EndpointPort: e.Port,
			ClusterName:  ClusterName(Inbound, port.Number, "", svc.Hostname),
		})
	})
	slices.SortFunc(out, func(a, b InboundPort) int {
		if c := cmp.Compare(a.Service.Hostname, b.Service.Hostname); c != 0 {
			return c
		}
		return cmp.Compare(a.Port.Number, b.Port.Number)
	})
	return out
}

func ownsEndpoint(p *model.Proxy, e *model.Endpoint) bool {
	if p.Workload.Name != "" && e.Workload == p.Workload {
		return true
	}
	return slices.Contains(p.IPs, e.Address)
}

// buildInboundCluster is a STATIC cluster to the application on loopback.
func buildInboundCluster(ip InboundPort) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 ip.ClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers:      &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{cdsDefaultThresholds()}},
		UpstreamBindConfig:   &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{Address: InboundPassthroughSource, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: ip.ClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: cdsEndpointAddress("127.0.0.1", ip.EndpointPort),
					}},
				}},
			}},
		},
	}
	if opts := upstreamHTTPOptions(ip.Port.Protocol, false, false, nil, nil); opts != nil {
		if a, err := anypb.New(opts); err == nil {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsName: a}
		}
	}
	return c
}

// fixedClusters are the clusters every Envoy-style proxy of the type gets.
func fixedClusters(t model.ProxyType) []*clusterv3.Cluster {
	passthrough := func(name string) *clusterv3.Cluster {
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			CircuitBreakers:      &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{cdsDefaultThresholds()}},
		}
		if opts := upstreamHTTPOptions(model.ProtocolUnsupported, false, false, nil, nil); opts != nil {
			if a, err := anypb.New(opts); err == nil {
				c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsName: a}
			}
		}
		return c
	}
	out := []*clusterv3.Cluster{
		passthrough(PassthroughCluster),
		{
			Name:                 BlackHoleCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
		},
	}
	if t == model.ProxySidecar {
		ib := passthrough(InboundPassthroughCluster)
		ib.UpstreamBindConfig = &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{
			Address: InboundPassthroughSource, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}}
		out = append(out, ib)
	}
	return out
}
