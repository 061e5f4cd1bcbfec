// Package router adapts weft-proxy's runtime snapshot to the HTTP/1.1
// engine: it implements h1.Router (route table lookup, weighted clusters,
// load balancing, circuit breakers, header operations, rewrites, redirects,
// direct responses, fault aborts) and h1.Observer (end of request: endpoint
// accounting, outlier detection, Istio telemetry).
//
// Per-request state lives in a pooled object; everything the data path needs
// from a route (header slices, rewrite prefixes) is compiled once per route
// and cached by route pointer, so the happy path does not allocate.
package router

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// Reasons sent in x-weft-reason for local answers.
const (
	ReasonRouteNotFound     = "route_not_found"
	ReasonNoHealthyUpstream = "no_healthy_upstream"
	ReasonOverflow          = "upstream_overflow"
	ReasonClusterNotFound   = "cluster_not_found"
	ReasonFaultAbort        = "fault_filter_abort"
	ReasonBlackHole         = "blackhole"
)

// TableSource says which route table serves a request. Implementations are
// per listener kind: the explicit HTTP proxy picks the table by the port in
// the authority, a captured outbound connection by its HCM's RDS name, an
// inbound connection by the virtualInbound filter chain of its port.
type TableSource interface {
	// Table returns the table for req in s, or nil (404).
	Table(s *runtime.Snapshot, req *h1.Request) *runtime.RouteTable
	// Passthrough returns the address an ORIGINAL_DST (passthrough) cluster
	// forwards req to, or "" when there is none.
	Passthrough(req *h1.Request) string
}

// FallbackSource is implemented by sources that send requests without a
// route table somewhere else: the explicit proxy follows the
// virtualOutbound listener's default chain (PassthroughCluster under
// ALLOW_ANY, BlackHoleCluster under REGISTRY_ONLY) like a captured
// connection to an unknown port would.
type FallbackSource interface {
	Fallback(s *runtime.Snapshot) *upstream.Cluster
}

// Config configures a Router.
type Config struct {
	Holder   *runtime.Holder
	Source   TableSource
	Metrics  *telemetry.Metrics // nil: no telemetry
	Reporter telemetry.Reporter
	Logger   *slog.Logger
	randUint func() uint32 // tests
}

// Router implements h1.Router and h1.Observer over a runtime.Holder.
type Router struct {
	holder   *runtime.Holder
	src      TableSource
	metrics  *telemetry.Metrics
	reporter telemetry.Reporter
	log      *slog.Logger
	rnd      func() uint32

	states  sync.Pool
	handoff *handoff
	ops     atomic.Pointer[opsCache]
	noRoute *telemetry.Dest
}

var (
	_ h1.Router   = (*Router)(nil)
	_ h1.Observer = (*Router)(nil)
)

// New returns a Router. Install it as both Router and Observer of an
// h1.Server: the Observer half ends what the Router half started.
func New(cfg Config) *Router {
	r := &Router{holder: cfg.Holder, src: cfg.Source, metrics: cfg.Metrics, reporter: cfg.Reporter, log: cfg.Logger, rnd: cfg.randUint, handoff: &shared}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.rnd == nil {
		r.rnd = rand.Uint32
	}
	r.states.New = func() any { return &reqState{} }
	r.noRoute = cfg.Metrics.Dest(cfg.Reporter, "unknown")
	return r
}

// reqState is one request's bookkeeping between Route and RequestEnd.
type reqState struct {
	cluster  *upstream.Cluster
	ep       *upstream.Endpoint
	acquired bool
	dest     *telemetry.Dest
	flag     telemetry.Flag
	wi       int // weighted cluster index picked, -1 for none

	// scratch reused across requests
	setReq, addReq, setResp, addResp []h1.Header
	rmReq                            [][]byte
	path, loc                        []byte
}

// Route implements h1.Router.
func (r *Router) Route(req *h1.Request) h1.Decision {
	st := r.states.Get().(*reqState)
	d := r.route(req, st)
	if !r.handoff.put(req, st) {
		// Table full (more in-flight requests than slots): finish through
		// Done instead; this allocates a closure, which is acceptable in
		// that rare case. Bytes are then not recorded.
		start := time.Now()
		d.Done = func(status int, err error) {
			r.finish(st, status, err, time.Since(start), 0, 0)
		}
	}
	return d
}

// RequestStart implements h1.Observer.
func (r *Router) RequestStart(*h1.Request) {}

// RequestEnd implements h1.Observer.
func (r *Router) RequestEnd(req *h1.Request, s h1.Summary) {
	if st := r.handoff.take(req); st != nil {
		r.finish(st, s.Status, s.Err, s.Duration, s.BytesIn, s.BytesOut)
	}
}

func (r *Router) finish(st *reqState, status int, err error, dur time.Duration, in, out int64) {
	flag := st.flag
	if flag == telemetry.FlagNone && err != nil {
		flag = flagFor(status, err)
	}
	if st.ep != nil {
		st.ep.End()
		st.ep.ReportResult(status, err)
	}
	if st.acquired {
		st.cluster.Release(upstream.Requests)
	}
	st.dest.Request(status, flag, dur, in, out)
	st.cluster, st.ep, st.acquired, st.dest, st.flag = nil, nil, false, nil, telemetry.FlagNone
	r.states.Put(st)
}

func flagFor(status int, err error) telemetry.Flag {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), status == 504:
		return telemetry.FlagTimeout
	case errors.Is(err, h1.ErrPoolExhausted):
		return telemetry.FlagOverflow
	case status == 502 || status == 503:
		return telemetry.FlagConnectFailure
	}
	return telemetry.FlagUpstreamReset
}

func (r *Router) local(st *reqState, dest *telemetry.Dest, flag telemetry.Flag, status int, reason string) h1.Decision {
	st.dest, st.flag = dest, flag
	return h1.Decision{Status: status, Reason: reason}
}

func (r *Router) route(req *h1.Request, st *reqState) h1.Decision {
	st.wi = -1
	snap := r.holder.Load()
	table := r.src.Table(snap, req)
	if table == nil {
		if fs, ok := r.src.(FallbackSource); ok {
			if c := fs.Fallback(snap); c != nil {
				return r.toCluster(req, st, c, nil, passthroughOps)
			}
		}
		return r.local(st, r.noRoute, telemetry.FlagNoRoute, 404, ReasonRouteNotFound)
	}
	rt := table.Select(req.Host(), req.Path(), req.Method(), req.Header, req.RawQuery())
	if rt == nil {
		return r.local(st, r.noRoute, telemetry.FlagNoRoute, 404, ReasonRouteNotFound)
	}
	ops := r.opsFor(snap, table, rt)
	switch rt.Action {
	case route.ActionDirectResponse:
		st.dest = r.metrics.Dest(r.reporter, rt.VirtualHost.Name)
		d := h1.Decision{Status: rt.Direct.Status, Body: rt.Direct.Body}
		if d.Body == nil {
			d.Body = []byte{}
		}
		d.SetResponseHeaders, d.AddResponseHeaders, d.RemoveResponseHeaders = ops.setResp, ops.addResp, ops.rmResp
		return d
	case route.ActionRedirect:
		st.dest = r.metrics.Dest(r.reporter, rt.VirtualHost.Name)
		return r.redirect(req, st, rt.Redirect)
	}
	if f := rt.Fault; f != nil {
		// Delays need a hook in h1 that does not block the connection
		// goroutine unboundedly; only aborts are injected for now.
		if _, abort := f.Decide(r.rnd(), r.rnd()); abort && f.AbortStatus != 0 {
			return r.local(st, r.metrics.Dest(r.reporter, rt.ClusterName), telemetry.FlagFaultAbort, f.AbortStatus, ReasonFaultAbort)
		}
	}
	var (
		c  *upstream.Cluster
		wc *route.WeightedCluster
		wi = -1
	)
	if rt.Action == route.ActionWeightedClusters {
		wc = rt.PickWeighted(r.rnd())
		if wc != nil {
			c = wc.Cluster
			wi = wcIndex(rt, wc)
		}
	} else {
		c = rt.Cluster
	}
	if c == nil {
		name := rt.ClusterName
		if wc != nil {
			name = wc.Name
		}
		return r.local(st, r.metrics.Dest(r.reporter, name), telemetry.FlagNoCluster, 503, ReasonClusterNotFound)
	}
	st.wi = wi
	return r.toCluster(req, st, c, rt, ops)
}

// passthroughOps are the ops of requests forwarded without a route.
var passthroughOps = &routeOps{timeout: -1}

func (r *Router) toCluster(req *h1.Request, st *reqState, c *upstream.Cluster, rt *route.Route, ops *routeOps) h1.Decision {
	st.dest = r.metrics.Dest(r.reporter, c.Name)
	var upstreamAddr string
	if c.Type == clusterv3.Cluster_ORIGINAL_DST {
		upstreamAddr = r.src.Passthrough(req)
		if upstreamAddr == "" {
			return r.local(st, st.dest, telemetry.FlagNoHealthyUpstream, 503, ReasonNoHealthyUpstream)
		}
	} else {
		var hash uint64
		var hasHash bool
		if rt != nil && len(rt.Hash) > 0 {
			hash, hasHash = rt.RequestHash(req.Header, req.RawQuery(), remoteIP(req))
		}
		ep := c.Pick(hash, hasHash)
		if ep == nil {
			if c.Name == "BlackHoleCluster" {
				return r.local(st, st.dest, telemetry.FlagNoRoute, 502, ReasonBlackHole)
			}
			return r.local(st, st.dest, telemetry.FlagNoHealthyUpstream, 503, ReasonNoHealthyUpstream)
		}
		if !c.Acquire(upstream.Requests) {
			return r.local(st, st.dest, telemetry.FlagOverflow, 503, ReasonOverflow)
		}
		ep.Begin()
		st.cluster, st.ep, st.acquired = c, ep, true
		upstreamAddr = ep.Addr
	}
	d := h1.Decision{Upstream: upstreamAddr, Timeout: ops.timeout}
	d.HostRewrite = ops.hostRewrite
	if ops.prefix != nil && bytes.HasPrefix(req.Path(), ops.prefix) {
		st.path = append(append(st.path[:0], ops.prefixRewrite...), req.Path()[len(ops.prefix):]...)
		if len(st.path) == 0 {
			st.path = append(st.path, '/')
		}
		d.PathRewrite = st.path
	} else if rt != nil && rt.RegexRewrite != nil {
		st.path = rt.RegexRewrite.ReplaceAll(req.Path(), []byte(rt.RegexSubstitution)) // rare; allocates
		d.PathRewrite = st.path
	}
	d.SetRequestHeaders, d.AddRequestHeaders, d.RemoveRequestHeaders = ops.setReq, ops.addReq, ops.rmReq
	d.SetResponseHeaders, d.AddResponseHeaders, d.RemoveResponseHeaders = ops.setResp, ops.addResp, ops.rmResp
	if len(ops.addIfAbsent) > 0 || (st.wi >= 0 && !ops.weighted[st.wi].empty()) {
		r.mergeOps(req, st, &d, ops, st.wi)
	}
	return d
}

// mergeOps builds per-request header slices in st's scratch space when a
// route has add-if-absent entries or per-cluster mutations.
func (r *Router) mergeOps(req *h1.Request, st *reqState, d *h1.Decision, ops *routeOps, wi int) {
	st.setReq = append(st.setReq[:0], ops.setReq...)
	st.addReq = append(st.addReq[:0], ops.addReq...)
	st.rmReq = append(st.rmReq[:0], ops.rmReq...)
	st.setResp = append(st.setResp[:0], ops.setResp...)
	st.addResp = append(st.addResp[:0], ops.addResp...)
	for _, h := range ops.addIfAbsent {
		if _, ok := req.Header(string(h.Name)); !ok {
			st.addReq = append(st.addReq, h)
		}
	}
	if wi >= 0 {
		w := &ops.weighted[wi]
		st.setReq = append(st.setReq, w.setReq...)
		st.addReq = append(st.addReq, w.addReq...)
		st.rmReq = append(st.rmReq, w.rmReq...)
		st.setResp = append(st.setResp, w.setResp...)
		st.addResp = append(st.addResp, w.addResp...)
	}
	d.SetRequestHeaders, d.AddRequestHeaders, d.RemoveRequestHeaders = st.setReq, st.addReq, st.rmReq
	d.SetResponseHeaders, d.AddResponseHeaders = st.setResp, st.addResp
}

func (r *Router) redirect(req *h1.Request, st *reqState, red *route.Redirect) h1.Decision {
	b := st.loc[:0]
	scheme := red.Scheme
	if scheme == "" {
		scheme = "http"
	}
	b = append(b, scheme...)
	b = append(b, "://"...)
	host := req.Host()
	if red.Host != "" {
		host = []byte(red.Host)
	}
	if red.Port != 0 {
		if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
			host = host[:i]
		}
		b = append(b, host...)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(red.Port), 10)
	} else {
		b = append(b, host...)
	}
	switch {
	case red.Path != "":
		b = append(b, red.Path...)
	default:
		b = append(b, req.Path()...)
	}
	if q := req.RawQuery(); len(q) > 0 && !red.StripQuery {
		b = append(b, '?')
		b = append(b, q...)
	}
	st.loc = b
	st.setResp = append(st.setResp[:0], h1.Header{Name: locationName, Value: st.loc})
	return h1.Decision{Status: red.Status, Body: []byte{}, SetResponseHeaders: st.setResp}
}

var locationName = []byte("location")

func wcIndex(rt *route.Route, wc *route.WeightedCluster) int {
	for i := range rt.Weighted {
		if &rt.Weighted[i] == wc {
			return i
		}
	}
	return -1
}

func remoteIP(req *h1.Request) netip.Addr {
	if ta, ok := req.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	return netip.Addr{}
}
