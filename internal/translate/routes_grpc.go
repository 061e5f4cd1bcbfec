package translate

import (
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/internal/model"
)

// grpcTarget is one name a proxyless gRPC client may dial ("xds:///NAME")
// and the service port behind it. The LDS and RDS resources share the name.
type grpcTarget struct {
	name string
	svc  *model.Service
	port uint32
}

// grpcTargets lists, for every visible service port that may carry gRPC
// (HTTP-family or undeclared protocol), the FQDN target and the short
// forms a client may type, following the same namespace rule as sidecar
// virtual host domains. Wildcard hosts cannot be dialled and are skipped.
func (g *routeGen) grpcTargets() []grpcTarget {
	var out []grpcTarget
	for _, svc := range g.services {
		if len(svc.Hostname) > 0 && svc.Hostname[0] == '*' {
			continue
		}
		for _, p := range svc.Ports {
			if !p.Protocol.IsHTTP() && p.Protocol != model.ProtocolUnsupported {
				continue
			}
			out = append(out, grpcTarget{GRPCListenerName(svc.Hostname, p.Number), svc, p.Number})
			for _, alt := range altHostnames(svc, g.proxy.Namespace, g.in.Model.Mesh.DomainSuffix) {
				out = append(out, grpcTarget{GRPCListenerName(alt, p.Number), svc, p.Number})
			}
		}
	}
	return out
}

// grpcRouteConfig is the route table of one gRPC target: a single virtual
// host (the table serves one listener, so "*" is exact enough) with the
// service's VirtualService routes or the default route.
func (g *routeGen) grpcRouteConfig(t grpcTarget) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: t.name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    t.svc.Hostname + ":" + strconv.FormatUint(uint64(t.port), 10),
			Domains: []string{"*"},
			Routes:  g.grpcRoutes(t),
		}},
	}
}

// grpcFilters is the HTTP filter chain of a gRPC target's API listener:
// router, preceded by fault only when the target's routes inject faults
// (grpc-go NACKs filters it does not implement).
func (g *routeGen) grpcFilters(svc *model.Service) httpFilterSet {
	vs := g.vsIndex.lookup(svc.Hostname)
	if vs == nil {
		return httpFilterSet{}
	}
	for _, hr := range vs.Spec.GetHttp() {
		if hr.GetFault() != nil {
			return httpFilterSet{fault: true}
		}
	}
	return httpFilterSet{}
}

// grpcRoutes translates a service port once for all of its alias targets;
// the alias route tables share the (immutable) route messages.
func (g *routeGen) grpcRoutes(t grpcTarget) []*routev3.Route {
	key := GRPCListenerName(t.svc.Hostname, t.port)
	if r, ok := g.grpcRouteCache[key]; ok {
		return r
	}
	if g.grpcRouteCache == nil {
		g.grpcRouteCache = map[string][]*routev3.Route{}
	}
	r := g.serviceRoutes(t.svc, t.port, true)
	g.grpcRouteCache[key] = r
	return r
}
