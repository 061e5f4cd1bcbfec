package router

import (
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
)

// routeOps is what the data path needs from a route, compiled once into
// h1's byte-slice form.
type routeOps struct {
	setReq, addReq, addIfAbsent, setResp, addResp []h1.Header
	rmReq, rmResp                                 [][]byte
	prefix, prefixRewrite                         []byte // prefix_rewrite on the matched prefix
	hostRewrite                                   []byte
	timeout                                       time.Duration
	weighted                                      []clusterOps
}

type clusterOps struct {
	setReq, addReq, setResp, addResp []h1.Header
	rmReq                            [][]byte
}

func (c *clusterOps) empty() bool {
	return len(c.setReq)+len(c.addReq)+len(c.setResp)+len(c.addResp)+len(c.rmReq) == 0
}

// opsCache maps routes of one configuration generation to their ops; a new
// generation (route tables or listeners replaced) starts an empty cache so
// old routes are not kept alive.
type opsCache struct {
	tables    *runtime.RouteTables
	listeners *runtime.Listeners
	m         map[*route.Route]*routeOps
}

func (r *Router) opsFor(s *runtime.Snapshot, t *runtime.RouteTable, rt *route.Route) *routeOps {
	c := r.ops.Load()
	if c != nil && c.tables == s.RouteTables && c.listeners == s.Listeners {
		if o := c.m[rt]; o != nil {
			return o
		}
	}
	// Slow path: compile the whole table into a new copy-on-write map.
	next := &opsCache{tables: s.RouteTables, listeners: s.Listeners, m: map[*route.Route]*routeOps{}}
	if c != nil && c.tables == s.RouteTables && c.listeners == s.Listeners {
		for k, v := range c.m {
			next.m[k] = v
		}
	}
	compileTable(t, next.m)
	o := next.m[rt]
	if o == nil { // route not reachable through t's source (should not happen)
		o = compileRoute(rt, "")
		next.m[rt] = o
	}
	r.ops.CompareAndSwap(c, next)
	return o
}

func compileTable(t *runtime.RouteTable, m map[*route.Route]*routeOps) {
	src := t.Source()
	vhs := src.GetVirtualHosts()
	for i, vh := range t.VirtualHosts {
		var pbRoutes []string
		if i < len(vhs) && vhs[i].GetName() == vh.Name && len(vhs[i].GetRoutes()) == len(vh.Routes) {
			for _, pr := range vhs[i].GetRoutes() {
				pbRoutes = append(pbRoutes, pr.GetMatch().GetPrefix())
			}
		}
		for j, rt := range vh.Routes {
			prefix := ""
			if pbRoutes != nil {
				prefix = pbRoutes[j]
			}
			m[rt] = compileRoute(rt, prefix)
		}
	}
}

func compileRoute(rt *route.Route, prefix string) *routeOps {
	o := &routeOps{timeout: rt.Timeout}
	if o.timeout == 0 {
		o.timeout = -1 // route timeout 0 disables it; h1 treats 0 as its default
	}
	for _, h := range rt.RequestHeadersToAdd {
		hh := h1.Header{Name: []byte(h.Name), Value: []byte(h.Value)}
		switch {
		case h.AddIfAbsent:
			o.addIfAbsent = append(o.addIfAbsent, hh)
		case h.Append:
			o.addReq = append(o.addReq, hh)
		default:
			o.setReq = append(o.setReq, hh)
		}
	}
	for _, h := range rt.ResponseHeadersToAdd {
		hh := h1.Header{Name: []byte(h.Name), Value: []byte(h.Value)}
		if h.Append {
			o.addResp = append(o.addResp, hh)
		} else {
			o.setResp = append(o.setResp, hh)
		}
	}
	for _, n := range rt.RequestHeadersToRemove {
		o.rmReq = append(o.rmReq, []byte(n))
	}
	for _, n := range rt.ResponseHeadersToRemove {
		o.rmResp = append(o.rmResp, []byte(n))
	}
	if rt.PrefixRewrite != "" && prefix != "" {
		o.prefix, o.prefixRewrite = []byte(prefix), []byte(rt.PrefixRewrite)
	}
	if rt.HostRewrite != "" {
		o.hostRewrite = []byte(rt.HostRewrite)
	}
	for _, w := range rt.Weighted {
		var c clusterOps
		for _, h := range w.RequestHeadersToAdd {
			hh := h1.Header{Name: []byte(h.Name), Value: []byte(h.Value)}
			if h.Append {
				c.addReq = append(c.addReq, hh)
			} else {
				c.setReq = append(c.setReq, hh)
			}
		}
		for _, h := range w.ResponseHeadersToAdd {
			hh := h1.Header{Name: []byte(h.Name), Value: []byte(h.Value)}
			if h.Append {
				c.addResp = append(c.addResp, hh)
			} else {
				c.setResp = append(c.setResp, hh)
			}
		}
		for _, n := range w.RequestHeadersToRemove {
			c.rmReq = append(c.rmReq, []byte(n))
		}
		o.weighted = append(o.weighted, c)
	}
	return o
}
