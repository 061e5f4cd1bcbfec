package router

import (
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
)

// CORS as Envoy's envoy.filters.http.cors applies a route's CorsPolicy:
// requests without an Origin header are not CORS requests and pass
// untouched; a preflight (OPTIONS with Origin and
// Access-Control-Request-Method) from an allowed origin is answered here
// with 200 and the policy's allow headers; a preflight from any other
// origin goes upstream (or, with forward_not_matching_preflights false, is
// answered 200 without CORS headers); an actual request from an allowed
// origin goes upstream and its response gets Access-Control-Allow-Origin
// (plus credentials and expose headers). Routes with a direct response or
// a redirect bypass CORS, as in Envoy.

var (
	hdrOrigin           = []byte("access-control-allow-origin")
	hdrAllowCredentials = []byte("access-control-allow-credentials")
	hdrAllowMethods     = []byte("access-control-allow-methods")
	hdrAllowHeaders     = []byte("access-control-allow-headers")
	hdrExposeHeaders    = []byte("access-control-expose-headers")
	hdrMaxAge           = []byte("access-control-max-age")
	valueTrue           = []byte("true")
	methodOptions       = []byte("OPTIONS")
)

// corsOrigin returns the request's Origin when c applies to it and allows
// that origin; preflight reports whether the request is a CORS preflight.
func corsOrigin(req Request, c *route.CorsPolicy) (origin []byte, allowed, preflight bool) {
	if c == nil || !c.Enabled {
		return nil, false, false
	}
	origin, ok := req.Header("origin")
	if !ok || len(origin) == 0 {
		return nil, false, false
	}
	if string(req.Method()) == string(methodOptions) {
		if m, ok := req.Header("access-control-request-method"); ok && len(m) > 0 {
			preflight = true
		}
	}
	return origin, c.AllowOrigin(origin), preflight
}

// corsPreflight answers a preflight locally when the policy says so; ok is
// false when the request must go on to the upstream.
func (r *Router) corsPreflight(st *reqState, c *route.CorsPolicy, origin []byte, allowed bool, vhost string) (h1.Decision, bool) {
	if !allowed && c.ForwardNotMatching {
		return h1.Decision{}, false
	}
	st.dest = r.metrics.Dest(r.reporter, vhost)
	d := h1.Decision{Status: 200, Body: []byte{}}
	if !allowed {
		return d, true
	}
	st.origin = append(st.origin[:0], origin...)
	hs := append(st.setResp[:0], h1.Header{Name: hdrOrigin, Value: st.origin})
	if c.AllowCredentials {
		hs = append(hs, h1.Header{Name: hdrAllowCredentials, Value: valueTrue})
	}
	if c.AllowMethods != nil {
		hs = append(hs, h1.Header{Name: hdrAllowMethods, Value: c.AllowMethods})
	}
	if c.AllowHeaders != nil {
		hs = append(hs, h1.Header{Name: hdrAllowHeaders, Value: c.AllowHeaders})
	}
	if c.MaxAge != nil {
		hs = append(hs, h1.Header{Name: hdrMaxAge, Value: c.MaxAge})
	}
	st.setResp = hs
	d.SetResponseHeaders = hs
	return d, true
}

// corsResponse adds the CORS response headers of an actual request from an
// allowed origin to d, on top of the route's own response header set.
func corsResponse(st *reqState, d *h1.Decision, c *route.CorsPolicy, origin []byte) {
	st.origin = append(st.origin[:0], origin...)
	// d's set list may already be st.setResp (mergeOps); appending to a
	// copy of it in the same backing array is safe because mergeOps built
	// it from the start of that array.
	hs := append(st.setResp[:0], d.SetResponseHeaders...)
	hs = append(hs, h1.Header{Name: hdrOrigin, Value: st.origin})
	if c.AllowCredentials {
		hs = append(hs, h1.Header{Name: hdrAllowCredentials, Value: valueTrue})
	}
	if c.ExposeHeaders != nil {
		hs = append(hs, h1.Header{Name: hdrExposeHeaders, Value: c.ExposeHeaders})
	}
	st.setResp = hs
	d.SetResponseHeaders = hs
}
