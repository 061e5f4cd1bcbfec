package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The proxy's own upstream queries leave from ephemeral ports of the
// weft-proxy process; in transparent mode the iptables rule that redirects
// port 53 to 15053 exempts the proxy's uid (as Istio exempts 1337), so they
// are not captured. Nothing here binds port 53.

// forward sends req to the upstreams in order within Config.Timeout. An
// upstream that fails, times out, or answers SERVFAIL/REFUSED is skipped;
// each attempt gets an equal share of the remaining budget so one dead
// upstream cannot eat it all.
func (s *Server) forward(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	if len(s.upstreams) == 0 {
		return nil, errors.New("no upstream resolvers")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var errs []error
	for i, up := range s.upstreams {
		share := time.Until(deadline) / time.Duration(len(s.upstreams)-i)
		if share <= 0 {
			break
		}
		actx, acancel := context.WithTimeout(ctx, share)
		resp, err := exchange(actx, req, up)
		acancel()
		if err == nil && (resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused) {
			err = fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: %w", up, err))
			continue
		}
		return resp, nil
	}
	if len(errs) == 0 {
		errs = append(errs, ctx.Err())
	}
	return nil, errors.Join(errs...)
}

// exchange asks one upstream over UDP, retrying over TCP when the answer is
// truncated. The query gets a fresh random ID and each exchange a fresh
// socket (random source port); the answer must echo the question.
func exchange(ctx context.Context, req *dns.Msg, upstream string) (*dns.Msg, error) {
	m := req.Copy()
	m.Id = dns.Id()
	c := &dns.Client{Net: "udp"}
	if d, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(d)
	}
	resp, _, err := c.ExchangeContext(ctx, m, upstream)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, upstream)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) ||
		resp.Question[0].Qtype != m.Question[0].Qtype || resp.Question[0].Qclass != m.Question[0].Qclass {
		return nil, errors.New("answer does not match the question")
	}
	return resp, nil
}

// readResolvConf returns the nameservers of a resolv.conf file.
func readResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnsproxy: read upstreams: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("dnsproxy: read upstreams: no nameserver in %s", path)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, srv := range cc.Servers {
		out = append(out, net.JoinHostPort(srv, cc.Port))
	}
	return out, nil
}

// parseUpstreams normalizes "ip" and "ip:port" to "ip:port". Names are not
// accepted: resolving them would need the resolver being configured.
func parseUpstreams(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, u := range in {
		if ap, err := netip.ParseAddrPort(u); err == nil {
			out = append(out, ap.String())
			continue
		}
		a, err := netip.ParseAddr(strings.Trim(u, "[]"))
		if err != nil {
			return nil, fmt.Errorf("dnsproxy: upstream %q: want ip or ip:port", u)
		}
		out = append(out, netip.AddrPortFrom(a, 53).String())
	}
	return out, nil
}
