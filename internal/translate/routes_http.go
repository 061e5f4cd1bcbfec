package translate

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previousprioritiesv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
)

// Istio's default retry policy, applied when a route sets no retries.
const (
	defaultRetryOn       = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultRetryAttempts = 2
)

// grpcRetryOn are the retry_on values grpc-go honours; it ignores the rest.
var grpcRetryOn = map[string]bool{
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

// httpRoutes translates vs.http[] for svc on the listener port, in order.
// An HTTP route with several match blocks becomes several Envoy routes with
// the same action; match blocks that cannot apply to this proxy and port
// (port, sourceLabels, sourceNamespace, gateways) are dropped, and a route
// all of whose blocks were dropped is dropped.
func (g *routeGen) httpRoutes(vs *model.VirtualService, svc *model.Service, port uint32, grpc bool) []*routev3.Route {
	var out []*routev3.Route
	for i, hr := range vs.Spec.GetHttp() {
		field := fmt.Sprintf("spec.http[%d]", i)
		if hr.GetDelegate() != nil {
			g.diags.warn(vs, field+".delegate", "delegate VirtualServices are not supported; route skipped")
			continue
		}
		var matches []*networkingv1.HTTPMatchRequest
		var matchFields []string
		for j, m := range hr.GetMatch() {
			if g.matchApplies(m, port) {
				matches = append(matches, m)
				matchFields = append(matchFields, fmt.Sprintf("%s.match[%d]", field, j))
			}
		}
		if len(hr.GetMatch()) > 0 && len(matches) == 0 {
			continue
		}
		if len(matches) == 0 {
			matches, matchFields = []*networkingv1.HTTPMatchRequest{nil}, []string{field + ".match"}
		}
		base := g.routeBase(vs, hr, field, port, grpc)
		if base == nil {
			continue
		}
		for j, m := range matches {
			r := base
			if j > 0 {
				r = proto.Clone(base).(*routev3.Route)
			}
			r.Match = g.routeMatch(vs, m, matchFields[j], grpc)
			r.Name = routeName(hr.GetName(), m.GetName())
			if sp := m.GetStatPrefix(); sp != "" {
				r.StatPrefix = sp
			}
			out = append(out, r)
		}
	}
	return out
}

func routeName(httpName, matchName string) string {
	switch {
	case httpName != "" && matchName != "":
		return httpName + "." + matchName
	case matchName != "":
		return matchName
	}
	return httpName
}

// matchApplies reports whether a match block can apply to this proxy on port.
func (g *routeGen) matchApplies(m *networkingv1.HTTPMatchRequest, port uint32) bool {
	if p := m.GetPort(); p != 0 && p != port {
		return false
	}
	if gws := m.GetGateways(); len(gws) > 0 && !slices.Contains(gws, "mesh") {
		return false
	}
	if ns := m.GetSourceNamespace(); ns != "" && ns != g.proxy.Namespace {
		return false
	}
	return model.LabelsMatch(m.GetSourceLabels(), g.proxy.Labels)
}

// routeBase builds everything of an Envoy route except its match and name;
// nil means the HTTP route has no action Weft can express.
func (g *routeGen) routeBase(vs *model.VirtualService, hr *networkingv1.HTTPRoute, field string, port uint32, grpc bool) *routev3.Route {
	r := &routev3.Route{}
	var action *routev3.RouteAction
	var extra routeHeaders
	switch {
	case hr.GetRedirect() != nil:
		r.Action = &routev3.Route_Redirect{Redirect: g.redirect(vs, hr.GetRedirect(), field+".redirect", port)}
	case hr.GetDirectResponse() != nil:
		r.Action = &routev3.Route_DirectResponse{DirectResponse: directResponse(hr.GetDirectResponse())}
	case len(hr.GetRoute()) > 0:
		action, extra = g.routeAction(vs, hr, field, port, grpc)
		r.Action = &routev3.Route_Route{Route: action}
	default:
		g.diags.warn(vs, field, "route has no route, redirect or directResponse; skipped")
		return nil
	}
	if grpc && action == nil {
		g.diags.warn(vs, field, "proxyless gRPC clients fail RPCs on redirect and directResponse routes")
	}
	if action == nil {
		for name, set := range map[string]bool{
			"rewrite": hr.GetRewrite() != nil, "timeout": hr.GetTimeout() != nil, "retries": hr.GetRetries() != nil,
			"mirror": hr.GetMirror() != nil || len(hr.GetMirrors()) > 0,
		} {
			if set {
				g.diags.warn(vs, field+"."+name, "%s applies only to routes with destinations; ignored", name)
			}
		}
	}

	// Header operations.
	if h := hr.GetHeaders(); h != nil {
		if grpc {
			g.diags.warn(vs, field+".headers", "header manipulation is not supported by proxyless gRPC clients; ignored")
		} else {
			var authority string
			r.RequestHeadersToAdd, r.RequestHeadersToRemove, authority = g.headerOps(vs, h.GetRequest(), field+".headers.request", true)
			r.ResponseHeadersToAdd, r.ResponseHeadersToRemove, _ = g.headerOps(vs, h.GetResponse(), field+".headers.response", false)
			if authority != "" {
				if action != nil {
					action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: authority}
				} else {
					g.diags.warn(vs, field+".headers.request", "setting the authority applies only to routes with destinations; ignored")
				}
			}
		}
	}

	r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, extra.reqAdd...)
	r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, extra.reqRm...)
	r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, extra.respAdd...)
	r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, extra.respRm...)

	// Per-filter configs.
	tpfc := map[string]*anypb.Any{}
	if f := hr.GetFault(); f != nil {
		if fc := g.fault(vs, f, field+".fault"); fc != nil {
			tpfc[wellknown.Fault] = packTyped(fc)
		}
	}
	if c := hr.GetCorsPolicy(); c != nil {
		if grpc {
			g.diags.warn(vs, field+".corsPolicy", "CORS does not apply to proxyless gRPC clients; ignored")
		} else {
			tpfc[wellknown.CORS] = packTyped(g.cors(vs, c, field+".corsPolicy"))
		}
	}
	if len(tpfc) > 0 {
		r.TypedPerFilterConfig = tpfc
	}
	return r
}

// routeAction translates destinations, rewrite, timeout, retries and
// mirrors. extra holds a single destination's header operations, which
// belong on the route.
func (g *routeGen) routeAction(vs *model.VirtualService, hr *networkingv1.HTTPRoute, field string, port uint32, grpc bool) (a *routev3.RouteAction, extra routeHeaders) {
	a = &routev3.RouteAction{}
	dests := hr.GetRoute()
	// Istio drops zero-weight destinations when there are several.
	var live []int
	for i, d := range dests {
		if d.GetWeight() > 0 || len(dests) == 1 {
			live = append(live, i)
		}
	}
	if len(live) == 0 {
		g.diags.warn(vs, field+".route", "all destinations have weight 0; splitting traffic evenly")
		for i := range dests {
			live = append(live, i)
		}
	}
	if len(live) == 1 {
		d := dests[live[0]]
		df := fmt.Sprintf("%s.route[%d]", field, live[0])
		cluster := g.destinationCluster(vs, d.GetDestination(), df+".destination", port)
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cluster}
		a.HashPolicy = g.hashPolicy(cluster)
		if h := d.GetHeaders(); h != nil {
			// A single destination's headers are the route's headers: Envoy
			// has no per-cluster list outside weighted clusters.
			g.destinationHeaders(vs, h, df+".headers", grpc, func(reqAdd []*corev3.HeaderValueOption, reqRm []string, respAdd []*corev3.HeaderValueOption, respRm []string, authority string) {
				extra = routeHeaders{reqAdd, reqRm, respAdd, respRm}
				if authority != "" {
					a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: authority}
				}
			})
		}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, i := range live {
			d := dests[i]
			df := fmt.Sprintf("%s.route[%d]", field, i)
			w := uint32(d.GetWeight())
			if w == 0 {
				w = 1
			}
			cw := &routev3.WeightedCluster_ClusterWeight{
				Name:   g.destinationCluster(vs, d.GetDestination(), df+".destination", port),
				Weight: wrapperspb.UInt32(w),
			}
			if h := d.GetHeaders(); h != nil {
				g.destinationHeaders(vs, h, df+".headers", grpc, func(reqAdd []*corev3.HeaderValueOption, reqRm []string, respAdd []*corev3.HeaderValueOption, respRm []string, authority string) {
					cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = reqAdd, reqRm
					cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = respAdd, respRm
					if authority != "" {
						cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: authority}
					}
				})
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}

	if rw := hr.GetRewrite(); rw != nil {
		if grpc {
			g.diags.warn(vs, field+".rewrite", "rewrites are not supported by proxyless gRPC clients; ignored")
		} else {
			switch {
			case rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil:
				g.diags.warn(vs, field+".rewrite.uriRegexRewrite", "uri and uriRegexRewrite are exclusive; uri is used")
				a.PrefixRewrite = rw.GetUri()
			case rw.GetUri() != "":
				a.PrefixRewrite = rw.GetUri()
			case rw.GetUriRegexRewrite() != nil:
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
					Pattern:      &matcherv3.RegexMatcher{Regex: rw.GetUriRegexRewrite().GetMatch()},
					Substitution: rw.GetUriRegexRewrite().GetRewrite(),
				}
			}
			if au := rw.GetAuthority(); au != "" {
				a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: au}
			}
		}
	}

	setRouteTimeout(a, hr.GetTimeout(), grpc)
	a.RetryPolicy = retryPolicy(hr.GetRetries(), grpc, func(format string, args ...any) {
		g.diags.warn(vs, field+".retries", format, args...)
	})

	// Mirrors: the deprecated single mirror first, then mirrors[].
	var mirrors []*routev3.RouteAction_RequestMirrorPolicy
	if m := hr.GetMirror(); m != nil {
		pct := 100.0
		switch {
		case hr.GetMirrorPercentage() != nil:
			pct = hr.GetMirrorPercentage().GetValue()
		case hr.GetMirrorPercent() != nil:
			pct = float64(hr.GetMirrorPercent().GetValue())
		}
		mirrors = append(mirrors, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         g.destinationCluster(vs, m, field+".mirror", port),
			RuntimeFraction: routeRuntimePercent(pct),
		})
	}
	for i, m := range hr.GetMirrors() {
		pct := 100.0
		if m.GetPercentage() != nil {
			pct = m.GetPercentage().GetValue()
		}
		mirrors = append(mirrors, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         g.destinationCluster(vs, m.GetDestination(), fmt.Sprintf("%s.mirrors[%d].destination", field, i), port),
			RuntimeFraction: routeRuntimePercent(pct),
		})
	}
	if len(mirrors) > 0 {
		if grpc {
			g.diags.warn(vs, field+".mirror", "mirroring is not supported by proxyless gRPC clients; ignored")
		} else {
			a.RequestMirrorPolicies = mirrors
		}
	}
	return a, extra
}

// destinationCluster names the cluster of an Istio destination: host resolved
// in the VirtualService's namespace; port from the destination, else the
// service's only port, else the listener port (Istio's rule).
func (g *routeGen) destinationCluster(vs *model.VirtualService, d *networkingv1.Destination, field string, listenerPort uint32) string {
	host := g.in.Model.Mesh.ResolveHost(d.GetHost(), vs.Object.Namespace)
	svc := g.in.Model.Service(host)
	port := listenerPort
	switch {
	case d.GetPort().GetNumber() != 0:
		port = d.GetPort().GetNumber()
	case svc != nil && len(svc.Ports) == 1:
		port = svc.Ports[0].Number
	}
	if svc == nil {
		g.diags.warn(vs, field+".host", "destination host %q is not a known service; requests to it will fail", host)
	} else if _, ok := svc.PortByNumber(port); !ok {
		g.diags.warn(vs, field+".port", "service %q has no port %d; requests to it will fail", host, port)
	}
	if sub := d.GetSubset(); sub != "" {
		if _, ok := g.in.Model.DestinationRuleFor(g.proxy, host).Subset(sub); !ok {
			g.diags.warn(vs, field+".subset", "subset %q of %q is not defined by any DestinationRule visible to this proxy; requests to it will fail", sub, host)
		}
	}
	return ClusterName(Outbound, port, d.GetSubset(), host)
}

// routeHeaders are a single destination's header operations, which Envoy
// expresses at route level.
type routeHeaders struct {
	reqAdd  []*corev3.HeaderValueOption
	reqRm   []string
	respAdd []*corev3.HeaderValueOption
	respRm  []string
}

func (g *routeGen) destinationHeaders(vs *model.VirtualService, h *networkingv1.Headers, field string, grpc bool,
	apply func(reqAdd []*corev3.HeaderValueOption, reqRm []string, respAdd []*corev3.HeaderValueOption, respRm []string, authority string)) {
	if grpc {
		g.diags.warn(vs, field, "header manipulation is not supported by proxyless gRPC clients; ignored")
		return
	}
	reqAdd, reqRm, authority := g.headerOps(vs, h.GetRequest(), field+".request", true)
	respAdd, respRm, _ := g.headerOps(vs, h.GetResponse(), field+".response", false)
	apply(reqAdd, reqRm, respAdd, respRm, authority)
}

// headerOps translates set/add/remove. Envoy refuses to touch pseudo-headers
// and Host through header lists; setting the request authority becomes a
// host rewrite instead (returned as authority), as in Istio.
func (g *routeGen) headerOps(vs *model.VirtualService, ops *networkingv1.Headers_HeaderOperations, field string, request bool) (
	add []*corev3.HeaderValueOption, remove []string, authority string) {
	if ops == nil {
		return nil, nil, ""
	}
	special := func(name string) bool { n := strings.ToLower(name); return n == "host" || strings.HasPrefix(n, ":") }
	for _, op := range []struct {
		kind   string
		m      map[string]string
		action corev3.HeaderValueOption_HeaderAppendAction
	}{
		{"set", ops.GetSet(), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{"add", ops.GetAdd(), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD},
	} {
		for _, name := range sortedRouteKeys(op.m) {
			if special(name) {
				n := strings.ToLower(name)
				if request && (n == "host" || n == ":authority") {
					authority = op.m[name]
					continue
				}
				g.diags.warn(vs, field+"."+op.kind+"["+name+"]", "header %q cannot be modified; ignored", name)
				continue
			}
			add = append(add, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: name, Value: op.m[name]},
				AppendAction: op.action,
			})
		}
	}
	for _, name := range ops.GetRemove() {
		if special(name) {
			g.diags.warn(vs, field+".remove", "header %q cannot be removed; ignored", name)
			continue
		}
		remove = append(remove, name)
	}
	return add, remove, authority
}

func sortedRouteKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// setRouteTimeout applies Istio's timeout: the route's, or none at all
// (Envoy's own default is 15s, which Istio deliberately disables).
func setRouteTimeout(a *routev3.RouteAction, t *durationpb.Duration, grpc bool) {
	d := noTimeout()
	if t != nil {
		d = durationpb.New(t.AsDuration())
	}
	if grpc {
		// grpc-go reads the deadline from max_stream_duration only.
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d}
		return
	}
	a.Timeout = d
	// Let gRPC callers' grpc-timeout header apply, capped by the route timeout.
	a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(d.AsDuration())}
}

func noTimeout() *durationpb.Duration { return durationpb.New(0) }

// retryPolicy converts Istio retries: nil means Istio's default policy,
// attempts 0 disables retries. warn reports what cannot be honoured.
func retryPolicy(r *networkingv1.HTTPRetry, grpc bool, warn func(format string, args ...any)) *routev3.RetryPolicy {
	if r != nil && r.GetAttempts() <= 0 {
		return nil
	}
	p := &routev3.RetryPolicy{
		RetryOn:                       defaultRetryOn,
		NumRetries:                    wrapperspb.UInt32(defaultRetryAttempts),
		RetriableStatusCodes:          []uint32{503},
		HostSelectionRetryMaxAttempts: 5,
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{previousHostsPredicate()},
	}
	if r != nil {
		p.NumRetries = wrapperspb.UInt32(uint32(r.GetAttempts()))
		if on := r.GetRetryOn(); on != "" {
			p.RetryOn, p.RetriableStatusCodes = parseRetryOn(on)
			if len(p.RetriableStatusCodes) > 0 && !strings.Contains(p.RetryOn, "retriable-status-codes") {
				if p.RetryOn != "" {
					p.RetryOn += ","
				}
				p.RetryOn += "retriable-status-codes"
			}
		}
		if t := r.GetPerTryTimeout(); t != nil {
			p.PerTryTimeout = durationpb.New(t.AsDuration())
		}
		if r.GetRetryRemoteLocalities().GetValue() {
			p.RetryPriority = &routev3.RetryPolicy_RetryPriority{
				Name: "envoy.retry_priorities.previous_priorities",
				ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: packTyped(
					&previousprioritiesv3.PreviousPrioritiesConfig{UpdateFrequency: r.GetAttempts() + 1})},
			}
		}
		if ip := r.GetRetryIgnorePreviousHosts(); ip != nil && !ip.GetValue() {
			p.RetryHostPredicate = nil
		}
		if b := r.GetBackoff(); b != nil {
			p.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(b.AsDuration())}
		}
	}
	if !grpc {
		return p
	}
	// grpc-go understands only status-name conditions, attempts and back-off.
	var on []string
	for _, c := range strings.Split(p.RetryOn, ",") {
		if grpcRetryOn[c] {
			on = append(on, c)
		} else if r != nil && r.GetRetryOn() != "" && warn != nil && c != "retriable-status-codes" {
			warn("retry condition %q is not supported by proxyless gRPC clients; ignored", c)
		}
	}
	if r != nil && warn != nil {
		if r.GetPerTryTimeout() != nil {
			warn("perTryTimeout is not supported by proxyless gRPC clients; ignored")
		}
		if r.GetRetryRemoteLocalities().GetValue() {
			warn("retryRemoteLocalities is not supported by proxyless gRPC clients; ignored")
		}
	}
	if len(on) == 0 {
		return nil
	}
	return &routev3.RetryPolicy{RetryOn: strings.Join(on, ","), NumRetries: p.NumRetries, RetryBackOff: p.RetryBackOff}
}

// previousHostsConfig is packed once: every default retry policy carries it.
var previousHostsConfig = packTyped(&previoushostsv3.PreviousHostsPredicate{})

func previousHostsPredicate() *routev3.RetryPolicy_RetryHostPredicate {
	return &routev3.RetryPolicy_RetryHostPredicate{
		Name:       "envoy.retry_host_predicates.previous_hosts",
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: previousHostsConfig},
	}
}

// parseRetryOn splits Istio's retryOn: integers are retriable status codes,
// everything else an Envoy retry condition.
func parseRetryOn(s string) (string, []uint32) {
	var on []string
	var codes []uint32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if c, err := strconv.ParseUint(part, 10, 32); err == nil {
			codes = append(codes, uint32(c))
			continue
		}
		on = append(on, part)
	}
	return strings.Join(on, ","), codes
}

// routeRuntimePercent is a fraction of requests, in Envoy's millionths.
func routeRuntimePercent(pct float64) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{DefaultValue: routeFractionalPercent(pct)}
}

func routeFractionalPercent(pct float64) *typev3.FractionalPercent {
	pct = min(max(pct, 0), 100)
	return &typev3.FractionalPercent{Numerator: uint32(pct*10000 + 0.5), Denominator: typev3.FractionalPercent_MILLION}
}

func (g *routeGen) redirect(vs *model.VirtualService, rd *networkingv1.HTTPRedirect, field string, port uint32) *routev3.RedirectAction {
	out := &routev3.RedirectAction{HostRedirect: rd.GetAuthority()}
	switch {
	case rd.GetUri() != "" && rd.GetPrefixRewrite() != "":
		g.diags.warn(vs, field+".prefixRewrite", "uri and prefixRewrite are exclusive; uri is used")
		out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	case rd.GetUri() != "":
		out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	case rd.GetPrefixRewrite() != "":
		out.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: rd.GetPrefixRewrite()}
	}
	if s := rd.GetScheme(); s != "" {
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: s}
	}
	switch p := rd.GetRedirectPort().(type) {
	case *networkingv1.HTTPRedirect_Port:
		out.PortRedirect = p.Port
	case *networkingv1.HTTPRedirect_DerivePort:
		if p.DerivePort == networkingv1.HTTPRedirect_FROM_REQUEST_PORT {
			// On a sidecar the request port is the listener port.
			out.PortRedirect = port
		}
	}
	switch rd.GetRedirectCode() {
	case 0, 301:
		out.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 302:
		out.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		out.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		out.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		out.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		g.diags.warn(vs, field+".redirectCode", "redirect code %d is not supported (301, 302, 303, 307, 308); 301 is used", rd.GetRedirectCode())
	}
	return out
}

func directResponse(dr *networkingv1.HTTPDirectResponse) *routev3.DirectResponseAction {
	out := &routev3.DirectResponseAction{Status: dr.GetStatus()}
	switch b := dr.GetBody().GetSpecifier().(type) {
	case *networkingv1.HTTPBody_String_:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.String_}}
	case *networkingv1.HTTPBody_Bytes:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.Bytes}}
	}
	return out
}

func (g *routeGen) cors(vs *model.VirtualService, c *networkingv1.CorsPolicy, field string) *corsv3.CorsPolicy {
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(c.GetAllowMethods(), ","),
		AllowHeaders:  strings.Join(c.GetAllowHeaders(), ","),
		ExposeHeaders: strings.Join(c.GetExposeHeaders(), ","),
		FilterEnabled: routeRuntimePercent(100),
	}
	for _, o := range c.GetAllowOrigin() { // deprecated exact origins
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
	}
	for i, o := range c.GetAllowOrigins() {
		if sm := stringMatcher(o); sm != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
		} else {
			g.diags.warn(vs, fmt.Sprintf("%s.allowOrigins[%d]", field, i), "empty origin match; ignored")
		}
	}
	if m := c.GetMaxAge(); m != nil {
		out.MaxAge = strconv.FormatInt(int64(m.AsDuration().Seconds()), 10)
	}
	if ac := c.GetAllowCredentials(); ac != nil {
		out.AllowCredentials = wrapperspb.Bool(ac.GetValue())
	}
	switch c.GetUnmatchedPreflights() {
	case networkingv1.CorsPolicy_FORWARD:
		out.ForwardNotMatchingPreflights = wrapperspb.Bool(true)
	case networkingv1.CorsPolicy_IGNORE:
		out.ForwardNotMatchingPreflights = wrapperspb.Bool(false)
	}
	return out
}

// stringMatcher converts an Istio StringMatch; nil if it sets nothing.
func stringMatcher(m *networkingv1.StringMatch) *matcherv3.StringMatcher {
	switch v := m.GetMatchType().(type) {
	case *networkingv1.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
	case *networkingv1.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networkingv1.StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}}
	}
	return nil
}

// hashPolicy pairs a route with its cluster's consistent-hash load balancer
// (what to hash comes from the DestinationRule). Weighted routes get none:
// Envoy hashes per route, and Istio does the same.
func (g *routeGen) hashPolicy(cluster string) []*routev3.RouteAction_HashPolicy {
	_, port, subset, host, ok := ParseClusterName(cluster)
	if !ok {
		return nil
	}
	return HashPolicyFor(g.in.Model.DestinationRuleFor(g.proxy, host), subset, port)
}
