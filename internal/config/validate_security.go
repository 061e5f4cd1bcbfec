package config

import (
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/api/security/v1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// security validates the security.istio.io kinds; other kinds (Gateway,
// Telemetry, WasmPlugin) have only schema and unimplemented-field checks.
func (v *validator) security(spec proto.Message) {
	switch s := spec.(type) {
	case *securityv1.PeerAuthentication:
		v.peerAuthentication(s)
	case *securityv1.AuthorizationPolicy:
		v.authorizationPolicy(s)
	case *securityv1.RequestAuthentication:
		v.requestAuthentication(s)
	}
}

func (v *validator) selector(field string, sel *typev1beta1.WorkloadSelector) {
	if sel != nil {
		v.labels(field+".matchLabels", sel.MatchLabels)
	}
}

func (v *validator) peerAuthentication(pa *securityv1.PeerAuthentication) {
	v.selector("spec.selector", pa.Selector)
	if len(pa.PortLevelMtls) > 0 && (pa.Selector == nil || len(pa.Selector.MatchLabels) == 0) {
		v.errf("spec.portLevelMtls", "portLevelMtls requires a workload selector (ports only mean something for specific workloads)")
	}
	for port := range pa.PortLevelMtls {
		v.port(mapIdx("spec.portLevelMtls", strconv.FormatUint(uint64(port), 10)), port, true)
	}
}

func (v *validator) authorizationPolicy(ap *securityv1.AuthorizationPolicy) {
	v.selector("spec.selector", ap.Selector)
	if ap.Selector != nil && (ap.TargetRef != nil || len(ap.TargetRefs) > 0) {
		v.errf("spec.selector", "selector and targetRef(s) are mutually exclusive")
	}
	provider := ap.GetProvider()
	switch {
	case ap.Action == securityv1.AuthorizationPolicy_CUSTOM && (provider == nil || provider.Name == ""):
		v.errf("spec.provider.name", "action CUSTOM requires a provider name")
	case ap.Action != securityv1.AuthorizationPolicy_CUSTOM && provider != nil:
		v.errf("spec.provider", "provider is only allowed with action CUSTOM")
	}
	if ap.Action == securityv1.AuthorizationPolicy_DENY && len(ap.Rules) == 0 {
		v.warnf("spec.rules", "a DENY policy without rules matches no request and denies nothing")
	}
	for i, r := range ap.Rules {
		f := idx("spec.rules", i)
		if r == nil {
			v.errf(f, "rule must not be empty")
			continue
		}
		for j, from := range r.From {
			ff := idx(f+".from", j) + ".source"
			if from.GetSource() == nil || proto.Size(from.GetSource()) == 0 {
				v.errf(ff, "source must set at least one field")
				continue
			}
			s := from.Source
			for name, vals := range map[string][]string{
				"ipBlocks": s.IpBlocks, "notIpBlocks": s.NotIpBlocks,
				"remoteIpBlocks": s.RemoteIpBlocks, "notRemoteIpBlocks": s.NotRemoteIpBlocks,
			} {
				for k, b := range vals {
					if !ipOrCIDR(b) {
						v.errf(idx(ff+"."+name, k), "invalid IP or CIDR %q", b)
					}
				}
			}
			v.nonEmptyValues(ff, map[string][]string{
				"principals": s.Principals, "notPrincipals": s.NotPrincipals,
				"requestPrincipals": s.RequestPrincipals, "notRequestPrincipals": s.NotRequestPrincipals,
				"namespaces": s.Namespaces, "notNamespaces": s.NotNamespaces,
			})
		}
		for j, to := range r.To {
			tf := idx(f+".to", j) + ".operation"
			if to.GetOperation() == nil || proto.Size(to.GetOperation()) == 0 {
				v.errf(tf, "operation must set at least one field")
				continue
			}
			op := to.Operation
			for name, vals := range map[string][]string{"ports": op.Ports, "notPorts": op.NotPorts} {
				for k, p := range vals {
					if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
						v.errf(idx(tf+"."+name, k), "invalid port %q", p)
					}
				}
			}
			v.nonEmptyValues(tf, map[string][]string{
				"hosts": op.Hosts, "notHosts": op.NotHosts, "methods": op.Methods, "notMethods": op.NotMethods,
				"paths": op.Paths, "notPaths": op.NotPaths,
			})
		}
		for j, c := range r.When {
			cf := idx(f+".when", j)
			if c.Key == "" {
				v.errf(cf+".key", "condition key is required")
			}
			if len(c.Values) == 0 && len(c.NotValues) == 0 {
				v.errf(cf, "condition needs values or notValues")
			}
		}
	}
}

// nonEmptyValues rejects empty strings in match lists: Envoy would treat
// them as "match nothing" and the policy would silently not apply.
func (v *validator) nonEmptyValues(field string, lists map[string][]string) {
	for name, vals := range lists {
		for k, s := range vals {
			if strings.TrimSpace(s) == "" {
				v.errf(idx(field+"."+name, k), "value must not be empty")
			}
		}
	}
}

func (v *validator) requestAuthentication(ra *securityv1.RequestAuthentication) {
	v.selector("spec.selector", ra.Selector)
	issuers := map[string]int{}
	for i, r := range ra.JwtRules {
		f := idx("spec.jwtRules", i)
		if r.Issuer == "" {
			v.errf(f+".issuer", "issuer is required")
		} else if j, dup := issuers[r.Issuer]; dup {
			v.errf(f+".issuer", "issuer %q is already used by spec.jwtRules[%d]", r.Issuer, j)
		} else {
			issuers[r.Issuer] = i
		}
		switch {
		case r.JwksUri != "" && r.Jwks != "":
			v.errf(f+".jwks", "jwksUri and jwks are mutually exclusive")
		case r.JwksUri == "" && r.Jwks == "":
			// Istio would try OpenID discovery from the issuer; Weft does not,
			// so a rule without keys could never verify a token.
			v.errf(f+".jwksUri", "one of jwksUri or jwks is required (Weft does not do OpenID discovery)")
		case r.JwksUri != "":
			if u, err := url.Parse(r.JwksUri); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.errf(f+".jwksUri", "invalid jwksUri %q: want an http(s) URL", r.JwksUri)
			}
		}
		for j, h := range r.FromHeaders {
			if h.Name == "" {
				v.errf(idx(f+".fromHeaders", j)+".name", "header name is required")
			}
		}
		v.duration(f+".timeout", r.Timeout, 0, false)
	}
}
