package dnsproxy

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// maxPositiveTTL caps how long a forwarded answer is cached.
	maxPositiveTTL = 300 * time.Second
	// maxNegativeTTL caps NXDOMAIN/NODATA caching (RFC 2308 §5 allows a cap).
	maxNegativeTTL = 60 * time.Second
)

// cacheKey identifies a forwarded question. DO and CD change what an
// upstream returns, so they are part of the key.
type cacheKey struct {
	name   string
	qtype  uint16
	qclass uint16
	do, cd bool
}

func keyOf(req *dns.Msg) cacheKey {
	q := req.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: req.CheckingDisabled}
	if opt := req.IsEdns0(); opt != nil {
		k.do = opt.Do()
	}
	return k
}

type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// cache is a size-bounded LRU of upstream responses. It stores private
// copies and hands out copies, so callers may mutate what they get.
type cache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recently used
	items map[cacheKey]*list.Element
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: map[cacheKey]*list.Element{}}
}

// get returns a copy of the cached response with every TTL decreased by the
// time it spent in the cache, or nil.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	el, ok := c.items[k]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, k)
		c.mu.Unlock()
		return nil
	}
	c.ll.MoveToFront(el)
	c.mu.Unlock()

	// e.msg is never mutated after insertion, so copying outside the lock
	// is safe.
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			h.Ttl = max(h.Ttl, age) - age
		}
	}
	return m
}

// put stores resp if it is cacheable.
func (c *cache) put(k cacheKey, resp *dns.Msg, now time.Time) {
	if c == nil {
		return
	}
	ttl := cacheTTL(resp)
	if ttl <= 0 {
		return
	}
	e := &cacheEntry{key: k, msg: resp.Copy(), stored: now, expires: now.Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// cacheTTL decides how long a response may be cached; 0 means not at all.
//
//   - NOERROR with answers: the smallest answer TTL, capped at 300s.
//   - NXDOMAIN, or NOERROR without answers (NODATA): per RFC 2308 §5 the
//     smaller of the SOA record's TTL and its MINIMUM field, capped at 60s;
//     without a SOA in the authority section the answer is not cached.
//   - Anything else (SERVFAIL, REFUSED, truncated) is not cached.
func cacheTTL(m *dns.Msg) time.Duration {
	if m.Truncated {
		return 0
	}
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		minTTL := uint32(1<<32 - 1)
		for _, rr := range m.Answer {
			minTTL = min(minTTL, rr.Header().Ttl)
		}
		return min(time.Duration(minTTL)*time.Second, maxPositiveTTL)
	case m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxNegativeTTL)
			}
		}
	}
	return 0
}
