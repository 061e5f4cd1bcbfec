package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
)

// Validate checks one object on its own (no cross-object references) and
// returns precise diagnostics whose Field is the path inside the object, e.g.
// "spec.http[0].route[1].weight". Errors mean the object must not be served;
// warnings (such as fields Weft does not implement yet) do not.
func Validate(obj *Object) Diagnostics {
	if obj == nil {
		return nil
	}
	v := &validator{obj: obj}
	if obj.Spec == nil {
		v.errf("spec", "spec is missing")
		return v.diags
	}
	info, ok := LookupKind(obj.Kind)
	if !ok {
		v.errf("kind", "unknown kind %q", obj.Kind)
		return v.diags
	}
	if want := info.New().ProtoReflect().Descriptor(); obj.Spec.ProtoReflect().Descriptor() != want {
		v.errf("spec", "spec is a %s, want %s", obj.Spec.ProtoReflect().Descriptor().FullName(), want.FullName())
		return v.diags
	}
	switch spec := obj.Spec.(type) {
	case *networkingv1.ServiceEntry:
		v.serviceEntry(spec)
	case *networkingv1.WorkloadEntry:
		v.workloadEntry("spec", spec, true)
	case *networkingv1.WorkloadGroup:
		v.workloadGroup(spec)
	case *networkingv1.VirtualService:
		v.virtualService(spec)
	case *networkingv1.DestinationRule:
		v.destinationRule(spec)
	case *networkingv1.Sidecar:
		v.sidecar(spec)
	case *networkingv1.Gateway:
		v.gateway(spec)
	default:
		v.security(obj.Spec)
	}
	v.unimplemented(obj.Kind, obj.Spec)
	if why, ok := notEnforcedKinds[obj.Kind]; ok {
		v.warnf("", "%s is not implemented by Weft yet: objects are accepted and stored but not enforced (%s)", obj.Kind, why)
	}
	return v.diags
}

// notEnforcedKinds are kinds whose whole effect is still to come; each object
// gets one warning so nobody believes a policy protects them when it does not.
// Delete an entry the day its enforcement lands.
var notEnforcedKinds = map[Kind]string{
	KindGateway:   "gateway proxies get no configuration yet",
	KindTelemetry: "telemetry settings are not applied yet",
}

// validator accumulates diagnostics for one object.
type validator struct {
	obj   *Object
	diags Diagnostics
}

func (v *validator) add(sev Severity, field, format string, args ...any) {
	v.diags = append(v.diags, Diagnostic{
		Severity: sev, Origin: v.obj.Origin, Key: v.obj.Key(), Field: field,
		Message: fmt.Sprintf(format, args...),
	})
}

func (v *validator) errf(field, format string, args ...any) {
	v.add(SeverityError, field, format, args...)
}

func (v *validator) warnf(field, format string, args ...any) {
	v.add(SeverityWarning, field, format, args...)
}

func idx(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func mapIdx(path, key string) string { return fmt.Sprintf("%s[%s]", path, key) }

// host checks an Istio host name: a DNS name, optionally with a leading
// "*." wildcard, or "*" alone when allowStar.
func (v *validator) host(field, h string, allowStar bool) {
	if msg := hostError(h, allowStar); msg != "" {
		v.errf(field, "invalid host %q: %s", h, msg)
	}
}

func hostError(h string, allowStar bool) string {
	switch {
	case h == "":
		return "must not be empty"
	case h == "*":
		if allowStar {
			return ""
		}
		return `"*" alone is not allowed here`
	case len(h) > 253:
		return "must be no more than 253 characters"
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return `a wildcard is only allowed as the leftmost label ("*.example.com")`
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if msg := dns1123Label(strings.ToLower(label)); msg != "" {
			return fmt.Sprintf("label %q %s", label, msg)
		}
	}
	return ""
}

func (v *validator) port(field string, p uint32, required bool) {
	if p == 0 && !required {
		return
	}
	if p == 0 || p > 65535 {
		v.errf(field, "port %d must be between 1 and 65535", p)
	}
}

// exportTo checks namespace visibility values: ".", "*", "~" or a namespace.
func (v *validator) exportTo(field string, vals []string) {
	seen := map[string]bool{}
	for i, e := range vals {
		f := idx(field, i)
		switch {
		case e == "." || e == "*" || e == "~":
		case dns1123Label(e) != "":
			v.errf(f, "invalid exportTo value %q: want \".\", \"*\", \"~\" or a namespace name", e)
			continue
		}
		if seen[e] {
			v.errf(f, "duplicate exportTo value %q", e)
		}
		seen[e] = true
	}
	if seen["~"] && len(vals) > 1 {
		v.errf(field, `"~" (export to no namespace) cannot be combined with other values`)
	}
}

// duration checks an optional duration: well formed and at least min when
// set. A zero duration is accepted when allowZero (Istio uses 0s to disable).
func (v *validator) duration(field string, d *durationpb.Duration, min time.Duration, allowZero bool) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		v.errf(field, "invalid duration: %v", err)
		return
	}
	got := d.AsDuration()
	if got == 0 && allowZero {
		return
	}
	if got < min {
		v.errf(field, "duration %s must be at least %s", got, min)
	}
}

func (v *validator) percent(field string, p float64) {
	if p < 0 || p > 100 || p != p {
		v.errf(field, "percentage %v must be between 0 and 100", p)
	}
}

func (v *validator) regex(field, re string) {
	if _, err := regexp.Compile(re); err != nil {
		v.errf(field, "invalid RE2 regular expression %q: %v", re, err)
	}
}

// ipOrCIDR reports whether s is an IP address or a CIDR prefix.
func ipOrCIDR(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

func (v *validator) labels(field string, m map[string]string) {
	for k, val := range m {
		if msg := labelKeyError(k); msg != "" {
			v.errf(mapIdx(field, k), "invalid label key %q: %s", k, msg)
		}
		if len(val) > 63 || (val != "" && !labelValueRe.MatchString(val)) {
			v.errf(mapIdx(field, k), "invalid label value %q", val)
		}
	}
}

var (
	labelNameRe  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValueRe = labelNameRe
)

func labelKeyError(k string) string {
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if msg := dns1123Subdomain(prefix); msg != "" {
			return "prefix " + msg
		}
		name = n
	}
	if name == "" || len(name) > 63 || !labelNameRe.MatchString(name) {
		return "name must be 1-63 alphanumerics, '-', '_' or '.'"
	}
	return ""
}
