package dnsproxy

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// reverseAddr parses a normalized reverse-lookup name ("7.0.241.240.in-addr.arpa",
// or 32 nibbles under "ip6.arpa") into the address it asks about. Partial
// names (a /24 zone, a nibble prefix) and malformed labels are not addresses.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var a [4]byte
		for i, l := range labels {
			if l == "" || len(l) > 3 || (len(l) > 1 && l[0] == '0') {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 10, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			a[3-i] = byte(n)
		}
		return netip.AddrFrom4(a), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var a [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 16, 4)
			if err != nil {
				return netip.Addr{}, false
			}
			nib := 31 - i // labels run from the last nibble to the first
			if nib%2 == 0 {
				a[nib/2] |= byte(n) << 4
			} else {
				a[nib/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(a), true
	}
	return netip.Addr{}, false
}

// reverse returns the mesh hosts of the address a reverse-lookup name asks
// about, nil when it is not a mesh address (the upstream answers then).
func (c *compiled) reverse(name string) []string {
	if len(c.ptr) == 0 {
		return nil
	}
	ip, ok := reverseAddr(name)
	if !ok {
		return nil
	}
	return c.ptr[ip]
}

// ptrAnswer is the authoritative answer to a PTR query for a mesh address.
func ptrAnswer(req *dns.Msg, hosts []string) *dns.Msg {
	resp := new(dns.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	q := req.Question[0]
	for _, h := range hosts {
		resp.Answer = append(resp.Answer, &dns.PTR{Hdr: rrHeader(q.Name, dns.TypePTR), Ptr: dns.Fqdn(h)})
	}
	return resp
}
