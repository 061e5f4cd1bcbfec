package config

import (
	"fmt"
	"sort"
	"strings"

	networkingv1 "istio.io/api/networking/v1"
)

// CrossValidate checks objects against each other over the merged set from
// all sources, in source order, and returns the objects that stay in effect
// plus diagnostics. Rules, in order:
//
//   - The same Key from two sources: the earlier one in objs wins, the later
//     gets an error and is dropped.
//   - ServiceEntries defining the same host with the same visibility
//     (exportTo): the older one (CreationTimestamp, then key) keeps serving,
//     the later gets an error and is dropped.
//   - ServiceEntries giving the same host and port number different
//     protocols where both are visible: the later is dropped with an error.
//   - A VirtualService route naming a subset that no DestinationRule for that
//     host defines gets a warning (Istio's analyzer does the same: that route
//     has no healthy upstream, but the rest of the object is fine).
//
// Short host names resolve as "<host>.<namespace>.svc.cluster.local".
func CrossValidate(objs []*Object) (kept []*Object, diags Diagnostics) {
	errf := func(o *Object, field, format string, args ...any) {
		diags = append(diags, Diagnostic{Severity: SeverityError, Origin: o.Origin, Key: o.Key(), Field: field, Message: fmt.Sprintf(format, args...)})
	}

	// 1. Duplicate keys across sources.
	seen := map[Key]*Object{}
	var unique []*Object
	for _, o := range objs {
		if o == nil {
			continue
		}
		if first, dup := seen[o.Key()]; dup {
			errf(o, "metadata.name", "%s is already defined by %s; this copy is ignored", o.Key(), describeOrigin(first.Origin))
			continue
		}
		seen[o.Key()] = o
		unique = append(unique, o)
	}

	// 2 and 3. ServiceEntry host and port conflicts, oldest first.
	dropped := map[*Object]bool{}
	var entries []*Object
	for _, o := range unique {
		if _, ok := o.Spec.(*networkingv1.ServiceEntry); ok {
			entries = append(entries, o)
		}
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.Before(b.CreationTimestamp)
		}
		return a.Key().Less(b.Key())
	})
	type hostDef struct {
		obj   *Object
		vis   visibility
		ports map[uint32]string // number -> upper-case protocol
	}
	byHost := map[string][]hostDef{}
	for _, o := range entries {
		se := o.Spec.(*networkingv1.ServiceEntry)
		vis := newVisibility(o.Namespace, se.ExportTo)
		ports := map[uint32]string{}
		for _, p := range se.Ports {
			ports[p.Number] = strings.ToUpper(p.Protocol)
		}
	check:
		for i, h := range se.Hosts {
			fq := resolveHost(h, o.Namespace)
			for _, d := range byHost[fq] {
				if d.vis.equal(vis) {
					errf(o, idx("spec.hosts", i), "host %s is already defined by ServiceEntry %s/%s with the same visibility; this ServiceEntry is ignored",
						fq, d.obj.Namespace, d.obj.Name)
					dropped[o] = true
					break check
				}
				if !d.vis.overlaps(vis) {
					continue
				}
				for j, p := range se.Ports {
					if other, ok := d.ports[p.Number]; ok && other != "" && p.Protocol != "" && other != strings.ToUpper(p.Protocol) {
						errf(o, idx("spec.ports", j)+".protocol", "host %s port %d is %s here but %s in ServiceEntry %s/%s; this ServiceEntry is ignored",
							fq, p.Number, p.Protocol, other, d.obj.Namespace, d.obj.Name)
						dropped[o] = true
						break check
					}
				}
			}
		}
		if dropped[o] {
			continue
		}
		for _, h := range se.Hosts {
			fq := resolveHost(h, o.Namespace)
			byHost[fq] = append(byHost[fq], hostDef{obj: o, vis: vis, ports: ports})
		}
	}
	for _, o := range unique {
		if !dropped[o] {
			kept = append(kept, o)
		}
	}

	// 4. Subsets referenced by VirtualServices.
	diags = append(diags, checkSubsets(kept)...)
	return kept, diags
}

func describeOrigin(o Origin) string {
	if s := o.String(); s != "" {
		return s
	}
	return "an earlier source"
}

// resolveHost expands a short name ("reviews") to its cluster-local FQDN.
// Names with a dot, wildcards and IPs are already absolute.
func resolveHost(h, namespace string) string {
	if h == "" || h == "*" || strings.Contains(h, ".") || strings.Contains(h, ":") {
		return strings.ToLower(h)
	}
	return strings.ToLower(h) + "." + namespace + ".svc.cluster.local"
}

// visibility is the set of namespaces an object is exported to; all means "*".
type visibility struct {
	all bool
	ns  map[string]bool
}

// newVisibility interprets exportTo for an object in namespace: empty means
// everywhere (Istio's default), "." the object's own namespace, "~" nowhere.
func newVisibility(namespace string, exportTo []string) visibility {
	if len(exportTo) == 0 {
		return visibility{all: true}
	}
	v := visibility{ns: map[string]bool{}}
	for _, e := range exportTo {
		switch e {
		case "*":
			v.all = true
		case ".":
			v.ns[namespace] = true
		case "~":
		default:
			v.ns[e] = true
		}
	}
	return v
}

func (v visibility) equal(o visibility) bool {
	if v.all || o.all {
		return v.all == o.all
	}
	if len(v.ns) != len(o.ns) {
		return false
	}
	for n := range v.ns {
		if !o.ns[n] {
			return false
		}
	}
	return true
}

func (v visibility) overlaps(o visibility) bool {
	if (v.all && (o.all || len(o.ns) > 0)) || (o.all && len(v.ns) > 0) {
		return true
	}
	for n := range v.ns {
		if o.ns[n] {
			return true
		}
	}
	return false
}

// checkSubsets warns about VirtualService destinations naming a subset that
// no DestinationRule for the destination host defines.
func checkSubsets(objs []*Object) Diagnostics {
	subsets := map[string]map[string]bool{} // resolved DR host -> subset names
	for _, o := range objs {
		dr, ok := o.Spec.(*networkingv1.DestinationRule)
		if !ok {
			continue
		}
		h := resolveHost(dr.Host, o.Namespace)
		if subsets[h] == nil {
			subsets[h] = map[string]bool{}
		}
		for _, s := range dr.Subsets {
			subsets[h][s.Name] = true
		}
	}
	defined := func(host, subset string) bool {
		if subsets[host][subset] {
			return true
		}
		for h, names := range subsets {
			if strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]) && names[subset] {
				return true
			}
		}
		return false
	}
	var diags Diagnostics
	for _, o := range objs {
		vs, ok := o.Spec.(*networkingv1.VirtualService)
		if !ok {
			continue
		}
		check := func(field string, d *networkingv1.Destination) {
			if d == nil || d.Subset == "" {
				return
			}
			host := resolveHost(d.Host, o.Namespace)
			if !defined(host, d.Subset) {
				diags = append(diags, Diagnostic{Severity: SeverityWarning, Origin: o.Origin, Key: o.Key(), Field: field + ".subset",
					Message: fmt.Sprintf("subset %q is not defined by any DestinationRule for host %s; requests routed here fail with no healthy upstream", d.Subset, host)})
			}
		}
		for i, r := range vs.Http {
			for j, d := range r.Route {
				check(idx(idx("spec.http", i)+".route", j)+".destination", d.Destination)
			}
		}
		for i, r := range vs.Tcp {
			for j, d := range r.Route {
				check(idx(idx("spec.tcp", i)+".route", j)+".destination", d.Destination)
			}
		}
		for i, r := range vs.Tls {
			for j, d := range r.Route {
				check(idx(idx("spec.tls", i)+".route", j)+".destination", d.Destination)
			}
		}
	}
	return diags
}
