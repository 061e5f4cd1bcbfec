package translate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
)

// HashPolicyFor returns the route-side hash policy that pairs with a
// consistentHash load balancer on the cluster for (dr, subset, port): the
// cluster gets RING_HASH/MAGLEV from Clusters, the route must say what to
// hash. Returns nil when the effective policy is not consistent hashing (or
// dr is nil). subset "" means the default cluster. Routes pointing at the
// cluster should set RouteAction.hash_policy to the result.
func HashPolicyFor(dr *model.DestinationRule, subset string, port uint32) []*routev3.RouteAction_HashPolicy {
	if dr == nil {
		return nil
	}
	var ss *networkingv1.Subset
	if subset != "" {
		s, ok := dr.Subset(subset)
		if !ok {
			return nil
		}
		ss = s
	}
	ch := MergeTrafficPolicy(dr.Spec.GetTrafficPolicy(), ss, port).GetLoadBalancer().GetConsistentHash()
	if ch == nil {
		return nil
	}
	var hp *routev3.RouteAction_HashPolicy
	switch {
	case ch.GetHttpHeaderName() != "":
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.GetHttpHeaderName()},
		}}
	case ch.GetHttpCookie() != nil:
		c := ch.GetHttpCookie()
		cookie := &routev3.RouteAction_HashPolicy_Cookie{Name: c.GetName(), Path: c.GetPath(), Ttl: c.GetTtl()}
		for _, a := range c.GetAttributes() {
			cookie.Attributes = append(cookie.Attributes, &routev3.RouteAction_HashPolicy_CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
		}
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: cookie}}
	case ch.GetUseSourceIp():
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
	case ch.GetHttpQueryParameterName() != "":
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.GetHttpQueryParameterName()},
		}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}
