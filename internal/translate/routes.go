package translate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// AllowAnyVirtualHost is the catch-all virtual host of every outbound sidecar
// route table: hosts the mesh does not know go to the original destination
// (Istio's ALLOW_ANY outbound traffic policy).
const AllowAnyVirtualHost = "allow_any"

// Routes returns the RDS resources for in.Proxy, keyed by resource name, and
// a warning for every piece of VirtualService config that could not be
// translated for this proxy (it is reported, never silently dropped).
//
//   - Sidecars get one RouteConfiguration per outbound HTTP or sniffed port
//     (protocol not declared), named
//     HTTPRouteName(port), with one virtual host per visible service and a
//     final "allow_any" virtual host to PassthroughCluster.
//   - Proxyless gRPC clients get one RouteConfiguration per name they may
//     dial ("HOST:PORT", see GRPCListenerName), matching Listeners.
//   - Gateways (ProxyRouter) are not translated yet: empty output plus a warning.
//
// The returned messages are *routev3.RouteConfiguration. They may share
// sub-messages and must be treated as immutable.
func Routes(in Input) (map[string]proto.Message, config.Diagnostics) {
	g := newRouteGen(in, true)
	out := map[string]proto.Message{}
	switch in.Proxy.Type {
	case model.ProxySidecar:
		for _, port := range g.routePorts() {
			rc := g.sidecarRouteConfig(port)
			out[rc.Name] = rc
		}
		g.reportUnroutedHosts()
	case model.ProxyGRPC:
		for _, gl := range g.grpcTargets() {
			out[gl.name] = g.grpcRouteConfig(gl)
		}
	default:
		g.diags.warnProxy(in.Proxy, "routes and listeners for %s proxies are not generated yet", in.Proxy.Type)
	}
	return out, g.diags.list()
}

// routeGen holds what route and listener generation for one proxy share: the
// visible services, an index of VirtualServices by host, and the warnings.
type routeGen struct {
	in       Input
	proxy    *model.Proxy
	services []*model.Service
	vsIndex  vsIndex
	diags    *diagSet

	grpcRouteCache map[string][]*routev3.Route
}

// newRouteGen prepares generation for in.Proxy. Problems that concern a
// whole VirtualService (shadowed hosts) are reported by Routes only, so a
// caller merging the warnings of Listeners and Routes sees each once.
func newRouteGen(in Input, reportVirtualServices bool) *routeGen {
	g := &routeGen{in: in, proxy: in.Proxy, diags: newDiagSet()}
	if in.Proxy.Type == model.ProxyRouter {
		return g
	}
	g.services = in.Model.ServicesFor(in.Proxy)
	indexDiags := g.diags
	if !reportVirtualServices {
		indexDiags = newDiagSet()
	}
	g.vsIndex = newVSIndex(in.Model.VirtualServicesFor(in.Proxy), indexDiags)
	return g
}

// httpPorts returns the outbound HTTP-family port numbers of visible services, sorted.
func (g *routeGen) httpPorts() []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, svc := range g.services {
		for _, p := range svc.Ports {
			if p.Protocol.IsHTTP() && !seen[p.Number] && !isCaptureListenerPort(p.Number) {
				seen[p.Number] = true
				out = append(out, p.Number)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// routePorts returns the ports that get an outbound route table: the HTTP
// ones and those whose protocol is sniffed (undeclared), whose VIP_PORT
// listeners route the connections detected as HTTP by that table.
func (g *routeGen) routePorts() []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, svc := range g.services {
		for _, p := range svc.Ports {
			if routedHTTP(p.Protocol) && !seen[p.Number] && !isCaptureListenerPort(p.Number) {
				seen[p.Number] = true
				out = append(out, p.Number)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// sniffed reports whether connections on a port of protocol p have their
// protocol detected (Istio's protocol sniffing): the port declares none, so
// HTTP is routed by VirtualService http routes and anything else is TCP.
func sniffed(p model.Protocol) bool { return p == model.ProtocolUnsupported }

// routedHTTP reports whether HTTP requests on a port of protocol p are
// routed by the port's route table: declared HTTP, or sniffed.
func routedHTTP(p model.Protocol) bool { return p.IsHTTP() || sniffed(p) }

func isCaptureListenerPort(p uint32) bool { return p == OutboundCapturePort || p == InboundCapturePort }

// sidecarRouteConfig builds the route table of one outbound HTTP port.
func (g *routeGen) sidecarRouteConfig(port uint32) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{
		Name: HTTPRouteName(port),
		// Clusters may arrive after routes (or be missing, for a VirtualService
		// pointing at an unknown host); Envoy must not reject the table for that.
		ValidateClusters: wrapperspb.Bool(false),
	}
	used := map[string]string{"*": AllowAnyVirtualHost}
	for _, svc := range g.services {
		sp, ok := svc.PortByNumber(port)
		if !ok || !routedHTTP(sp.Protocol) {
			continue
		}
		// Envoy rejects a route table in which two virtual hosts share a domain,
		// so a domain already claimed (same VIP on two services, say) stays with
		// the first service in hostname order.
		var domains []string
		for _, d := range vhostDomains(svc, port, g.proxy.Namespace, g.in.Model.Mesh.DomainSuffix) {
			if prev, dup := used[d]; dup {
				g.diags.warnService(svc, "spec", "domain %q on port %d is already served by %s; %s does not get it", d, port, prev, svc.Hostname)
				continue
			}
			used[d] = svc.Hostname
			domains = append(domains, d)
		}
		if len(domains) == 0 {
			continue
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    fmt.Sprintf("%s:%d", svc.Hostname, port),
			Domains: domains,
			Routes:  g.serviceRoutes(svc, port, false),
		})
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
		Name:    AllowAnyVirtualHost,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:  AllowAnyVirtualHost,
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster},
				Timeout:          noTimeout(),
				MaxStreamDuration: &routev3.RouteAction_MaxStreamDuration{
					GrpcTimeoutHeaderMax: noTimeout(),
				},
			}},
		}},
	})
	return rc
}

// serviceRoutes returns the routes of svc on port: its VirtualService's HTTP
// routes when one applies and yields any, else the default route.
func (g *routeGen) serviceRoutes(svc *model.Service, port uint32, grpc bool) []*routev3.Route {
	if vs := g.vsIndex.lookup(svc.Hostname); vs != nil && len(vs.Spec.GetHttp()) > 0 {
		if routes := g.httpRoutes(vs, svc, port, grpc); len(routes) > 0 {
			return routes
		}
	}
	return []*routev3.Route{g.defaultRoute(svc, port, grpc)}
}

// defaultRoute sends everything to the service's default cluster, with
// Istio's defaults: no timeout and the default retry policy.
func (g *routeGen) defaultRoute(svc *model.Service, port uint32, grpc bool) *routev3.Route {
	cluster := ClusterName(Outbound, port, "", svc.Hostname)
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		RetryPolicy:      retryPolicy(nil, grpc, nil),
		HashPolicy:       g.hashPolicy(cluster),
	}
	setRouteTimeout(action, nil, grpc)
	return &routev3.Route{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	}
}

// vhostDomains lists the authorities a request for svc on port may carry:
// the host, its VIPs, and (for cluster-local hosts) the short names the
// proxy's resolver expands, each with and without ":port". Following Istio,
// "name" alone only resolves from the service's own namespace, while
// "name.ns" and "name.ns.svc" resolve from anywhere in the mesh.
func vhostDomains(svc *model.Service, port uint32, proxyNS, domainSuffix string) []string {
	ps := ":" + strconv.FormatUint(uint64(port), 10)
	var out []string
	add := func(h string) { out = append(out, h, h+ps) }
	add(svc.Hostname)
	for _, alt := range altHostnames(svc, proxyNS, domainSuffix) {
		add(alt)
	}
	for _, vip := range svc.Addresses {
		if strings.Contains(vip, "/") {
			continue // a CIDR is not an authority
		}
		if strings.Contains(vip, ":") {
			add("[" + vip + "]")
			continue
		}
		add(vip)
	}
	return out
}

// altHostnames returns the short forms of a cluster-local host
// "name.ns.svc.<suffix>" visible from proxyNS.
func altHostnames(svc *model.Service, proxyNS, domainSuffix string) []string {
	suffix := ".svc." + domainSuffix
	if domainSuffix == "" || !strings.HasSuffix(svc.Hostname, suffix) {
		return nil
	}
	nameNS := strings.TrimSuffix(svc.Hostname, suffix) // "name.ns"
	name, ns, ok := strings.Cut(nameNS, ".")
	if !ok || strings.Contains(ns, ".") || strings.HasPrefix(name, "*") {
		return nil
	}
	var out []string
	if ns == proxyNS {
		out = append(out, name)
	}
	return append(out, nameNS, nameNS+".svc")
}

// vsIndex finds the VirtualService that applies to a host: the one naming
// it exactly, else the one with the longest matching wildcard; among equals
// the oldest (Istio applies one VirtualService per host on sidecars).
type vsIndex struct {
	exact     map[string]*model.VirtualService
	wildcards []vsPattern
}

type vsPattern struct {
	pattern string
	vs      *model.VirtualService
}

func newVSIndex(vss []*model.VirtualService, diags *diagSet) vsIndex {
	idx := vsIndex{exact: map[string]*model.VirtualService{}}
	owner := map[string]*model.VirtualService{}
	for _, vs := range vss { // oldest first
		for i, h := range vs.Hosts {
			if prev, dup := owner[h]; dup {
				if prev != vs {
					diags.warn(vs, fmt.Sprintf("spec.hosts[%d]", i),
						"host %q is already routed by older VirtualService %s/%s; sidecars apply only one VirtualService per host, this one is ignored for it",
						h, prev.Object.Namespace, prev.Object.Name)
				}
				continue
			}
			owner[h] = vs
			if strings.HasPrefix(h, "*") {
				idx.wildcards = append(idx.wildcards, vsPattern{h, vs})
			} else {
				idx.exact[h] = vs
			}
		}
	}
	// Longest pattern first so lookup can stop at the first match.
	sort.SliceStable(idx.wildcards, func(i, j int) bool {
		return len(idx.wildcards[i].pattern) > len(idx.wildcards[j].pattern)
	})
	return idx
}

func (x vsIndex) lookup(host string) *model.VirtualService {
	if vs, ok := x.exact[host]; ok {
		return vs
	}
	for _, w := range x.wildcards {
		if model.HostMatches(w.pattern, host) {
			return w.vs
		}
	}
	return nil
}

// reportUnroutedHosts warns about VirtualService hosts that match no
// service visible to the proxy (sidecars get no virtual host for them), and
// about http or tcp routes for services with no port of that kind.
func (g *routeGen) reportUnroutedHosts() {
	visible := make(map[string]*model.Service, len(g.services))
	for _, svc := range g.services {
		visible[svc.Hostname] = svc
	}
	// matching returns the visible services a VirtualService host selects;
	// only wildcards need a scan.
	matching := func(h string) []*model.Service {
		if !strings.HasPrefix(h, "*") {
			if svc, ok := visible[h]; ok {
				return []*model.Service{svc}
			}
		}
		var out []*model.Service
		for _, svc := range g.services {
			if model.HostMatches(h, svc.Hostname) || model.HostMatches(svc.Hostname, h) {
				out = append(out, svc)
			}
		}
		return out
	}
	for _, vs := range g.in.Model.VirtualServicesFor(g.proxy) {
		if len(vs.Spec.GetHttp()) == 0 && len(vs.Spec.GetTcp()) == 0 && len(vs.Spec.GetTls()) == 0 {
			continue
		}
		var httpPort, l4Port, matched bool
		for i, h := range vs.Hosts {
			svcs := matching(h)
			found := len(svcs) > 0
			for _, svc := range svcs {
				for _, p := range svc.Ports {
					httpPort = httpPort || routedHTTP(p.Protocol)
					l4Port = l4Port || !p.Protocol.IsHTTP()
				}
			}
			matched = matched || found
			if !found && h != "*" {
				g.diags.warn(vs, fmt.Sprintf("spec.hosts[%d]", i),
					"host %q matches no service visible to this proxy (add a ServiceEntry); no route is generated for it", h)
			}
		}
		if matched && len(vs.Spec.GetHttp()) > 0 && !httpPort {
			g.diags.warn(vs, "spec.http", "http routes apply only to HTTP, HTTP2 and GRPC service ports and ports without a declared protocol; the hosts have none")
		}
		if matched && len(vs.Spec.GetTcp()) > 0 && !l4Port {
			g.diags.warn(vs, "spec.tcp", "tcp routes apply only to non-HTTP service ports; the hosts have none")
		}
	}
}

// diagSet collects warnings once each: the same VirtualService is
// translated for every port and every alias, and must not repeat itself.
type diagSet struct {
	seen map[string]bool
	out  config.Diagnostics
}

func newDiagSet() *diagSet { return &diagSet{seen: map[string]bool{}} }

func (d *diagSet) add(diag config.Diagnostic) {
	k := diag.Key.String() + "\x00" + diag.Field + "\x00" + diag.Message
	if d.seen[k] {
		return
	}
	d.seen[k] = true
	d.out = append(d.out, diag)
}

func (d *diagSet) warn(vs *model.VirtualService, field, format string, args ...any) {
	diag := config.Diagnostic{Severity: config.SeverityWarning, Field: field, Message: fmt.Sprintf(format, args...)}
	if vs != nil && vs.Object != nil {
		diag.Key = vs.Object.Key()
		diag.Origin = vs.Object.Origin
	}
	d.add(diag)
}

func (d *diagSet) warnService(svc *model.Service, field, format string, args ...any) {
	d.add(config.Diagnostic{Severity: config.SeverityWarning, Key: svc.Source, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (d *diagSet) warnProxy(p *model.Proxy, format string, args ...any) {
	d.add(config.Diagnostic{Severity: config.SeverityWarning, Field: "proxy " + p.ID, Message: fmt.Sprintf(format, args...)})
}

func (d *diagSet) list() config.Diagnostics {
	if len(d.out) == 0 {
		return nil
	}
	out := append(config.Diagnostics(nil), d.out...)
	out.Sort()
	return out
}
