package route

import (
	"bytes"
	"math/rand/v2"
	"net/netip"

	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// Select returns the first route of the matching virtual host that matches
// the request, or nil (the caller answers 404). host is the :authority,
// path excludes the query string, header looks up a request header by
// lower-case name, query is the raw query string without '?'. Virtual hosts
// are chosen with Envoy's domain rules: exact, then longest "*suffix", then
// longest "prefix*", then "*"; case-insensitive. Select does not allocate.
func (t *Table) Select(host, path, method []byte, header func(name string) ([]byte, bool), query []byte) *Route {
	vh := t.virtualHost(host)
	if vh == nil {
		return nil
	}
	for _, r := range vh.Routes {
		if r.matches(host, path, method, header, query) {
			return r
		}
	}
	return nil
}

// VirtualHostFor returns the virtual host serving host, or nil.
func (t *Table) VirtualHostFor(host []byte) *VirtualHost { return t.virtualHost(host) }

func (t *Table) virtualHost(host []byte) *VirtualHost {
	if t.ignorePort {
		host = stripPort(host)
	}
	var buf [256]byte
	h := host
	if hasUpper(host) {
		if len(host) > len(buf) {
			return t.star
		}
		n := copy(buf[:], host)
		for i := 0; i < n; i++ {
			if c := buf[i]; 'A' <= c && c <= 'Z' {
				buf[i] = c + 'a' - 'A'
			}
		}
		h = buf[:n]
	}
	if vh, ok := t.exact[string(h)]; ok {
		return vh
	}
	// Wildcards must match at least one character, hence len(h) > d.n.
	for _, d := range t.suffixes {
		if len(h) > d.n {
			if vh, ok := d.m[string(h[len(h)-d.n:])]; ok {
				return vh
			}
		}
	}
	for _, d := range t.prefixes {
		if len(h) > d.n {
			if vh, ok := d.m[string(h[:d.n])]; ok {
				return vh
			}
		}
	}
	return t.star
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

func stripPort(h []byte) []byte {
	i := bytes.LastIndexByte(h, ':')
	if i < 0 || bytes.IndexByte(h[i:], ']') >= 0 {
		return h
	}
	return h[:i]
}

func (r *Route) matches(host, path, method []byte, header func(string) ([]byte, bool), query []byte) bool {
	m := &r.m
	switch m.kind {
	case pathPrefix:
		if len(path) < len(m.value) {
			return false
		}
		p := path[:len(m.value)]
		if m.ignoreCase {
			if !equalFold(p, m.value) {
				return false
			}
		} else if string(p) != m.value {
			return false
		}
	case pathExact:
		if m.ignoreCase {
			if !equalFold(path, m.value) {
				return false
			}
		} else if string(path) != m.value {
			return false
		}
	case pathRegex:
		if !m.re.Match(path) {
			return false
		}
	}
	for i := range m.headers {
		if !m.headers[i].match(host, path, method, header) {
			return false
		}
	}
	for i := range m.query {
		if !m.query[i].match(query) {
			return false
		}
	}
	if m.fraction < fracAll && rand.Uint32N(fracAll) >= m.fraction {
		return false
	}
	return true
}

// PickCluster returns the upstream cluster for this request: the route's
// cluster, or for weighted_clusters the entry selected by rnd modulo the
// total weight. It returns nil for direct responses, redirects and clusters
// that do not exist (the caller answers 503 "cluster not found").
func (r *Route) PickCluster(rnd uint32) *upstream.Cluster {
	switch r.Action {
	case ActionCluster:
		return r.Cluster
	case ActionWeightedClusters:
		if w := r.PickWeighted(rnd); w != nil {
			return w.Cluster
		}
	}
	return nil
}

// PickWeighted returns the weighted_clusters entry selected by rnd (for its
// header mutations), or nil for other actions.
func (r *Route) PickWeighted(rnd uint32) *WeightedCluster {
	if r.Action != ActionWeightedClusters || r.TotalWeight == 0 {
		return nil
	}
	x := rnd % r.TotalWeight
	for i := range r.Weighted {
		if x < r.Weighted[i].cum {
			return &r.Weighted[i]
		}
	}
	return &r.Weighted[len(r.Weighted)-1]
}

// RequestHash evaluates the route's hash policies like Envoy: hashes of
// matching policies are combined (rotate-xor) and a terminal policy that
// produced a hash stops evaluation. ok is false when no policy produced one.
// It does not allocate.
func (r *Route) RequestHash(header func(string) ([]byte, bool), query []byte, srcIP netip.Addr) (h uint64, ok bool) {
	for i := range r.Hash {
		p := &r.Hash[i]
		var v uint64
		var got bool
		switch p.Kind {
		case HashHeader:
			if header != nil {
				var b []byte
				if b, got = header(p.Name); got {
					v = upstream.Hash64(b)
				}
			}
		case HashCookie:
			if header != nil {
				if c, found := header("cookie"); found {
					var b []byte
					if b, got = cookieValue(c, p.Name); got {
						v = upstream.Hash64(b)
					}
				}
			}
		case HashSourceIP:
			if srcIP.IsValid() {
				a := srcIP.As16()
				v, got = upstream.Hash64(a[:]), true
			}
		case HashQueryParam:
			var b []byte
			if b, got = QueryParam(query, p.Name); got {
				v = upstream.Hash64(b)
			}
		}
		if !got {
			continue
		}
		if ok {
			h = (h<<1 | h>>63) ^ v
		} else {
			h, ok = v, true
		}
		if p.Terminal {
			break
		}
	}
	return h, ok
}

// cookieValue finds name in a Cookie header value without allocating.
func cookieValue(c []byte, name string) ([]byte, bool) {
	for len(c) > 0 {
		var part []byte
		if i := bytes.IndexByte(c, ';'); i >= 0 {
			part, c = c[:i], c[i+1:]
		} else {
			part, c = c, nil
		}
		part = bytes.TrimSpace(part)
		if i := bytes.IndexByte(part, '='); i >= 0 && string(part[:i]) == name {
			return part[i+1:], true
		}
	}
	return nil, false
}
