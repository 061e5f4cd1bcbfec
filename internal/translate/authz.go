package translate

import (
	"cmp"
	"fmt"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/api/security/v1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// Filter names of the authorization filters (Envoy's).
const (
	rbacHTTPFilter    = "envoy.filters.http.rbac"
	rbacNetworkFilter = "envoy.filters.network.rbac"
	// DryRunAnnotation marks an AuthorizationPolicy whose effect is only
	// logged (Istio's experimental annotation): it becomes shadow rules.
	DryRunAnnotation = "istio.io/dry-run"
)

// AuthorizationPoliciesFor returns the AuthorizationPolicies that apply to
// proxy p, with Istio's scoping: a policy in the root namespace applies to
// every workload (its selector, if any, is matched against workloads in
// all namespaces); a policy in the workload's namespace applies to it when
// it has no selector or its selector's matchLabels are a subset of the
// workload's labels. Policies with targetRef(s) select gateways, never a
// sidecar. The result is ordered by namespace, then name.
func AuthorizationPoliciesFor(m *model.Snapshot, p *model.Proxy) []*config.Object {
	return selectPolicies(m.AuthorizationPolicies(), m.Mesh.RootNamespace, p, func(o *config.Object) (*typev1beta1.WorkloadSelector, bool) {
		ap, ok := o.Spec.(*securityv1.AuthorizationPolicy)
		if !ok {
			return nil, false
		}
		return ap.GetSelector(), ap.GetTargetRef() == nil && len(ap.GetTargetRefs()) == 0
	})
}

// selectPolicies is the scoping AuthorizationPolicy and
// RequestAuthentication share.
func selectPolicies(objs []*config.Object, root string, p *model.Proxy, sel func(*config.Object) (*typev1beta1.WorkloadSelector, bool)) []*config.Object {
	var out []*config.Object
	for _, o := range objs {
		s, ok := sel(o)
		if !ok || (o.Namespace != root && o.Namespace != p.Namespace) {
			continue
		}
		if labels := s.GetMatchLabels(); len(labels) > 0 && !model.LabelsMatch(labels, p.Labels) {
			continue
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *config.Object) int {
		if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// inboundAuthz holds what one sidecar's inbound chains need for
// authentication and authorization, built once per virtualInbound.
type inboundAuthz struct {
	jwt      *hcmv3.HttpFilter // nil: no RequestAuthentication applies
	http     []*hcmv3.HttpFilter
	tcp      []*listenerv3.Filter
	tcpDiags config.Diagnostics // reported once a declared TCP port uses tcp
	tcpUsed  bool
}

// newInboundAuthz selects the policies of g's proxy and translates them
// for HTTP and TCP chains. HTTP-chain warnings go to g.diags right away;
// TCP-chain warnings only when a declared TCP port exists (the passthrough
// chain gets the same filters without repeating them).
func (g *routeGen) newInboundAuthz() *inboundAuthz {
	az := &inboundAuthz{}
	var issuers []string
	az.jwt, issuers = g.jwtAuthnFilter()
	policies := AuthorizationPoliciesFor(g.in.Model, g.proxy)
	if len(policies) == 0 {
		return az
	}
	tcpDiags := newDiagSet()
	b := &authzBuilder{trustDomain: g.in.Model.Mesh.TrustDomain, issuers: issuers}
	for _, o := range policies {
		ap := o.Spec.(*securityv1.AuthorizationPolicy)
		if ap.GetAction() == securityv1.AuthorizationPolicy_CUSTOM {
			g.diags.warnObject(o, "spec.action", "action CUSTOM (provider %q) is not supported: the requests its rules match are denied, as Envoy's ext_authz does when the authorizer cannot be reached",
				ap.GetProvider().GetName())
		}
	}
	az.http = httpFilterProtos(b.filters(policies, false, g.diags))
	az.tcp = netFilters(b.filters(policies, true, tcpDiags))
	az.tcpDiags = tcpDiags.list()
	return az
}

// httpFilters returns fresh copies of the HTTP filters an inbound HCM runs
// before the router: jwt_authn, then the RBAC filters.
func (az *inboundAuthz) httpFilters() []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	if az.jwt != nil {
		out = append(out, proto.Clone(az.jwt).(*hcmv3.HttpFilter))
	}
	for _, f := range az.http {
		out = append(out, proto.Clone(f).(*hcmv3.HttpFilter))
	}
	return out
}

// networkFilters returns fresh copies of the network RBAC filters of a TCP
// chain (declared is false for the passthrough chain).
func (az *inboundAuthz) networkFilters(declared bool) []*listenerv3.Filter {
	if declared {
		az.tcpUsed = true
	}
	out := make([]*listenerv3.Filter, 0, len(az.tcp))
	for _, f := range az.tcp {
		out = append(out, proto.Clone(f).(*listenerv3.Filter))
	}
	return out
}

// report adds the TCP warnings when a declared TCP chain used them.
func (az *inboundAuthz) report(d *diagSet) {
	if az.tcpUsed {
		for _, w := range az.tcpDiags {
			d.add(w)
		}
	}
}

// rbacFilter is one Envoy RBAC filter config before packing.
type rbacFilter struct {
	rules, shadow  *rbacv3.RBAC
	statPrefixBase string
}

// filters translates policies into the RBAC filters of one chain kind, in
// evaluation order: AUDIT (LOG: never denies, so it sees every request),
// CUSTOM and DENY, then ALLOW. Dry-run policies become the shadow rules of
// their action's filter. A filter is emitted only when some policy needs
// it: without ALLOW policies nothing is denied for lack of a match.
func (b *authzBuilder) filters(policies []*config.Object, tcp bool, d *diagSet) []rbacFilter {
	type set struct{ rules, shadow *rbacv3.RBAC }
	sets := map[rbacv3.RBAC_Action]*set{}
	get := func(a rbacv3.RBAC_Action) *set {
		if s := sets[a]; s != nil {
			return s
		}
		s := &set{}
		sets[a] = s
		return s
	}
	for _, o := range policies {
		ap := o.Spec.(*securityv1.AuthorizationPolicy)
		action := rbacv3.RBAC_ALLOW
		switch ap.GetAction() {
		case securityv1.AuthorizationPolicy_DENY, securityv1.AuthorizationPolicy_CUSTOM:
			action = rbacv3.RBAC_DENY
		case securityv1.AuthorizationPolicy_AUDIT:
			action = rbacv3.RBAC_LOG
		}
		s := get(action)
		target := &s.rules
		if o.Annotations[DryRunAnnotation] == "true" {
			target = &s.shadow
		}
		if *target == nil {
			*target = &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
		}
		for name, p := range b.policy(o, ap, action, tcp, d) {
			(*target).Policies[name] = p
		}
	}
	var out []rbacFilter
	for _, a := range []rbacv3.RBAC_Action{rbacv3.RBAC_LOG, rbacv3.RBAC_DENY, rbacv3.RBAC_ALLOW} {
		s := sets[a]
		if s == nil {
			continue
		}
		prefix := map[rbacv3.RBAC_Action]string{rbacv3.RBAC_LOG: "audit", rbacv3.RBAC_DENY: "deny", rbacv3.RBAC_ALLOW: "allow"}[a]
		out = append(out, rbacFilter{rules: s.rules, shadow: s.shadow, statPrefixBase: prefix})
	}
	return out
}

// httpFilterProtos packs RBAC filters as HTTP filters.
func httpFilterProtos(fs []rbacFilter) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	for _, f := range fs {
		cfg := &httprbacv3.RBAC{Rules: f.rules, ShadowRules: f.shadow}
		if f.shadow != nil {
			cfg.ShadowRulesStatPrefix = "istio_dry_run_" + f.statPrefixBase + "_"
		}
		out = append(out, typedHTTPFilter(rbacHTTPFilter, cfg))
	}
	return out
}

// netFilters packs RBAC filters as network filters.
func netFilters(fs []rbacFilter) []*listenerv3.Filter {
	var out []*listenerv3.Filter
	for _, f := range fs {
		cfg := &netrbacv3.RBAC{StatPrefix: "tcp." + f.statPrefixBase + ".", Rules: f.rules, ShadowRules: f.shadow}
		if f.shadow != nil {
			cfg.ShadowRulesStatPrefix = "istio_dry_run_" + f.statPrefixBase + "_"
		}
		out = append(out, &listenerv3.Filter{Name: rbacNetworkFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packTyped(cfg)}})
	}
	return out
}

// policyName is the Envoy policy name of one rule, Istio's convention, so
// operators recognise it in logs and config dumps.
func policyName(o *config.Object, i int) string {
	return fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", o.Namespace, o.Name, i)
}

func (d *diagSet) warnObject(o *config.Object, field, format string, args ...any) {
	d.add(config.Diagnostic{Severity: config.SeverityWarning, Key: o.Key(), Origin: o.Origin, Field: field, Message: fmt.Sprintf(format, args...)})
}
