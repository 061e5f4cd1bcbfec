package translate

import (
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
)

// routeMatch translates one Istio match block (nil: match everything).
// Map-valued matchers are emitted in key order so output is deterministic.
func (g *routeGen) routeMatch(vs *model.VirtualService, m *networkingv1.HTTPMatchRequest, field string, grpc bool) *routev3.RouteMatch {
	out := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return out
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networkingv1.StringMatch_Exact:
		out.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networkingv1.StringMatch_Prefix:
		out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networkingv1.StringMatch_Regex:
		out.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if m.GetIgnoreUriCase() {
		out.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, name := range sortedRouteKeys(m.GetHeaders()) {
		switch strings.ToLower(name) {
		case "uri", "scheme", "method", "authority":
			g.diags.warn(vs, field+".headers["+name+"]", "header name %q is reserved and ignored by Istio; use the %s match field", name, strings.ToLower(name))
			continue
		}
		out.Headers = append(out.Headers, headerMatcher(strings.ToLower(name), m.GetHeaders()[name], false))
	}
	for _, name := range sortedRouteKeys(m.GetWithoutHeaders()) {
		out.Headers = append(out.Headers, headerMatcher(strings.ToLower(name), m.GetWithoutHeaders()[name], true))
	}
	for _, pseudo := range []struct {
		name string
		sm   *networkingv1.StringMatch
	}{{":method", m.GetMethod()}, {":authority", m.GetAuthority()}, {":scheme", m.GetScheme()}} {
		if pseudo.sm != nil {
			out.Headers = append(out.Headers, headerMatcher(pseudo.name, pseudo.sm, false))
		}
	}
	for _, name := range sortedRouteKeys(m.GetQueryParams()) {
		qp := &routev3.QueryParameterMatcher{Name: name}
		if sm := stringMatcher(m.GetQueryParams()[name]); sm != nil {
			qp.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
		} else {
			qp.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		out.QueryParameters = append(out.QueryParameters, qp)
	}
	if grpc && len(out.QueryParameters) > 0 {
		// grpc-go ignores a route with query matchers entirely; gRPC has no query string.
		g.diags.warn(vs, field+".queryParams", "query parameter matches never match proxyless gRPC requests")
	}
	return out
}

// headerMatcher: an empty Istio StringMatch means "header present".
func headerMatcher(name string, sm *networkingv1.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	if s := stringMatcher(sm); s != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// grpcStatusCodes maps gRPC status names (as Istio accepts them) to codes.
var grpcStatusCodes = map[string]uint32{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
	"ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
	"ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
	"DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// fault translates fault injection into the fault filter's per-route
// config; nil when nothing translatable remains.
func (g *routeGen) fault(vs *model.VirtualService, f *networkingv1.HTTPFaultInjection, field string) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil {
		switch t := d.GetHttpDelayType().(type) {
		case *networkingv1.HTTPFaultInjection_Delay_FixedDelay:
			out.Delay = &commonfaultv3.FaultDelay{
				FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(t.FixedDelay.AsDuration())},
				Percentage:         faultPercent(d.GetPercentage(), d.GetPercent()),
			}
		case *networkingv1.HTTPFaultInjection_Delay_ExponentialDelay:
			g.diags.warn(vs, field+".delay.exponentialDelay", "exponential delays are not supported; delay ignored")
		}
	}
	if a := f.GetAbort(); a != nil {
		abort := &faultv3.FaultAbort{Percentage: faultPercent(a.GetPercentage(), 0)}
		switch t := a.GetErrorType().(type) {
		case *networkingv1.HTTPFaultInjection_Abort_HttpStatus:
			abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(t.HttpStatus)}
		case *networkingv1.HTTPFaultInjection_Abort_GrpcStatus:
			code, ok := grpcStatusCodes[strings.ToUpper(t.GrpcStatus)]
			if !ok {
				g.diags.warn(vs, field+".abort.grpcStatus", "unknown gRPC status %q; abort ignored", t.GrpcStatus)
				abort = nil
				break
			}
			abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
		default:
			g.diags.warn(vs, field+".abort", "only httpStatus and grpcStatus aborts are supported; abort ignored")
			abort = nil
		}
		out.Abort = abort
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

// faultPercent: the percentage field wins over the deprecated integer
// percent; neither means every request (Istio's default).
func faultPercent(p *networkingv1.Percent, legacy int32) *typev3.FractionalPercent {
	switch {
	case p != nil:
		return routeFractionalPercent(p.GetValue())
	case legacy > 0:
		return routeFractionalPercent(float64(legacy))
	}
	return routeFractionalPercent(100)
}
