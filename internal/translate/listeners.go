package translate

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// PassthroughFilterChain names the filter chain that forwards unmatched
// traffic to its original destination.
const PassthroughFilterChain = "PassthroughFilterChain"

// Listeners returns the LDS resources for in.Proxy, keyed by name, and a
// warning for every piece of VirtualService config that could not be
// translated (tcp/tls routes; HTTP routes are reported by Routes).
//
// Sidecars get Istio's shape:
//   - "0.0.0.0_PORT" per outbound HTTP-family port, not bound (the capture
//     listener hands connections over), with an HTTP connection manager
//     fetching route table HTTPRouteName(PORT) over ADS;
//   - "VIP_PORT" per address of every service with a TCP, TLS or other
//     non-HTTP port, forwarding with tcp_proxy (VirtualService tcp routes
//     may split it; tls routes select by SNI); on ports without a declared
//     protocol an http_inspector sends connections detected as HTTP to an
//     HCM with the port's route table, the rest to tcp_proxy;
//   - VirtualOutboundListener on 15001 and VirtualInboundListener on 15006.
//
// Proxyless gRPC clients get one API listener per target name (see
// Routes). Gateways get nothing yet (Routes reports that).
//
// The returned messages are *listenerv3.Listener and must be treated as immutable.
func Listeners(in Input) (map[string]proto.Message, config.Diagnostics) {
	out, diags := outboundListeners(in)
	maps.Copy(out, InboundListeners(in))
	return out, diags
}

// InboundListeners returns the listeners that depend on which workload the
// proxy is (its IPs and WorkloadEntry): the VirtualInboundListener of a
// sidecar, nothing for other proxy types. Listeners is the union of these
// and the outbound ones, which never read in.Proxy.IPs or in.Proxy.Workload.
func InboundListeners(in Input) map[string]proto.Message {
	out, _ := inboundListeners(in)
	return out
}

// inboundListeners is InboundListeners with the warnings of translating the
// policies that apply to the workload (AuthorizationPolicy, RequestAuthentication).
func inboundListeners(in Input) (map[string]proto.Message, config.Diagnostics) {
	out := map[string]proto.Message{}
	if in.Proxy.Type != model.ProxySidecar {
		return out, nil
	}
	// Only the proxy and model are read: no visible services, no VirtualServices.
	g := &routeGen{in: in, proxy: in.Proxy, diags: newDiagSet()}
	out[VirtualInboundListener] = g.virtualInboundListener()
	return out, g.diags.list()
}

// outboundListeners is Listeners without InboundListeners.
func outboundListeners(in Input) (map[string]proto.Message, config.Diagnostics) {
	g := newRouteGen(in, false)
	out := map[string]proto.Message{}
	switch in.Proxy.Type {
	case model.ProxySidecar:
		for _, port := range g.httpPorts() {
			l := outboundHTTPListener(port)
			out[l.Name] = l
		}
		for _, l := range g.outboundTCPListeners() {
			out[l.Name] = l
		}
		out[VirtualOutboundListener] = virtualOutboundListener()
	case model.ProxyGRPC:
		for _, t := range g.grpcTargets() {
			out[t.name] = &listenerv3.Listener{
				Name: t.name,
				ApiListener: &listenerv3.ApiListener{ApiListener: packTyped(
					rdsHCM(t.name, t.name, g.grpcFilters(t.svc)))},
			}
		}
	}
	return out, g.diags.list()
}

func listenerSocketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func outboundHTTPListener(port uint32) *listenerv3.Listener {
	name := OutboundListenerName("0.0.0.0", port)
	return &listenerv3.Listener{
		Name:             name,
		Address:          listenerSocketAddress("0.0.0.0", port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Name:    name,
			Filters: []*listenerv3.Filter{hcmNetworkFilter(rdsHCM("outbound_"+name, HTTPRouteName(port), sidecarHTTPFilters))},
		}},
	}
}

// outboundTCPListeners builds "VIP_PORT" listeners for non-HTTP ports.
// Services without an address cannot be told apart at L4 and get none
// (their traffic falls through to the virtual outbound passthrough); an
// address+port claimed twice stays with the first service by hostname.
func (g *routeGen) outboundTCPListeners() []*listenerv3.Listener {
	var out []*listenerv3.Listener
	claimed := map[string]string{}
	for _, svc := range g.services {
		for _, p := range svc.Ports {
			if p.Protocol.IsHTTP() || p.Protocol == model.ProtocolUDP || isCaptureListenerPort(p.Number) {
				continue
			}
			var chains []*listenerv3.FilterChain
			var dflt *listenerv3.FilterChain
			var listenerFilters []*listenerv3.ListenerFilter
			built := false
			for _, vip := range svc.Addresses {
				name := OutboundListenerName(vip, p.Number)
				if prev, dup := claimed[name]; dup {
					g.diags.warnService(svc, "spec.addresses", "address %s port %d is already used by %s; %s gets no TCP listener there", vip, p.Number, prev, svc.Hostname)
					continue
				}
				claimed[name] = svc.Hostname
				if !built {
					chains, dflt, listenerFilters = g.tcpChains(svc, p)
					built = true
				}
				out = append(out, &listenerv3.Listener{
					Name:               name,
					Address:            listenerSocketAddress(vip, p.Number),
					BindToPort:         wrapperspb.Bool(false),
					TrafficDirection:   corev3.TrafficDirection_OUTBOUND,
					ListenerFilters:    listenerFilters,
					FilterChains:       chains,
					DefaultFilterChain: dflt,
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// tcpChains returns the filter chains of a TCP or TLS service port: SNI
// chains from VirtualService tls routes (TLS ports), and the default chain
// (the first applicable tcp route, else the service's cluster).
func (g *routeGen) tcpChains(svc *model.Service, p model.Port) ([]*listenerv3.FilterChain, *listenerv3.FilterChain, []*listenerv3.ListenerFilter) {
	statPrefix := ClusterName(Outbound, p.Number, "", svc.Hostname)
	defaultTP := &tcpproxyv3.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: ClusterName(Outbound, p.Number, "", svc.Hostname)},
	}
	vs := g.vsIndex.lookup(svc.Hostname)
	var chains []*listenerv3.FilterChain
	var lf []*listenerv3.ListenerFilter
	if sniffed(p.Protocol) {
		// Istio's outbound protocol sniffing: HTTP goes through the
		// port's route table (where the service has its virtual host, so
		// VirtualService http routes apply), everything else falls to the
		// TCP default chain below.
		lf = []*listenerv3.ListenerFilter{httpInspectorFilter()}
		chains = []*listenerv3.FilterChain{{
			Name:             statPrefix + "|http",
			FilterChainMatch: &listenerv3.FilterChainMatch{ApplicationProtocols: plaintextHTTPProtocols},
			Filters:          []*listenerv3.Filter{hcmNetworkFilter(rdsHCM(statPrefix, HTTPRouteName(p.Number), sidecarHTTPFilters))},
		}}
	}
	if p.Protocol.IsTLS() {
		lf = []*listenerv3.ListenerFilter{{
			Name:       wellknown.TlsInspector,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packTyped(&tlsinspectorv3.TlsInspector{})},
		}}
		if vs != nil {
			chains = g.tlsRouteChains(vs, svc, p.Number)
		}
	} else if vs != nil && len(vs.Spec.GetTls()) > 0 {
		g.diags.warn(vs, "spec.tls", "tls routes apply only to TLS and HTTPS ports; port %d of %s is %q", p.Number, svc.Hostname, p.Protocol)
	}
	if vs != nil {
		if tp := g.tcpRouteProxy(vs, svc, p.Number, statPrefix); tp != nil {
			defaultTP = tp
		}
	}
	dflt := &listenerv3.FilterChain{Name: statPrefix, Filters: []*listenerv3.Filter{tcpProxyNetworkFilter(defaultTP)}}
	return chains, dflt, lf
}

// tlsRouteChains turns tls[] routes into SNI-matched chains. Envoy rejects
// two chains with the same server name, so a name claimed by an earlier
// route stays with it (Istio's first-match order) and the later one is reported.
func (g *routeGen) tlsRouteChains(vs *model.VirtualService, svc *model.Service, port uint32) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	usedSNI := map[string]bool{}
	for i, tr := range vs.Spec.GetTls() {
		field := fmt.Sprintf("spec.tls[%d]", i)
		var snis []string
		for j, m := range tr.GetMatch() {
			mf := fmt.Sprintf("%s.match[%d]", field, j)
			if !g.l4MatchApplies(m.GetPort(), m.GetGateways(), m.GetSourceNamespace(), m.GetSourceLabels(), port) {
				continue
			}
			if len(m.GetDestinationSubnets()) > 0 {
				g.diags.warn(vs, mf+".destinationSubnets", "destinationSubnets are not supported; match ignored")
				continue
			}
			for _, sni := range m.GetSniHosts() {
				sni = g.in.Model.Mesh.ResolveHost(sni, vs.Object.Namespace)
				if usedSNI[sni] {
					g.diags.warn(vs, mf+".sniHosts", "SNI host %q is already routed by an earlier tls route; ignored here", sni)
					continue
				}
				usedSNI[sni] = true
				snis = append(snis, sni)
			}
		}
		if len(snis) == 0 {
			continue
		}
		tp := &tcpproxyv3.TcpProxy{StatPrefix: ClusterName(Outbound, port, "", svc.Hostname)}
		g.tcpDestinations(vs, tp, tr.GetRoute(), field, port)
		if tp.ClusterSpecifier == nil {
			continue
		}
		out = append(out, &listenerv3.FilterChain{
			Name:             fmt.Sprintf("%s|tls[%d]", svc.Hostname, i),
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: snis},
			Filters:          []*listenerv3.Filter{tcpProxyNetworkFilter(tp)},
		})
	}
	return out
}

// tcpRouteProxy returns the tcp_proxy of the first tcp[] route that applies
// to this proxy and port, nil if none does.
func (g *routeGen) tcpRouteProxy(vs *model.VirtualService, svc *model.Service, port uint32, statPrefix string) *tcpproxyv3.TcpProxy {
	for i, tr := range vs.Spec.GetTcp() {
		field := fmt.Sprintf("spec.tcp[%d]", i)
		applies := len(tr.GetMatch()) == 0
		for j, m := range tr.GetMatch() {
			if !g.l4MatchApplies(m.GetPort(), m.GetGateways(), m.GetSourceNamespace(), m.GetSourceLabels(), port) {
				continue
			}
			if len(m.GetDestinationSubnets()) > 0 || m.GetSourceSubnet() != "" {
				g.diags.warn(vs, fmt.Sprintf("%s.match[%d]", field, j), "destinationSubnets and sourceSubnet are not supported; match ignored")
				continue
			}
			applies = true
		}
		if !applies {
			continue
		}
		tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix}
		g.tcpDestinations(vs, tp, tr.GetRoute(), field, port)
		if tp.ClusterSpecifier != nil {
			return tp
		}
	}
	return nil
}

func (g *routeGen) l4MatchApplies(matchPort uint32, gateways []string, sourceNS string, sourceLabels map[string]string, port uint32) bool {
	if matchPort != 0 && matchPort != port {
		return false
	}
	if len(gateways) > 0 && !slices.Contains(gateways, "mesh") {
		return false
	}
	if sourceNS != "" && sourceNS != g.proxy.Namespace {
		return false
	}
	return model.LabelsMatch(sourceLabels, g.proxy.Labels)
}

// tcpDestinations sets tp's cluster or weighted clusters from route destinations.
func (g *routeGen) tcpDestinations(vs *model.VirtualService, tp *tcpproxyv3.TcpProxy, dests []*networkingv1.RouteDestination, field string, port uint32) {
	var live []int
	for i, d := range dests {
		if d.GetWeight() > 0 || len(dests) == 1 {
			live = append(live, i)
		}
	}
	if len(live) == 0 && len(dests) > 0 {
		g.diags.warn(vs, field+".route", "all destinations have weight 0; splitting traffic evenly")
		for i := range dests {
			live = append(live, i)
		}
	}
	switch len(live) {
	case 0:
		g.diags.warn(vs, field, "route has no destinations; skipped")
	case 1:
		i := live[0]
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{
			Cluster: g.destinationCluster(vs, dests[i].GetDestination(), fmt.Sprintf("%s.route[%d].destination", field, i), port)}
	default:
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, i := range live {
			w := uint32(dests[i].GetWeight())
			if w == 0 {
				w = 1
			}
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{
				Name:   g.destinationCluster(vs, dests[i].GetDestination(), fmt.Sprintf("%s.route[%d].destination", field, i), port),
				Weight: w,
			})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
}

// plaintextHTTPProtocols are what the http_inspector reports for a
// connection that starts with an HTTP/1.x request line or the HTTP/2 preface.
var plaintextHTTPProtocols = []string{"http/1.0", "http/1.1", "h2c"}

func httpInspectorFilter() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       wellknown.HttpInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packTyped(&httpinspectorv3.HttpInspector{})},
	}
}

func virtualOutboundListener() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             VirtualOutboundListener,
		Address:          listenerSocketAddress("0.0.0.0", OutboundCapturePort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    PassthroughFilterChain,
			Filters: []*listenerv3.Filter{tcpProxyFilter(PassthroughCluster, PassthroughCluster)},
		},
	}
}

// inboundListenerPort is one port of the proxy's own workload.
type inboundListenerPort struct {
	svc         *model.Service
	servicePort model.Port
	targetPort  uint32
}

// inboundPorts finds the ports this proxy's workload serves: endpoints of
// any service (exportTo does not limit who may call us) that are this
// workload or one of its IPs. One chain per target port; when several
// services share a target port, the first by hostname names the chain.
func (g *routeGen) inboundPorts() []inboundListenerPort {
	seen := map[uint32]bool{}
	var out []inboundListenerPort
	ownedEndpoints(g.in.Model, g.proxy, func(svc *model.Service, ep *model.Endpoint) {
		if seen[ep.Port] {
			return
		}
		sp, ok := svc.PortByNumber(ep.ServicePort)
		if !ok {
			return
		}
		seen[ep.Port] = true
		out = append(out, inboundListenerPort{svc: svc, servicePort: sp, targetPort: ep.Port})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].targetPort < out[j].targetPort })
	return out
}

func (g *routeGen) virtualInboundListener() *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             VirtualInboundListener,
		Address:          listenerSocketAddress("0.0.0.0", InboundCapturePort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       wellknown.OriginalDestination,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packTyped(&originaldstv3.OriginalDst{})},
		}},
	}
	// Authorization applies to every inbound chain, the passthrough one too.
	az := g.newInboundAuthz()
	l.DefaultFilterChain = &listenerv3.FilterChain{
		Name:    "virtualInbound-passthrough",
		Filters: append(az.networkFilters(false), tcpProxyFilter(InboundPassthroughCluster, InboundPassthroughCluster)),
	}
	inspectTLS := false
	var sniffedPorts []uint32
	for _, ip := range g.inboundPorts() {
		cluster := ClusterName(Inbound, ip.servicePort.Number, "", ip.svc.Hostname)
		statPrefix := fmt.Sprintf("inbound_0.0.0.0_%d", ip.targetPort)
		httpFilters := func() []*listenerv3.Filter {
			hcm := inlineHCM(statPrefix, inboundRouteConfig(ip.servicePort.Number, cluster), httpFilterSet{})
			hcm.HttpFilters = append(az.httpFilters(), hcm.HttpFilters...)
			return []*listenerv3.Filter{hcmNetworkFilter(hcm)}
		}
		tcpFilters := func() []*listenerv3.Filter {
			return append(az.networkFilters(true), tcpProxyFilter(statPrefix, cluster))
		}
		mode := EffectiveMTLS(g.in.Model, g.proxy, ip.targetPort)
		var chains []*listenerv3.FilterChain
		switch proto := ip.servicePort.Protocol; {
		case sniffed(proto):
			chains = sniffedInboundChains(mode, cluster, ip.targetPort, g.in.Model.Mesh.TrustDomain, httpFilters, tcpFilters)
			sniffedPorts = append(sniffedPorts, ip.targetPort)
			// STRICT needs the ClientHello's ALPN too: mesh clients that
			// announce HTTP (istio-http/1.1, ...) get the HCM chain.
			inspectTLS = inspectTLS || mode != MTLSDisable
		case proto.IsHTTP():
			chains = inboundChains(mode, cluster, ip.targetPort, g.in.Model.Mesh.TrustDomain, httpFilters)
		default:
			chains = inboundChains(mode, cluster, ip.targetPort, g.in.Model.Mesh.TrustDomain, tcpFilters)
		}
		inspectTLS = inspectTLS || mode == MTLSPermissive
		l.FilterChains = append(l.FilterChains, chains...)
	}
	az.report(g.diags)
	if inspectTLS {
		// PERMISSIVE chains are told apart by transport protocol.
		l.ListenerFilters = append(l.ListenerFilters, &listenerv3.ListenerFilter{
			Name:       wellknown.TlsInspector,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packTyped(&tlsinspectorv3.TlsInspector{})},
		})
	}
	if len(sniffedPorts) > 0 {
		// Sniffed ports tell plaintext HTTP apart from other TCP; Envoy
		// runs it after the tls_inspector (it skips TLS connections). It
		// is disabled for other ports, as in Istio: a server-first
		// protocol there must not wait for it.
		hi := httpInspectorFilter()
		hi.FilterDisabled = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{
			NotMatch: destinationPortsPredicate(sniffedPorts)}}
		l.ListenerFilters = append(l.ListenerFilters, hi)
	}
	return l
}

// destinationPortsPredicate matches connections to one of ports.
func destinationPortsPredicate(ports []uint32) *listenerv3.ListenerFilterChainMatchPredicate {
	one := func(p uint32) *listenerv3.ListenerFilterChainMatchPredicate {
		return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: int32(p), End: int32(p) + 1}}}
	}
	if len(ports) == 1 {
		return one(ports[0])
	}
	set := &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{}
	for _, p := range ports {
		set.Rules = append(set.Rules, one(p))
	}
	return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{OrMatch: set}}
}

// inboundRouteConfig routes everything arriving on an inbound HTTP port to
// the local workload, without timeout (the caller's sidecar enforces it).
func inboundRouteConfig(servicePort uint32, cluster string) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	setRouteTimeout(action, nil, false)
	return &routev3.RouteConfiguration{
		Name:             fmt.Sprintf("inbound|%d||", servicePort),
		ValidateClusters: wrapperspb.Bool(false),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    fmt.Sprintf("inbound|http|%d", servicePort),
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "default",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		}},
	}
}
