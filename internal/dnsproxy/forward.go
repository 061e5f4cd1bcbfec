package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The proxy's own upstream queries leave from ephemeral ports of the
// weft-proxy process; in transparent mode the iptables rule that redirects
// port 53 to 15053 exempts the proxy's uid (as Istio exempts 1337), so they
// are not captured. Nothing here binds port 53.

// resolve answers a non-mesh query from the cache, from an identical query
// already in flight, or from the upstreams. It always returns a response
// (SERVFAIL when nothing else is possible).
func (s *Server) resolve(req *dns.Msg) *dns.Msg {
	key := keyOf(req)
	if m := s.cache.get(key, s.cfg.Clock()); m != nil {
		s.stats.hits.Add(1)
		return asAnswerTo(req, m)
	}
	f, leader := s.flights.join(key)
	if f == nil {
		s.stats.rejected.Add(1)
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	}
	if !leader {
		// A hot name expiring under load must not turn into a burst of
		// upstream queries (and SERVFAILs once MaxInflight is reached).
		defer s.flights.waiters.Add(-1)
		<-f.done // the leader finishes within Config.Timeout
		if f.resp == nil {
			return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
		}
		s.stats.coalesced.Add(1)
		return asAnswerTo(req, f.resp.Copy())
	}
	defer s.flights.finish(key, f)
	select {
	case s.inflight <- struct{}{}:
	default:
		s.stats.rejected.Add(1)
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	}
	defer func() { <-s.inflight }()
	s.stats.forwarded.Add(1)
	resp, err := s.forward(s.context(), req)
	if err != nil {
		s.stats.upErrs.Add(1)
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("forward failed", "name", req.Question[0].Name, "type", dns.TypeToString[req.Question[0].Qtype], "err", err)
		}
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	}
	s.cache.put(key, resp, s.cfg.Clock())
	f.resp = resp.Copy()
	return asAnswerTo(req, resp)
}

// asAnswerTo addresses a forwarded or cached response to req: its ID and
// its question as the client spelled it.
func asAnswerTo(req, m *dns.Msg) *dns.Msg {
	m.Id = req.Id
	m.Question = []dns.Question{req.Question[0]}
	return m
}

// flights coalesces identical forwarded queries.
type flights struct {
	mu         sync.Mutex
	calls      map[cacheKey]*flight
	waiters    atomic.Int64
	maxWaiters int64
}

type flight struct {
	done chan struct{}
	resp *dns.Msg // set before done is closed; nil on failure
}

// join returns the flight for key and whether the caller leads it (must
// forward and then call finish). It returns nil when too many callers
// already wait.
func (fs *flights) join(key cacheKey) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.calls[key]; ok {
		if fs.waiters.Add(1) > fs.maxWaiters {
			fs.waiters.Add(-1)
			return nil, false
		}
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	fs.calls[key] = f
	return f, true
}

func (fs *flights) finish(key cacheKey, f *flight) {
	fs.mu.Lock()
	delete(fs.calls, key)
	fs.mu.Unlock()
	close(f.done)
}

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
