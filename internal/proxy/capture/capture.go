// Package capture owns weft-proxy's transparent mode: the nat-table iptables
// rules that redirect a workload's inbound TCP traffic to the proxy's inbound
// port (15006), its outbound TCP traffic to the outbound port (15001) and,
// optionally, its DNS queries to the proxy's DNS port (15053), plus
// OriginalDst, which recovers where a redirected connection was headed.
//
// It is the Go counterpart of Istio's istio-init / istio-iptables. The rules
// are written with one atomic iptables-restore --noflush transaction that
// touches only this package's chains (ChainPrefix + _INBOUND, _IN_REDIRECT,
// _OUTPUT, _REDIRECT) and the jumps to them from PREROUTING and OUTPUT, so
// other users of the nat table are left alone. The package links only the
// standard library and golang.org/x/sys; it runs the iptables binaries
// (nft or legacy backend) rather than linking a netfilter library.
package capture

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Well-known ports, as in Istio.
const (
	DefaultInboundPort  uint16 = 15006
	DefaultOutboundPort uint16 = 15001
	DefaultDNSPort      uint16 = 15053
	DefaultChainPrefix         = "WEFT"
)

// AlwaysExcludedInboundPorts are never captured inbound: the proxy's own
// health (15020, 15021) and stats (15090) ports must stay reachable directly
// by kubelet-style probers and scrapers. The admin port 15000 listens on
// loopback only and so never crosses PREROUTING.
var AlwaysExcludedInboundPorts = []uint16{15020, 15021, 15090}

// Backend selects which iptables flavour writes the rules.
type Backend string

const (
	// BackendAuto picks the backend the host already uses: the one holding
	// more rules, else the one /usr/sbin/iptables points to (the heuristic
	// Istio and Kubernetes' iptables-wrapper use). Mixing backends works in
	// the kernel but makes the rules invisible to the other tool's users.
	BackendAuto   Backend = ""
	BackendNFT    Backend = "nft"
	BackendLegacy Backend = "legacy"
)

// Config describes what to capture. The zero value of every optional field
// means Istio's default.
type Config struct {
	// ProxyUID is the user the proxy runs as (Istio: 1337). Traffic from
	// this user is never redirected, which is what keeps the proxy's own
	// upstream connections from looping back into it. Required and non-zero:
	// exempting root would exempt most of the host.
	ProxyUID uint32
	// ProxyGID, when non-zero, also exempts traffic from this group.
	ProxyGID uint32

	// InboundPort receives captured inbound connections (default 15006).
	InboundPort uint16
	// OutboundPort receives captured outbound connections (default 15001).
	OutboundPort uint16

	// InboundPorts lists the inbound TCP ports to capture. Empty means
	// Istio's "*": every port except ExcludeInboundPorts.
	InboundPorts []uint16
	// DisableInbound turns inbound capture off entirely (Istio's empty
	// INBOUND_PORTS): no jump from PREROUTING is installed.
	DisableInbound bool
	// ExcludeInboundPorts are never captured inbound, in addition to
	// AlwaysExcludedInboundPorts.
	ExcludeInboundPorts []uint16

	// ExcludeOutboundPorts are TCP destination ports never captured outbound.
	ExcludeOutboundPorts []uint16
	// ExcludeOutboundCIDRs are destinations never captured outbound; they
	// win over IncludeOutboundCIDRs.
	ExcludeOutboundCIDRs []netip.Prefix
	// IncludeOutboundCIDRs limits outbound capture to these destinations.
	// Empty means all destinations.
	IncludeOutboundCIDRs []netip.Prefix

	// RedirectDNS sends UDP and TCP traffic to port 53 (any destination)
	// to DNSPort, except the proxy's own queries.
	RedirectDNS bool
	// DNSPort receives captured DNS traffic (default 15053).
	DNSPort uint16

	// IPv6 also installs the rules with ip6tables. IPv6 CIDRs are only
	// accepted when it is set.
	IPv6 bool

	// ChainPrefix names the chains (default "WEFT": WEFT_INBOUND,
	// WEFT_IN_REDIRECT, WEFT_OUTPUT, WEFT_REDIRECT), so they are easy to
	// recognise in iptables-save and to remove. Upper-case letters, digits
	// and '_', at most 16 characters.
	ChainPrefix string

	// Backend chooses nft or legacy iptables; default auto-detect.
	Backend Backend
}

// chains are the chain names for a prefix, in declaration order.
type chains struct {
	inbound, inRedirect, output, redirect string
}

func chainsFor(prefix string) chains {
	return chains{
		inbound:    prefix + "_INBOUND",
		inRedirect: prefix + "_IN_REDIRECT",
		output:     prefix + "_OUTPUT",
		redirect:   prefix + "_REDIRECT",
	}
}

func (c chains) all() []string { return []string{c.inbound, c.inRedirect, c.output, c.redirect} }

// withDefaults returns a copy with defaults filled in and lists normalised
// (sorted, de-duplicated, CIDRs masked) so the generated rules are stable.
func (cfg Config) withDefaults() Config {
	if cfg.InboundPort == 0 {
		cfg.InboundPort = DefaultInboundPort
	}
	if cfg.OutboundPort == 0 {
		cfg.OutboundPort = DefaultOutboundPort
	}
	if cfg.DNSPort == 0 {
		cfg.DNSPort = DefaultDNSPort
	}
	if cfg.ChainPrefix == "" {
		cfg.ChainPrefix = DefaultChainPrefix
	}
	cfg.InboundPorts = sortedPorts(cfg.InboundPorts)
	cfg.ExcludeInboundPorts = sortedPorts(append(slices.Clone(AlwaysExcludedInboundPorts), cfg.ExcludeInboundPorts...))
	cfg.ExcludeOutboundPorts = sortedPorts(cfg.ExcludeOutboundPorts)
	cfg.ExcludeOutboundCIDRs = sortedPrefixes(cfg.ExcludeOutboundCIDRs)
	cfg.IncludeOutboundCIDRs = sortedPrefixes(cfg.IncludeOutboundCIDRs)
	return cfg
}

func sortedPorts(p []uint16) []uint16 {
	p = slices.Clone(p)
	slices.Sort(p)
	return slices.Compact(p)
}

func sortedPrefixes(in []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if p.IsValid() {
			p = p.Masked()
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// Validate reports every problem with cfg at once. Install calls it.
func (cfg Config) Validate() error {
	c := cfg.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.ProxyUID == 0 {
		bad("ProxyUID is required and must not be 0 (the proxy runs as a dedicated user, Istio uses 1337)")
	}
	named := []struct {
		name string
		port uint16
		used bool
	}{
		{"InboundPort", c.InboundPort, !c.DisableInbound},
		{"OutboundPort", c.OutboundPort, true},
		{"DNSPort", c.DNSPort, c.RedirectDNS},
	}
	for i, a := range named {
		for _, b := range named[i+1:] {
			if a.used && b.used && a.port == b.port {
				bad("%s and %s are both %d", a.name, b.name, a.port)
			}
		}
	}
	for _, list := range []struct {
		name  string
		ports []uint16
	}{{"InboundPorts", cfg.InboundPorts}, {"ExcludeInboundPorts", cfg.ExcludeInboundPorts}, {"ExcludeOutboundPorts", cfg.ExcludeOutboundPorts}} {
		if slices.Contains(list.ports, 0) {
			bad("%s contains port 0", list.name)
		}
	}
	if c.DisableInbound && len(cfg.InboundPorts) > 0 {
		bad("InboundPorts is set but DisableInbound is true")
	}
	for _, p := range c.InboundPorts {
		if slices.Contains(c.ExcludeInboundPorts, p) {
			bad("inbound port %d is both captured (InboundPorts) and excluded", p)
		}
		if p == c.InboundPort || p == c.OutboundPort || (c.RedirectDNS && p == c.DNSPort) {
			bad("InboundPorts contains the proxy's own port %d", p)
		}
	}
	if c.RedirectDNS && slices.Contains(c.ExcludeOutboundPorts, 53) {
		bad("RedirectDNS is set but ExcludeOutboundPorts excludes port 53")
	}
	for _, list := range []struct {
		name     string
		prefixes []netip.Prefix
	}{{"ExcludeOutboundCIDRs", cfg.ExcludeOutboundCIDRs}, {"IncludeOutboundCIDRs", cfg.IncludeOutboundCIDRs}} {
		for _, p := range list.prefixes {
			switch {
			case !p.IsValid():
				bad("%s contains an invalid prefix %q", list.name, p.String())
			case p.Addr().Is4In6():
				bad("%s: %s is an IPv4-mapped IPv6 prefix; write it as IPv4", list.name, p)
			case p.Addr().Is6() && !c.IPv6:
				bad("%s: %s is IPv6 but IPv6 is false", list.name, p)
			}
		}
	}
	if c.IPv6 && len(c.IncludeOutboundCIDRs) > 0 && !hasFamily(c.IncludeOutboundCIDRs, true) {
		// Would silently mean "capture all IPv6" while IPv4 is restricted.
		bad("IncludeOutboundCIDRs has no IPv6 prefix but IPv6 is true; add ::/0 or an IPv6 range")
	}
	if c.IPv6 && len(c.IncludeOutboundCIDRs) > 0 && !hasFamily(c.IncludeOutboundCIDRs, false) {
		bad("IncludeOutboundCIDRs has no IPv4 prefix; add 0.0.0.0/0 or an IPv4 range")
	}
	if !validPrefix(c.ChainPrefix) {
		bad("ChainPrefix %q must be 1-16 characters of A-Z, 0-9 and '_' and start with a letter", c.ChainPrefix)
	}
	switch c.Backend {
	case BackendAuto, BackendNFT, BackendLegacy:
	default:
		bad("Backend %q is not one of \"\", %q, %q", c.Backend, BackendNFT, BackendLegacy)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("capture: invalid config: %w", err)
	}
	return nil
}

func hasFamily(ps []netip.Prefix, v6 bool) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr().Is6() == v6 })
}

// validPrefix keeps chain names within xtables' 28-character limit
// (16 + len("_IN_REDIRECT")) and free of characters iptables-restore would
// split on.
func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > 16 || p[0] < 'A' || p[0] > 'Z' {
		return false
	}
	for _, r := range p {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Rules is a validated, rendered rule set; once returned by Install it is
// also installed.
type Rules struct {
	cfg     Config // with defaults
	backend Backend
	v4, v6  string // iptables-restore input; v6 empty unless cfg.IPv6
}

// Plan validates cfg and renders the rules without touching the kernel:
// for dry runs, docs and the admin endpoint. Its Backend is the configured
// one (possibly auto) until Install resolves it.
func Plan(cfg Config) (*Rules, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	r := &Rules{cfg: c, backend: c.Backend, v4: render(c, false)}
	if c.IPv6 {
		r.v6 = render(c, true)
	}
	return r, nil
}

// Config returns the effective configuration, defaults filled in.
func (r *Rules) Config() Config { return r.cfg }

// Backend reports the iptables backend the rules were written with.
func (r *Rules) Backend() Backend { return r.backend }

// Describe returns the rules as iptables-restore input, IPv4 first, then
// IPv6 when enabled.
func (r *Rules) Describe() string {
	var b strings.Builder
	b.WriteString("# iptables-restore --noflush (IPv4)\n")
	b.WriteString(r.v4)
	if r.v6 != "" {
		b.WriteString("# ip6tables-restore --noflush (IPv6)\n")
		b.WriteString(r.v6)
	}
	return b.String()
}

// Install validates cfg and writes the rules. Concurrent Installs of the
// same ChainPrefix are not coordinated; weft-proxy runs one at start-up. It replaces any rules a
// previous Install (or crashed run) left under the same ChainPrefix, so
// calling it twice never duplicates jumps. Each family is written in one
// atomic transaction; if anything fails, every chain and jump of this
// prefix is removed again, so a failed Install leaves nothing behind.
func Install(ctx context.Context, cfg Config) (*Rules, error) {
	r, err := Plan(cfg)
	if err != nil {
		return nil, err
	}
	b := r.cfg.Backend
	if b == BackendAuto {
		if b, err = detectBackend(ctx); err != nil {
			return nil, fmt.Errorf("capture: install: %w", err)
		}
	}
	r.backend = b
	fams := []family{{v6: false, rules: r.v4}}
	if r.cfg.IPv6 {
		fams = append(fams, family{v6: true, rules: r.v6})
	}
	for _, f := range fams {
		t, err := toolFor(b, f.v6)
		if err == nil {
			err = t.install(ctx, chainsFor(r.cfg.ChainPrefix), f.rules)
		}
		if err != nil {
			rmErr := r.Remove(context.WithoutCancel(ctx))
			return nil, errors.Join(fmt.Errorf("capture: install (%s): %w", t.name(), err), rmErr)
		}
	}
	return r, nil
}

type family struct {
	v6    bool
	rules string
}

// Remove deletes exactly this rule set's chains and the jumps to them,
// for every family it installed. Removing rules that are already gone is
// not an error.
func (r *Rules) Remove(ctx context.Context) error {
	ch := chainsFor(r.cfg.ChainPrefix)
	b := r.backend
	if b == BackendAuto { // a Plan that was never installed
		var err error
		if b, err = detectBackend(ctx); err != nil {
			return fmt.Errorf("capture: remove: %w", err)
		}
	}
	var errs []error
	for _, v6 := range []bool{false, true} {
		if v6 && !r.cfg.IPv6 {
			continue
		}
		t, err := toolFor(b, v6)
		if err == nil {
			err = t.remove(ctx, ch)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("capture: remove (%s): %w", t.name(), err))
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes chains named after prefix ("" means DefaultChainPrefix)
// and the jumps to them, left behind by a run that crashed before Remove.
// It does not know which backend or families that run used, so it looks at
// every installed iptables flavour for IPv4 and IPv6; missing binaries are
// skipped. Call it before Install at start-up.
func Cleanup(ctx context.Context, prefix string) error {
	if prefix == "" {
		prefix = DefaultChainPrefix
	}
	if !validPrefix(prefix) {
		return fmt.Errorf("capture: cleanup: invalid chain prefix %q", prefix)
	}
	ch := chainsFor(prefix)
	var errs []error
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		for _, v6 := range []bool{false, true} {
			t, err := toolFor(b, v6)
			if errors.Is(err, errNoBinary) {
				continue
			}
			if err == nil {
				err = t.remove(ctx, ch)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("capture: cleanup (%s): %w", t.name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
