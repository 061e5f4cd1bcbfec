package capture

import (
	"fmt"
	"net/netip"
	"strings"
)

// render returns the iptables-restore --noflush input for one family. It is
// a pure function of the (defaulted) config so it can be golden-tested.
//
// The rule order mirrors Istio's istio-iptables, and the order matters:
// loopback and owner exemptions must come before the catch-all redirect.
func render(c Config, v6 bool) string {
	ch := chainsFor(c.ChainPrefix)
	loopback, passthrough := "127.0.0.1/32", "127.0.0.6/32"
	if v6 {
		loopback, passthrough = "::1/128", "::6/128"
	}
	var b strings.Builder
	rule := func(format string, a ...any) {
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}

	b.WriteString("*nat\n")
	// In --noflush mode, declaring a chain creates it or flushes it, which
	// is what makes a second Install replace rather than append.
	for _, name := range ch.all() {
		rule(":%s - [0:0]", name)
	}

	// Redirect targets.
	rule("-A %s -p tcp -j REDIRECT --to-ports %d", ch.inRedirect, c.InboundPort)
	rule("-A %s -p tcp -j REDIRECT --to-ports %d", ch.redirect, c.OutboundPort)

	// Inbound: PREROUTING sees traffic arriving from other hosts.
	if !c.DisableInbound {
		if len(c.InboundPorts) == 0 {
			for _, p := range c.ExcludeInboundPorts {
				rule("-A %s -p tcp --dport %d -j RETURN", ch.inbound, p)
			}
			rule("-A %s -p tcp -j %s", ch.inbound, ch.inRedirect)
		} else {
			for _, p := range c.InboundPorts {
				rule("-A %s -p tcp --dport %d -j %s", ch.inbound, p, ch.inRedirect)
			}
		}
	}

	// Outbound: OUTPUT sees traffic generated on this host.
	//
	// The proxy's inbound passthrough connects to the app from 127.0.0.6
	// (::6) over lo; it must reach the app untouched.
	rule("-A %s -s %s -o lo -j RETURN", ch.output, passthrough)
	for _, p := range c.ExcludeOutboundPorts {
		rule("-A %s -p tcp --dport %d -j RETURN", ch.output, p)
	}
	if c.RedirectDNS {
		// DNS before the loopback rules below: a resolver on 127.0.0.53 is
		// still captured. The proxy's own upstream queries are exempt.
		for _, proto := range []string{"udp", "tcp"} {
			rule("-A %s -p %s --dport 53 -m owner --uid-owner %d -j RETURN", ch.output, proto, c.ProxyUID)
			if c.ProxyGID != 0 {
				rule("-A %s -p %s --dport 53 -m owner --gid-owner %d -j RETURN", ch.output, proto, c.ProxyGID)
			}
			rule("-A %s -p %s --dport 53 -j REDIRECT --to-ports %d", ch.output, proto, c.DNSPort)
		}
	}
	owner := func(match string) {
		// The proxy connecting to this host's own non-loopback address (the
		// app calling a service whose endpoint is itself) goes through
		// inbound handling, so inbound policy still applies.
		if !c.DisableInbound {
			rule("-A %s ! -d %s -o lo -p tcp -m owner --%s -j %s", ch.output, loopback, match, ch.inRedirect)
		}
		// Anything else on lo that is not from the proxy is the app
		// talking to itself: leave it alone.
		rule("-A %s -o lo -m owner ! --%s -j RETURN", ch.output, match)
		// The proxy's own upstream traffic: never redirect (no loop).
		rule("-A %s -m owner --%s -j RETURN", ch.output, match)
	}
	owner(fmt.Sprintf("uid-owner %d", c.ProxyUID))
	if c.ProxyGID != 0 {
		owner(fmt.Sprintf("gid-owner %d", c.ProxyGID))
	}
	rule("-A %s -d %s -j RETURN", ch.output, loopback)
	for _, p := range familyOf(c.ExcludeOutboundCIDRs, v6) {
		rule("-A %s -d %s -j RETURN", ch.output, p)
	}
	if len(c.IncludeOutboundCIDRs) == 0 {
		rule("-A %s -j %s", ch.output, ch.redirect)
	} else {
		for _, p := range familyOf(c.IncludeOutboundCIDRs, v6) {
			rule("-A %s -d %s -j %s", ch.output, p, ch.redirect)
		}
	}

	// Jumps from the built-in chains, last, so they only ever point at
	// complete chains.
	if !c.DisableInbound {
		rule("-A PREROUTING -p tcp -j %s", ch.inbound)
	}
	rule("-A OUTPUT -p tcp -j %s", ch.output)
	if c.RedirectDNS {
		rule("-A OUTPUT -p udp --dport 53 -j %s", ch.output)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func familyOf(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}
