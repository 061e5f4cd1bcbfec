package router

import (
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
)

// mirror picks the shadow destinations of one request: each mirror policy
// whose runtime fraction draws this request contributes one endpoint of its
// cluster. Policies whose cluster is unknown or has no healthy endpoint are
// skipped (the original request is never affected).
func (r *Router) mirror(st *reqState, d *h1.Decision, ms []route.Mirror) {
	st.mirrors = st.mirrors[:0]
	for i := range ms {
		m := &ms[i]
		if m.Cluster == nil || (m.PerMillion < 1_000_000 && r.rnd()%1_000_000 >= m.PerMillion) {
			continue
		}
		ep := m.Cluster.Pick(0, false)
		if ep == nil || (ep.TLS != nil && ep.TLS.Unavailable != "") {
			continue
		}
		st.mirrors = append(st.mirrors, h1.Mirror{Upstream: ep.Addr, UpstreamTLS: ep.TLSKey()})
	}
	if len(st.mirrors) > 0 {
		d.Mirrors = st.mirrors
	}
}
