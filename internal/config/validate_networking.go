package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	networkingv1 "istio.io/api/networking/v1"
)

// validProtocols are the ServicePort protocol names Istio accepts (compared
// case-insensitively, as Istio does).
var validProtocols = []string{"HTTP", "HTTP2", "HTTPS", "GRPC", "GRPC-Web", "TCP", "TLS", "Mongo", "Redis", "MySQL", "UDP"}

func validProtocol(p string) bool {
	for _, v := range validProtocols {
		if strings.EqualFold(v, p) {
			return true
		}
	}
	return false
}

func (v *validator) serviceEntry(se *networkingv1.ServiceEntry) {
	if len(se.Hosts) == 0 {
		v.errf("spec.hosts", "at least one host is required")
	}
	for i, h := range se.Hosts {
		v.host(idx("spec.hosts", i), h, false)
	}
	for i, a := range se.Addresses {
		if !ipOrCIDR(a) {
			v.errf(idx("spec.addresses", i), "invalid address %q: want an IP or CIDR", a)
		}
	}
	numbers, names := map[uint32]int{}, map[string]int{}
	for i, p := range se.Ports {
		f := idx("spec.ports", i)
		v.port(f+".number", p.Number, true)
		v.port(f+".targetPort", p.TargetPort, false)
		if j, dup := numbers[p.Number]; dup {
			v.errf(f+".number", "port number %d is already used by spec.ports[%d]", p.Number, j)
		} else {
			numbers[p.Number] = i
		}
		if p.Name == "" {
			v.errf(f+".name", "port name is required")
		} else if j, dup := names[p.Name]; dup {
			v.errf(f+".name", "port name %q is already used by spec.ports[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}
		if p.Protocol != "" && !validProtocol(p.Protocol) {
			v.errf(f+".protocol", "unknown protocol %q; want one of %s", p.Protocol, strings.Join(validProtocols, ", "))
		}
	}
	if se.WorkloadSelector != nil && len(se.Endpoints) > 0 {
		v.errf("spec.workloadSelector", "workloadSelector and endpoints are mutually exclusive")
	}
	if se.WorkloadSelector != nil {
		v.labels("spec.workloadSelector.labels", se.WorkloadSelector.Labels)
	}
	for i, ep := range se.Endpoints {
		f := idx("spec.endpoints", i)
		v.workloadEntry(f, ep, false)
		switch se.Resolution {
		case networkingv1.ServiceEntry_STATIC:
			if ep.Address != "" && !strings.HasPrefix(ep.Address, "unix://") {
				if _, err := netip.ParseAddr(ep.Address); err != nil {
					v.errf(f+".address", "resolution STATIC needs an IP address or unix:// path, got %q", ep.Address)
				}
			}
		case networkingv1.ServiceEntry_DNS, networkingv1.ServiceEntry_DNS_ROUND_ROBIN:
			if strings.HasPrefix(ep.Address, "unix://") {
				v.errf(f+".address", "unix:// endpoints need resolution STATIC")
			}
		}
		for name := range ep.Ports {
			if _, ok := names[name]; !ok && len(se.Ports) > 0 {
				v.errf(mapIdx(f+".ports", name), "port name %q is not declared in spec.ports", name)
			}
		}
	}
	if se.Resolution == networkingv1.ServiceEntry_DNS || se.Resolution == networkingv1.ServiceEntry_DNS_ROUND_ROBIN {
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if strings.HasPrefix(h, "*") {
					v.errf(idx("spec.hosts", i), "wildcard host %q cannot be resolved with DNS when no endpoints are given", h)
				}
			}
		}
	}
	v.exportTo("spec.exportTo", se.ExportTo)
}

// workloadEntry checks a WorkloadEntry spec or a ServiceEntry endpoint. A
// standalone WorkloadEntry needs an address unless it names a network (then
// it is reached through that network's gateway).
func (v *validator) workloadEntry(field string, we *networkingv1.WorkloadEntry, standalone bool) {
	if we == nil {
		return
	}
	if we.Address == "" {
		if we.Network == "" {
			v.errf(field+".address", "address is required unless network is set")
		}
	} else if strings.HasPrefix(we.Address, "unix://") {
		if len(we.Address) == len("unix://") {
			v.errf(field+".address", "unix:// address needs a socket path")
		}
	} else if _, err := netip.ParseAddr(we.Address); err != nil {
		if msg := hostError(we.Address, false); msg != "" || strings.HasPrefix(we.Address, "*") {
			v.errf(field+".address", "invalid address %q: want an IP, a host name or unix:// path", we.Address)
		}
	}
	for name, p := range we.Ports {
		v.port(mapIdx(field+".ports", name), p, true)
	}
	v.labels(field+".labels", we.Labels)
	if standalone && we.ServiceAccount != "" && dns1123Subdomain(we.ServiceAccount) != "" {
		v.errf(field+".serviceAccount", "invalid service account %q", we.ServiceAccount)
	}
}

func (v *validator) workloadGroup(wg *networkingv1.WorkloadGroup) {
	if wg.Template == nil {
		v.errf("spec.template", "template is required")
	} else {
		if wg.Template.Address != "" {
			v.errf("spec.template.address", "address must be empty in a template; each workload registers its own")
		}
		for name, p := range wg.Template.Ports {
			v.port(mapIdx("spec.template.ports", name), p, true)
		}
		v.labels("spec.template.labels", wg.Template.Labels)
	}
	if wg.Metadata != nil {
		v.labels("spec.metadata.labels", wg.Metadata.Labels)
	}
	p := wg.Probe
	if p == nil {
		return
	}
	switch {
	case p.GetHttpGet() != nil:
		v.port("spec.probe.httpGet.port", p.GetHttpGet().Port, true)
	case p.GetTcpSocket() != nil:
		v.port("spec.probe.tcpSocket.port", p.GetTcpSocket().Port, true)
	case p.GetGrpc() != nil:
		v.port("spec.probe.grpc.port", p.GetGrpc().Port, true)
	case p.GetExec() != nil:
		if len(p.GetExec().Command) == 0 {
			v.errf("spec.probe.exec.command", "command is required")
		}
	default:
		v.errf("spec.probe", "exactly one of httpGet, tcpSocket, grpc or exec is required")
	}
	for name, n := range map[string]int32{
		"initialDelaySeconds": p.InitialDelaySeconds, "timeoutSeconds": p.TimeoutSeconds,
		"periodSeconds": p.PeriodSeconds, "successThreshold": p.SuccessThreshold, "failureThreshold": p.FailureThreshold,
	} {
		if n < 0 {
			v.errf("spec.probe."+name, "must not be negative")
		}
	}
}

// gatewayRef checks a gateway reference: "mesh" or "[namespace/]name".
func (v *validator) gatewayRef(field, g string) {
	if g == "mesh" {
		return
	}
	ns, name, ok := strings.Cut(g, "/")
	if !ok {
		ns, name = "", g
	}
	if (ok && dns1123Label(ns) != "") || dns1123Subdomain(name) != "" {
		v.errf(field, `invalid gateway %q: want "mesh" or "[namespace/]name"`, g)
	}
}

func (v *validator) virtualService(vs *networkingv1.VirtualService) {
	if len(vs.Hosts) == 0 {
		v.errf("spec.hosts", "at least one host is required")
	}
	for i, h := range vs.Hosts {
		if ipOrCIDR(h) {
			continue // Istio accepts IPs for hosts of TCP services
		}
		v.host(idx("spec.hosts", i), h, true)
	}
	for i, g := range vs.Gateways {
		v.gatewayRef(idx("spec.gateways", i), g)
	}
	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		v.errf("spec", "at least one of http, tcp or tls routes is required")
	}
	names := map[string]int{}
	for i, r := range vs.Http {
		f := idx("spec.http", i)
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				v.errf(f+".name", "route name %q is already used by spec.http[%d]", r.Name, j)
			}
			names[r.Name] = i
		}
		v.httpRoute(f, r)
	}
	for i, r := range vs.Tls {
		f := idx("spec.tls", i)
		if len(r.Match) == 0 {
			v.errf(f+".match", "at least one match with sniHosts is required")
		}
		for j, m := range r.Match {
			mf := idx(f+".match", j)
			if len(m.SniHosts) == 0 {
				v.errf(mf+".sniHosts", "at least one SNI host is required")
			}
			for k, h := range m.SniHosts {
				v.host(idx(mf+".sniHosts", k), h, true)
			}
			v.l4Match(mf, m.DestinationSubnets, m.Port, m.Gateways)
		}
		v.l4Routes(f+".route", r.Route)
	}
	for i, r := range vs.Tcp {
		f := idx("spec.tcp", i)
		for j, m := range r.Match {
			mf := idx(f+".match", j)
			v.l4Match(mf, m.DestinationSubnets, m.Port, m.Gateways)
			if m.SourceSubnet != "" && !ipOrCIDR(m.SourceSubnet) {
				v.errf(mf+".sourceSubnet", "invalid subnet %q", m.SourceSubnet)
			}
		}
		v.l4Routes(f+".route", r.Route)
	}
	v.exportTo("spec.exportTo", vs.ExportTo)
}

func (v *validator) l4Match(field string, subnets []string, port uint32, gateways []string) {
	for k, s := range subnets {
		if !ipOrCIDR(s) {
			v.errf(idx(field+".destinationSubnets", k), "invalid subnet %q", s)
		}
	}
	v.port(field+".port", port, false)
	for k, g := range gateways {
		v.gatewayRef(idx(field+".gateways", k), g)
	}
}

func (v *validator) destination(field string, d *networkingv1.Destination) {
	if d == nil {
		v.errf(field, "destination is required")
		return
	}
	if d.Host == "" {
		v.errf(field+".host", "destination host is required")
	} else if !ipOrCIDR(d.Host) {
		v.host(field+".host", d.Host, false)
	}
	if d.Subset != "" && dns1123Label(d.Subset) != "" {
		v.errf(field+".subset", "invalid subset name %q", d.Subset)
	}
	if d.Port != nil {
		v.port(field+".port.number", d.Port.Number, true)
	}
}

// weights checks route weights: each 0-100 and, with more than one
// destination, a sum of exactly 100. A single destination may omit its weight.
func (v *validator) weights(field string, ws []int32) {
	sum := 0
	for i, w := range ws {
		if w < 0 || w > 100 {
			v.errf(idx(field, i)+".weight", "weight %d must be between 0 and 100", w)
		}
		sum += int(w)
	}
	if len(ws) > 1 && sum != 100 {
		v.errf(field, "weights add up to %d, they must add up to 100", sum)
	}
}

func (v *validator) l4Routes(field string, rs []*networkingv1.RouteDestination) {
	if len(rs) == 0 {
		v.errf(field, "at least one route destination is required")
	}
	ws := make([]int32, len(rs))
	for i, r := range rs {
		v.destination(idx(field, i)+".destination", r.Destination)
		ws[i] = r.Weight
	}
	v.weights(field, ws)
}

func (v *validator) stringMatch(field string, m *networkingv1.StringMatch) {
	if m == nil {
		return
	}
	if re, ok := m.MatchType.(*networkingv1.StringMatch_Regex); ok {
		v.regex(field+".regex", re.Regex)
	}
}

func (v *validator) httpRoute(f string, r *networkingv1.HTTPRoute) {
	for j, m := range r.Match {
		mf := idx(f+".match", j)
		v.stringMatch(mf+".uri", m.Uri)
		v.stringMatch(mf+".scheme", m.Scheme)
		v.stringMatch(mf+".method", m.Method)
		v.stringMatch(mf+".authority", m.Authority)
		for k, h := range m.Headers {
			v.stringMatch(mapIdx(mf+".headers", k), h)
		}
		for k, h := range m.WithoutHeaders {
			v.stringMatch(mapIdx(mf+".withoutHeaders", k), h)
		}
		for k, q := range m.QueryParams {
			v.stringMatch(mapIdx(mf+".queryParams", k), q)
		}
		v.port(mf+".port", m.Port, false)
		for k, g := range m.Gateways {
			v.gatewayRef(idx(mf+".gateways", k), g)
		}
	}

	actions := 0
	for _, set := range []bool{len(r.Route) > 0, r.Redirect != nil, r.DirectResponse != nil, r.Delegate != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions == 0:
		v.errf(f, "one of route, redirect, directResponse or delegate is required")
	case r.Redirect != nil && actions > 1:
		v.errf(f+".redirect", "redirect cannot be combined with route, directResponse or delegate")
	case r.DirectResponse != nil && actions > 1:
		v.errf(f+".directResponse", "directResponse cannot be combined with route or delegate")
	case r.Delegate != nil && actions > 1:
		v.errf(f+".delegate", "delegate cannot be combined with route")
	}

	ws := make([]int32, len(r.Route))
	for i, d := range r.Route {
		v.destination(idx(f+".route", i)+".destination", d.Destination)
		ws[i] = d.Weight
	}
	v.weights(f+".route", ws)

	if rd := r.Redirect; rd != nil {
		if rd.Uri == "" && rd.Authority == "" && rd.Scheme == "" && rd.RedirectPort == nil && rd.PrefixRewrite == "" {
			v.errf(f+".redirect", "redirect must set at least one of uri, authority, scheme, port or prefixRewrite")
		}
		if rd.RedirectCode != 0 && (rd.RedirectCode < 300 || rd.RedirectCode > 399) {
			v.errf(f+".redirect.redirectCode", "redirect code %d must be a 3xx status", rd.RedirectCode)
		}
		if rd.Uri != "" && rd.PrefixRewrite != "" {
			v.errf(f+".redirect", "uri and prefixRewrite are mutually exclusive")
		}
	}
	if dr := r.DirectResponse; dr != nil && (dr.Status < 200 || dr.Status > 599) {
		v.errf(f+".directResponse.status", "status %d must be between 200 and 599", dr.Status)
	}
	if d := r.Delegate; d != nil {
		if d.Name == "" {
			v.errf(f+".delegate.name", "delegate name is required")
		}
		if d.Namespace != "" && dns1123Label(d.Namespace) != "" {
			v.errf(f+".delegate.namespace", "invalid namespace %q", d.Namespace)
		}
	}
	if rw := r.Rewrite; rw != nil {
		if rw.Uri != "" && rw.UriRegexRewrite != nil {
			v.errf(f+".rewrite", "uri and uriRegexRewrite are mutually exclusive")
		}
		if rw.UriRegexRewrite != nil {
			v.regex(f+".rewrite.uriRegexRewrite.match", rw.UriRegexRewrite.Match)
		}
	}

	v.duration(f+".timeout", r.Timeout, time.Millisecond, true)
	if rt := r.Retries; rt != nil {
		if rt.Attempts < 0 {
			v.errf(f+".retries.attempts", "attempts %d must not be negative", rt.Attempts)
		}
		v.duration(f+".retries.perTryTimeout", rt.PerTryTimeout, time.Millisecond, false)
		v.duration(f+".retries.backoff", rt.Backoff, time.Millisecond, false)
		v.retryOn(f+".retries.retryOn", rt.RetryOn)
	}
	if fl := r.Fault; fl != nil {
		if fl.Delay == nil && fl.Abort == nil {
			v.errf(f+".fault", "fault needs delay or abort")
		}
		if d := fl.Delay; d != nil {
			if d.Percent < 0 || d.Percent > 100 {
				v.errf(f+".fault.delay.percent", "percent %d must be between 0 and 100", d.Percent)
			}
			if d.Percentage != nil {
				v.percent(f+".fault.delay.percentage.value", d.Percentage.Value)
			}
			switch {
			case d.GetFixedDelay() != nil:
				v.duration(f+".fault.delay.fixedDelay", d.GetFixedDelay(), time.Millisecond, false)
			case d.GetExponentialDelay() != nil:
				v.duration(f+".fault.delay.exponentialDelay", d.GetExponentialDelay(), time.Millisecond, false)
			default:
				v.errf(f+".fault.delay", "fixedDelay is required")
			}
		}
		if a := fl.Abort; a != nil {
			if a.Percentage != nil {
				v.percent(f+".fault.abort.percentage.value", a.Percentage.Value)
			}
			switch et := a.ErrorType.(type) {
			case *networkingv1.HTTPFaultInjection_Abort_HttpStatus:
				if et.HttpStatus < 200 || et.HttpStatus > 599 {
					v.errf(f+".fault.abort.httpStatus", "status %d must be between 200 and 599", et.HttpStatus)
				}
			case nil:
				v.errf(f+".fault.abort", "one of httpStatus or grpcStatus is required")
			}
		}
	}
	if r.Mirror != nil {
		v.destination(f+".mirror", r.Mirror)
	}
	if r.MirrorPercent != nil && r.MirrorPercent.Value > 100 {
		v.errf(f+".mirrorPercent", "percentage %d must be between 0 and 100", r.MirrorPercent.Value)
	}
	if r.MirrorPercentage != nil {
		v.percent(f+".mirrorPercentage.value", r.MirrorPercentage.Value)
	}
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		v.errf(f+".mirrors", "mirror and mirrors are mutually exclusive")
	}
	for i, m := range r.Mirrors {
		mf := idx(f+".mirrors", i)
		v.destination(mf+".destination", m.Destination)
		if m.Percentage != nil {
			v.percent(mf+".percentage.value", m.Percentage.Value)
		}
	}
	if c := r.CorsPolicy; c != nil {
		for i, o := range c.AllowOrigins {
			v.stringMatch(idx(f+".corsPolicy.allowOrigins", i), o)
		}
		v.duration(f+".corsPolicy.maxAge", c.MaxAge, time.Second, true)
	}
}

// retryOnPolicies are the Envoy x-envoy-retry-on and x-envoy-retry-grpc-on
// conditions Istio passes through; HTTP status codes are also accepted.
var retryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"envoy-ratelimited": true, "retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true,
	"retriable-headers": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

func (v *validator) retryOn(field, s string) {
	if s == "" {
		return
	}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if retryOnPolicies[p] {
			continue
		}
		if code, err := strconv.Atoi(p); err == nil && code >= 100 && code <= 599 {
			continue
		}
		v.errf(field, "unknown retryOn condition %q", p)
	}
}

func (v *validator) destinationRule(dr *networkingv1.DestinationRule) {
	if dr.Host == "" {
		v.errf("spec.host", "host is required")
	} else {
		v.host("spec.host", dr.Host, false)
	}
	v.trafficPolicy("spec.trafficPolicy", dr.TrafficPolicy)
	seen := map[string]int{}
	for i, s := range dr.Subsets {
		f := idx("spec.subsets", i)
		switch {
		case s.Name == "":
			v.errf(f+".name", "subset name is required")
		case dns1123Label(s.Name) != "":
			v.errf(f+".name", "invalid subset name %q: %s", s.Name, dns1123Label(s.Name))
		}
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			v.errf(f+".name", "subset name %q is already used by spec.subsets[%d]", s.Name, j)
		} else {
			seen[s.Name] = i
		}
		v.labels(f+".labels", s.Labels)
		v.trafficPolicy(f+".trafficPolicy", s.TrafficPolicy)
	}
	if dr.WorkloadSelector != nil {
		v.labels("spec.workloadSelector.matchLabels", dr.WorkloadSelector.MatchLabels)
	}
	v.exportTo("spec.exportTo", dr.ExportTo)
}

func (v *validator) trafficPolicy(f string, tp *networkingv1.TrafficPolicy) {
	if tp == nil {
		return
	}
	v.loadBalancer(f+".loadBalancer", tp.LoadBalancer)
	v.connectionPool(f+".connectionPool", tp.ConnectionPool)
	v.outlierDetection(f+".outlierDetection", tp.OutlierDetection)
	v.clientTLS(f+".tls", tp.Tls)
	seen := map[uint32]int{}
	for i, p := range tp.PortLevelSettings {
		pf := idx(f+".portLevelSettings", i)
		if p.Port == nil {
			v.errf(pf+".port", "port is required")
		} else {
			v.port(pf+".port.number", p.Port.Number, true)
			if j, dup := seen[p.Port.Number]; dup {
				v.errf(pf+".port.number", "port %d already has settings in %s", p.Port.Number, idx(f+".portLevelSettings", j))
			}
			seen[p.Port.Number] = i
		}
		v.loadBalancer(pf+".loadBalancer", p.LoadBalancer)
		v.connectionPool(pf+".connectionPool", p.ConnectionPool)
		v.outlierDetection(pf+".outlierDetection", p.OutlierDetection)
		v.clientTLS(pf+".tls", p.Tls)
	}
	if t := tp.Tunnel; t != nil {
		v.port(f+".tunnel.targetPort", t.TargetPort, true)
		if t.TargetHost == "" {
			v.errf(f+".tunnel.targetHost", "targetHost is required")
		}
	}
}

func (v *validator) loadBalancer(f string, lb *networkingv1.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	ch := lb.GetConsistentHash()
	if ch == nil {
		return
	}
	f += ".consistentHash"
	switch k := ch.HashKey.(type) {
	case nil:
		v.errf(f, "exactly one hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
	case *networkingv1.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		if k.HttpHeaderName == "" {
			v.errf(f+".httpHeaderName", "header name must not be empty")
		}
	case *networkingv1.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		if k.HttpCookie == nil || k.HttpCookie.Name == "" {
			v.errf(f+".httpCookie.name", "cookie name is required")
		} else {
			v.duration(f+".httpCookie.ttl", k.HttpCookie.Ttl, 0, true)
		}
	case *networkingv1.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !k.UseSourceIp {
			v.errf(f+".useSourceIp", "useSourceIp: false selects no hash key")
		}
	case *networkingv1.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		if k.HttpQueryParameterName == "" {
			v.errf(f+".httpQueryParameterName", "parameter name must not be empty")
		}
	}
	if ch.MinimumRingSize != 0 && ch.HashAlgorithm != nil {
		v.errf(f+".minimumRingSize", "minimumRingSize (deprecated) cannot be combined with ringHash or maglev")
	}
}

func (v *validator) connectionPool(f string, cp *networkingv1.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if t := cp.Tcp; t != nil {
		if t.MaxConnections < 0 {
			v.errf(f+".tcp.maxConnections", "must not be negative")
		}
		v.duration(f+".tcp.connectTimeout", t.ConnectTimeout, time.Millisecond, false)
		v.duration(f+".tcp.idleTimeout", t.IdleTimeout, time.Millisecond, true)
		v.duration(f+".tcp.maxConnectionDuration", t.MaxConnectionDuration, time.Millisecond, false)
	}
	if h := cp.Http; h != nil {
		for name, n := range map[string]int32{
			"http1MaxPendingRequests": h.Http1MaxPendingRequests, "http2MaxRequests": h.Http2MaxRequests,
			"maxRequestsPerConnection": h.MaxRequestsPerConnection, "maxRetries": h.MaxRetries,
			"maxConcurrentStreams": h.MaxConcurrentStreams,
		} {
			if n < 0 {
				v.errf(f+".http."+name, "must not be negative")
			}
		}
		v.duration(f+".http.idleTimeout", h.IdleTimeout, time.Millisecond, true)
	}
}

func (v *validator) outlierDetection(f string, od *networkingv1.OutlierDetection) {
	if od == nil {
		return
	}
	if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
		v.errf(f+".maxEjectionPercent", "percentage %d must be between 0 and 100", od.MaxEjectionPercent)
	}
	if od.MinHealthPercent < 0 || od.MinHealthPercent > 100 {
		v.errf(f+".minHealthPercent", "percentage %d must be between 0 and 100", od.MinHealthPercent)
	}
	if od.ConsecutiveErrors < 0 {
		v.errf(f+".consecutiveErrors", "must not be negative")
	}
	v.duration(f+".interval", od.Interval, time.Millisecond, false)
	v.duration(f+".baseEjectionTime", od.BaseEjectionTime, time.Millisecond, false)
}

// clientTLS applies Istio's rules: SIMPLE and MUTUAL either name a
// credentialName or carry file paths, never both; MUTUAL without a
// credentialName needs a client certificate and key; ISTIO_MUTUAL uses the
// mesh identity and takes no certificate fields.
func (v *validator) clientTLS(f string, tls *networkingv1.ClientTLSSettings) {
	if tls == nil {
		return
	}
	files := tls.ClientCertificate != "" || tls.PrivateKey != "" || tls.CaCertificates != ""
	switch tls.Mode {
	case networkingv1.ClientTLSSettings_SIMPLE, networkingv1.ClientTLSSettings_MUTUAL:
		if tls.CredentialName != "" && files {
			v.errf(f+".credentialName", "cannot set clientCertificate, privateKey or caCertificates together with credentialName")
		}
		if tls.Mode == networkingv1.ClientTLSSettings_MUTUAL && tls.CredentialName == "" {
			if tls.ClientCertificate == "" {
				v.errf(f+".clientCertificate", "MUTUAL mode needs clientCertificate (or credentialName)")
			}
			if tls.PrivateKey == "" {
				v.errf(f+".privateKey", "MUTUAL mode needs privateKey (or credentialName)")
			}
		}
	case networkingv1.ClientTLSSettings_ISTIO_MUTUAL:
		if files || tls.CredentialName != "" {
			v.errf(f+".mode", "ISTIO_MUTUAL uses mesh certificates; remove clientCertificate, privateKey, caCertificates and credentialName")
		}
	}
}

func (v *validator) sidecar(sc *networkingv1.Sidecar) {
	if sc.WorkloadSelector != nil {
		v.labels("spec.workloadSelector.labels", sc.WorkloadSelector.Labels)
	}
	for i, in := range sc.Ingress {
		f := idx("spec.ingress", i)
		if in.Port == nil {
			v.errf(f+".port", "port is required")
		} else {
			v.port(f+".port.number", in.Port.Number, true)
			if in.Port.Protocol != "" && !validProtocol(in.Port.Protocol) {
				v.errf(f+".port.protocol", "unknown protocol %q", in.Port.Protocol)
			}
		}
	}
	for i, eg := range sc.Egress {
		f := idx("spec.egress", i)
		if eg.Port != nil {
			v.port(f+".port.number", eg.Port.Number, true)
		}
		if len(eg.Hosts) == 0 {
			v.errf(f+".hosts", "at least one host is required")
		}
		for j, h := range eg.Hosts {
			v.sidecarHost(idx(f+".hosts", j), h)
		}
	}
	if sc.OutboundTrafficPolicy != nil && sc.OutboundTrafficPolicy.EgressProxy != nil {
		v.destination("spec.outboundTrafficPolicy.egressProxy", sc.OutboundTrafficPolicy.EgressProxy)
	}
}

// sidecarHost checks "namespace/host" where namespace is "*", ".", "~" or a
// namespace name and host is "*" or a (wildcard) host name.
func (v *validator) sidecarHost(field, h string) {
	ns, host, ok := strings.Cut(h, "/")
	if !ok {
		v.errf(field, `host %q must be "namespace/host" (e.g. "./*" or "istio-system/*")`, h)
		return
	}
	if ns != "*" && ns != "." && ns != "~" && dns1123Label(ns) != "" {
		v.errf(field, "invalid namespace %q in %q", ns, h)
	}
	if msg := hostError(host, true); msg != "" {
		v.errf(field, "invalid host %q in %q: %s", host, h, msg)
	}
}
