package dnsproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// HostEntry is what the proxy answers for one name.
type HostEntry struct {
	// IPv4 addresses answered for A queries.
	IPv4 []netip.Addr
	// IPv6 addresses answered for AAAA queries.
	IPv6 []netip.Addr
	// Namespace of the service. Short names ("reviews") are only generated
	// when it is empty or equals the namespace label of a Kubernetes-shaped
	// name ("reviews.default.svc.cluster.local"), so a ServiceEntry in one
	// namespace cannot claim another namespace's short names.
	Namespace string
	// Wildcard marks "*.example.com": the entry answers every name strictly
	// below example.com (any depth), never example.com itself.
	Wildcard bool

	// shortFor is set by BuildTable on the short names it generates: the
	// canonical host they stand for. Reverse (PTR) lookups answer canonical
	// names only.
	shortFor string
}

// NameTable maps a lower-case host name without a trailing dot to its
// entry. A *NameTable handed to [Server.SetTable] or returned by this package
// is treated as immutable: the server compiles its own copy, so callers may
// keep building the next table while the old one serves.
type NameTable struct {
	Hosts map[string]HostEntry
}

// Host is one named entry, the input of [BuildTable].
type Host struct {
	// Name is a fully qualified host name ("reviews.default.svc.cluster.local"
	// or "*.example.com"); case and a trailing dot do not matter.
	Name string
	HostEntry
}

// List returns the table's hosts sorted by name.
func (t *NameTable) List() []Host {
	if t == nil {
		return nil
	}
	out := make([]Host, 0, len(t.Hosts))
	for name, e := range t.Hosts {
		out = append(out, Host{Name: name, HostEntry: e})
	}
	slices.SortFunc(out, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// BuildTable turns the control plane's canonical hosts into the table a proxy
// answers from, adding the names a client in proxyNamespace can use for a
// Kubernetes service "<svc>.<ns>.svc.<domainSuffix>", exactly as Istio's DNS
// proxy does:
//
//   - from any namespace: "<svc>.<ns>" and "<svc>.<ns>.svc";
//   - from the same namespace also the bare "<svc>";
//   - each of those with the first search domain of a client in
//     proxyNamespace appended ("reviews.default.default.svc.cluster.local"),
//     because a resolver with ndots:5 tries that before the real name;
//     answering it saves an upstream round trip (NXDOMAIN) per lookup.
//     Later search domains ("svc.<suffix>", "<suffix>") are not expanded:
//     appended to a short form they either give the canonical name or a
//     name that means something else in Kubernetes DNS ("<x>.svc.<suffix>"
//     is namespace x).
//
// Canonical names always win over generated ones; hosts with the same name
// are merged. An empty domainSuffix disables short names. Entries without any
// address are kept (the server forwards queries for them) so that a table
// round-trips; see [Server.SetTable].
func BuildTable(hosts []Host, proxyNamespace, domainSuffix string) (*NameTable, error) {
	proxyNamespace = strings.ToLower(proxyNamespace)
	domainSuffix = normalize(domainSuffix)
	t := &NameTable{Hosts: make(map[string]HostEntry, len(hosts))}
	var errs []error
	for _, h := range hosts {
		name, err := checkHost(h.Name, h.Wildcard)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e := h.HostEntry
		e.Wildcard = strings.HasPrefix(name, "*.")
		e.Namespace = strings.ToLower(e.Namespace)
		if old, ok := t.Hosts[name]; ok {
			e = merge(old, e)
		}
		t.Hosts[name] = normalizeEntry(e)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("dnsproxy: build table: %w", errors.Join(errs...))
	}
	if domainSuffix == "" {
		return t, nil
	}
	aliases := map[string]HostEntry{}
	for _, h := range t.List() {
		for _, alias := range shortNames(h.Name, h.Namespace, proxyNamespace, domainSuffix) {
			if _, ok := t.Hosts[alias]; ok {
				continue // a canonical host of that name wins
			}
			e := h.HostEntry
			e.shortFor = h.Name
			if old, ok := aliases[alias]; ok {
				e = merge(old, e)
			}
			aliases[alias] = normalizeEntry(e)
		}
	}
	for name, e := range aliases {
		t.Hosts[name] = e
	}
	return t, nil
}

// shortNames lists the generated names for a Kubernetes-shaped host.
func shortNames(name, namespace, proxyNamespace, suffix string) []string {
	rest, ok := strings.CutSuffix(name, ".svc."+suffix)
	if !ok {
		return nil
	}
	svc, ns, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(ns, ".") || svc == "*" {
		return nil
	}
	if namespace != "" && namespace != ns {
		return nil
	}
	forms := []string{svc + "." + ns, svc + "." + ns + ".svc"}
	if ns == proxyNamespace {
		forms = append(forms, svc)
	}
	out := slices.Clone(forms)
	if proxyNamespace == "" {
		return out
	}
	for _, f := range forms {
		if n := f + "." + proxyNamespace + ".svc." + suffix; n != name {
			out = append(out, n)
		}
	}
	return out
}

// checkHost validates and normalizes a host name.
func checkHost(raw string, wildcard bool) (string, error) {
	name := normalize(raw)
	if name == "" {
		return "", fmt.Errorf("host %q: empty name", raw)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host %q: name longer than 253 bytes", raw)
	}
	bare := strings.TrimPrefix(name, "*.")
	if wildcard && bare == name {
		return "", fmt.Errorf("host %q: wildcard host must start with \"*.\"", raw)
	}
	for label := range strings.SplitSeq(bare, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("host %q: bad label %q", raw, label)
		}
		for _, c := range []byte(label) {
			// Letters, digits, '-' and '_' (SRV-style names); no escapes,
			// no '*' except as the whole first label.
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("host %q: bad character %q", raw, c)
			}
		}
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", fmt.Errorf("host %q: not a domain name", raw)
	}
	return name, nil
}

// checkAddr accepts a plain IPv4 or IPv6 address (IPv4-mapped IPv6 counts as
// IPv4) and rejects zones and the unspecified address.
func checkAddr(a netip.Addr) (netip.Addr, error) {
	if !a.IsValid() {
		return a, errors.New("invalid address")
	}
	if a.Zone() != "" {
		return a, errors.New("address with zone")
	}
	a = a.Unmap()
	if a.IsUnspecified() {
		return a, errors.New("unspecified address")
	}
	return a, nil
}

func merge(a, b HostEntry) HostEntry {
	out := a
	out.IPv4 = append(slices.Clone(a.IPv4), b.IPv4...)
	out.IPv6 = append(slices.Clone(a.IPv6), b.IPv6...)
	if out.Namespace == "" {
		out.Namespace = b.Namespace
	}
	return out
}

// normalizeEntry sorts, de-duplicates and re-files addresses (a mapped IPv4
// address placed in IPv6 goes to IPv4).
func normalizeEntry(e HostEntry) HostEntry {
	var v4, v6 []netip.Addr
	for _, a := range slices.Concat(e.IPv4, e.IPv6) {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else if a.IsValid() {
			v6 = append(v6, a)
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	e.IPv4 = slices.Compact(v4)
	e.IPv6 = slices.Compact(v6)
	return e
}

// normalize lower-cases a name and drops the trailing dot.
func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// compiled is the server's private, read-only view of a NameTable.
type compiled struct {
	exact map[string]*HostEntry
	// wild is keyed by the wildcard's parent ("example.com" for
	// "*.example.com").
	wild map[string]*HostEntry
	// ptr maps an address to the canonical (not generated, not wildcard)
	// hosts that have it, sorted, for reverse lookups.
	ptr map[netip.Addr][]string
}

func compile(t *NameTable) *compiled {
	c := &compiled{exact: map[string]*HostEntry{}, wild: map[string]*HostEntry{}, ptr: map[netip.Addr][]string{}}
	if t == nil {
		return c
	}
	for name, e := range t.Hosts {
		shortFor := e.shortFor
		e := normalizeEntry(HostEntry{IPv4: e.IPv4, IPv6: e.IPv6, Namespace: e.Namespace, Wildcard: e.Wildcard})
		if len(e.IPv4) == 0 && len(e.IPv6) == 0 {
			// Nothing to answer with (e.g. a DNS-resolved ServiceEntry
			// without a VIP): let the upstream answer it.
			continue
		}
		name = normalize(name)
		if parent, ok := strings.CutPrefix(name, "*."); ok {
			c.wild[parent] = &e
		} else if e.Wildcard {
			c.wild[name] = &e
		} else {
			c.exact[name] = &e
			if shortFor == "" {
				for _, ip := range slices.Concat(e.IPv4, e.IPv6) {
					c.ptr[ip] = append(c.ptr[ip], name)
				}
			}
		}
	}
	for ip, names := range c.ptr {
		slices.Sort(names)
		c.ptr[ip] = slices.Compact(names)
	}
	return c
}

// lookup finds the entry for a normalized name: an exact name first, then
// the most specific wildcard.
func (c *compiled) lookup(name string) *HostEntry {
	if e, ok := c.exact[name]; ok {
		return e
	}
	if len(c.wild) == 0 {
		return nil
	}
	for i := strings.IndexByte(name, '.'); i >= 0; {
		if e, ok := c.wild[name[i+1:]]; ok {
			return e
		}
		j := strings.IndexByte(name[i+1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil
}
