// Package router adapts weft-proxy's runtime snapshot to the HTTP/1.1
// engine: it implements h1.Router (route table lookup, weighted clusters,
// load balancing, circuit breakers, header operations, rewrites, redirects,
// direct responses, fault aborts) and h1.Observer (end of request: endpoint
// accounting, outlier detection, Istio telemetry).
//
// Per-request state lives in a pooled object that travels with the request
// as h1.Decision.State and comes back in the Observer's Summary; it also
// implements h1.Retrier (retry policy, previous_hosts, max_retries circuit
// breaker). Everything the data path needs
// from a route (header slices, rewrite prefixes) is compiled once per route
// and cached by route pointer, so the happy path does not allocate.
package router

import (
	"bytes"
	"context"
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

	"github.com/weftmesh/weft/internal/proxy/accesslog"
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/jwtauthn"
	"github.com/weftmesh/weft/internal/proxy/rbac"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tracing"
)

// Reasons sent in x-weft-reason for local answers.
const (
	ReasonRBACDenied        = "rbac_access_denied"
	ReasonJWTFailed         = "jwt_authn_failed"
	ReasonRouteNotFound     = "route_not_found"
	ReasonNoHealthyUpstream = "no_healthy_upstream"
	ReasonOverflow          = "upstream_overflow"
	ReasonClusterNotFound   = "cluster_not_found"
	ReasonFaultAbort        = "fault_filter_abort"
	ReasonBlackHole         = "blackhole"
	// ReasonTLSUnavailable: the endpoint's upstream TLS context needs
	// something weft-proxy has no source for (e.g. a credentialName SDS
	// secret); see upstream.UpstreamTLS.Unavailable.
	ReasonTLSUnavailable = "upstream_tls_unavailable"
)

// Request is what routing reads of a request; *h1.Request and *h2.Request
// both implement it, so one router serves HTTP/1.1 and HTTP/2. Passing a
// pointer as this interface does not allocate.
type Request interface {
	Method() []byte
	Path() []byte
	RawQuery() []byte
	Target() []byte
	Host() []byte
	Header(name string) ([]byte, bool)
	RemoteAddr() net.Addr
	// Conn is the client connection, for its peer identity (PeerIdentity).
	Conn() net.Conn
	IsConnect() bool
}

var (
	_ Request          = (*h1.Request)(nil)
	_ Request          = (*h2.Request)(nil)
	_ rbac.HTTPRequest = Request(nil)
	_ jwtauthn.Request = Request(nil)
)

// PeerIdentity is implemented by connections on which the proxy terminated
// mesh mTLS (listener.PeerConn): authorization matches the caller's
// verified SPIFFE ID and the SNI it sent.
type PeerIdentity interface {
	PeerPrincipal() string
	ServerName() string
}

// HCMSource is implemented by sources that serve one filter chain's HTTP
// connection manager (inbound): the router reads the route table from it
// and first runs its jwt_authn and RBAC filters, as Envoy runs an HCM's
// HTTP filters before the router filter.
type HCMSource interface {
	TableSource
	// HCM returns the connection manager serving req in s, or nil (404).
	HCM(s *runtime.Snapshot, req Request) *runtime.HTTPConnectionManager
	// Destination is the (original) destination address of the
	// connections the source serves: RBAC's destination_ip and _port.
	Destination() netip.AddrPort
}

// TableSource says which route table serves a request. Implementations are
// per listener kind: the explicit HTTP proxy picks the table by the port in
// the authority, a captured outbound connection by its HCM's RDS name, an
// inbound connection by the virtualInbound filter chain of its port.
type TableSource interface {
	// Table returns the table for req in s, or nil (404).
	Table(s *runtime.Snapshot, req Request) *runtime.RouteTable
	// Passthrough returns the address an ORIGINAL_DST (passthrough) cluster
	// forwards req to, or "" when there is none.
	Passthrough(req Request) string
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
	// UpstreamPeer returns the SPIFFE ID the upstream at addr presented
	// over TLS context tlsKey ("" unknown): outbound telemetry's
	// destination_principal. Nil: not reported.
	UpstreamPeer func(addr, tlsKey string) string
	// Logger is the base logger: RBAC audit, shadow and denial lines carry
	// component=rbac.
	Logger *slog.Logger
	// AccessLog, when set, gets one entry per request.
	AccessLog *accesslog.Logger
	// Tracer, when set, records a span per sampled request and hands the
	// upstream the proxy's span as parent (traceparent / B3).
	Tracer   *tracing.Tracer
	randUint func() uint32 // tests
}

// Router implements h1.Router and h1.Observer over a runtime.Holder.
type Router struct {
	holder   *runtime.Holder
	src      TableSource
	hcmSrc   HCMSource // src, when it is one
	metrics  *telemetry.Metrics
	reporter telemetry.Reporter
	peerOf   func(addr, tlsKey string) string
	log      *slog.Logger
	rnd      func() uint32
	alog     *accesslog.Logger
	tracer   *tracing.Tracer

	states  sync.Pool
	ops     atomic.Pointer[opsCache]
	noRoute *telemetry.Dest
}

var (
	_ h1.Router   = (*Router)(nil)
	_ h1.Observer = (*Router)(nil)
	_ h1.Retrier  = (*reqState)(nil)

	_ h1.TLSRetrier = (*reqState)(nil)
)

// New returns a Router. Install it as both Router and Observer of an
// h1.Server: the Observer half ends what the Router half started.
func New(cfg Config) *Router {
	r := &Router{holder: cfg.Holder, src: cfg.Source, metrics: cfg.Metrics, reporter: cfg.Reporter, peerOf: cfg.UpstreamPeer, log: cfg.Logger, rnd: cfg.randUint,
		alog: cfg.AccessLog, tracer: cfg.Tracer}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.rnd == nil {
		r.rnd = rand.Uint32
	}
	r.hcmSrc, _ = cfg.Source.(HCMSource)
	r.states.New = func() any { return &reqState{r: r} }
	r.noRoute = cfg.Metrics.Dest(cfg.Reporter, "unknown")
	return r
}

// reqState is one request's bookkeeping between Route and RequestEnd.
type reqState struct {
	r        *Router
	cluster  *upstream.Cluster
	ep       *upstream.Endpoint
	acquired bool
	dest     *telemetry.Dest
	flag     telemetry.Flag
	wi       int // weighted cluster index picked, -1 for none

	// transport
	tlsKey string // upstream TLS context of the current attempt ("" plaintext)
	peer   string // the caller's verified SPIFFE ID (inbound mTLS), "" otherwise

	// retries
	policy    *route.RetryPolicy
	addr      string // upstream of the current attempt
	hash      uint64
	hasHash   bool
	retryHeld bool // holds one upstream.Retries circuit-breaker slot
	tried     [maxTracked]*upstream.Endpoint
	ntried    int

	// header outputs of jwt_authn for the upstream request
	jwt jwtauthn.Result

	// scratch reused across requests
	setReq, addReq, setResp, addResp []h1.Header
	rmReq                            [][]byte
	path, loc, origin                []byte
	mirrors                          []h1.Mirror
	logPath                          []byte
	trace                            traceState
}

// maxTracked bounds the endpoints remembered for previous_hosts.
const maxTracked = 8

// Route implements h1.Router.
func (r *Router) Route(req *h1.Request) h1.Decision {
	st := r.states.Get().(*reqState)
	d := r.route(req, st)
	d.State = st
	return d
}

// route decides one request: inbound authentication and authorization
// first, then routing; jwt_authn's header outputs are added to a
// forwarded request's mutations.
func (r *Router) route(req Request, st *reqState) h1.Decision {
	d := r.decide(req, st)
	if d.Status == 0 && (len(st.jwt.Set) > 0 || len(st.jwt.Remove) > 0) {
		r.jwtHeaders(st, &d)
	}
	return d
}

// H2 returns the router's HTTP/2 face: the same routing, state and
// telemetry for streams served by internal/proxy/h2.
func (r *Router) H2() H2Router { return H2Router{r} }

// H2Router adapts a Router to h2.Router and h2.Observer.
type H2Router struct{ r *Router }

// Route implements h2.Router.
func (h H2Router) Route(req *h2.Request) h1.Decision {
	st := h.r.states.Get().(*reqState)
	d := h.r.route(req, st)
	d.State = st
	return d
}

// RequestStart implements h2.Observer.
func (h H2Router) RequestStart(*h2.Request) {}

// RequestEnd implements h2.Observer.
func (h H2Router) RequestEnd(req *h2.Request, s h1.Summary) {
	if st, ok := s.State.(*reqState); ok && st.r == h.r {
		if h.r.alog != nil || st.trace.on {
			h.r.observeEnd(req, st, s)
		}
		gs := notGRPC
		if req.IsGRPC() {
			gs = req.GRPCStatus() // -1: none sent; telemetry derives it
		}
		h.r.finish(st, s, gs)
	}
}

// RequestStart implements h1.Observer.
func (r *Router) RequestStart(*h1.Request) {}

// RequestEnd implements h1.Observer.
func (r *Router) RequestEnd(req *h1.Request, s h1.Summary) {
	if st, ok := s.State.(*reqState); ok && st.r == r {
		if r.alog != nil || st.trace.on {
			r.observeEnd(req, st, s)
		}
		r.finish(st, s, notGRPC)
	}
}

// Retry implements h1.Retrier under the route's retry policy: Envoy's
// retry_on conditions, num_retries, jittered back-off, the previous_hosts
// predicate and the cluster's max_retries circuit breaker.
func (st *reqState) Retry(attempt, status int, err error) (string, time.Duration, bool) {
	p := st.policy
	if p == nil || attempt > int(p.NumRetries) {
		return "", 0, false
	}
	var cause error
	if err != nil {
		switch {
		case errors.Is(err, h1.ErrConnectFailure):
			cause = route.ErrConnectFailure
		case errors.Is(err, h1.ErrPerTryTimeout):
			cause = route.ErrTimeout
		case errors.Is(err, h1.ErrPoolExhausted), isTimeout(err):
			return "", 0, false // overflow, or the whole request timed out
		default:
			cause = route.ErrReset
		}
	}
	if !p.Retriable(status, cause) {
		return "", 0, false
	}
	c := st.cluster
	if st.retryHeld {
		c.Release(upstream.Retries)
		st.retryHeld = false
	}
	if c != nil {
		if !c.Acquire(upstream.Retries) {
			return "", 0, false // max_retries reached: the failure stands
		}
		st.retryHeld = true
	}
	if st.ep != nil {
		// The failed attempt counts for outlier detection; the next one
		// is accounted like any request.
		ep := st.ep
		ep.End()
		ep.ReportResult(status, err)
		next := st.pickRetry()
		if next == nil {
			st.ep = nil
			c.Release(upstream.Retries)
			st.retryHeld = false
			return "", 0, false
		}
		next.Begin()
		st.ep, st.addr, st.tlsKey = next, next.Addr, next.TLSKey()
	}
	return st.addr, p.Backoff(attempt, uint64(st.r.rnd())<<32|uint64(st.r.rnd())), true
}

// UpstreamTLS implements h1.TLSRetrier: the next attempt's endpoint may
// use another transport than the first (auto mTLS on a mixed cluster).
func (st *reqState) UpstreamTLS() string { return st.tlsKey }

// pickRetry picks the endpoint of the next attempt, avoiding endpoints
// already tried when the policy has previous_hosts (Envoy's
// host_selection_retry_max_attempts bounds the re-picks).
func (st *reqState) pickRetry() *upstream.Endpoint {
	st.remember(st.ep)
	tries := 1
	if st.policy.AvoidPreviousHosts {
		tries += max(int(st.policy.HostSelectionTries), 1)
	}
	var ep *upstream.Endpoint
	for i := 0; i < tries; i++ {
		ep = st.cluster.Pick(st.hash, st.hasHash)
		if ep == nil || !st.policy.AvoidPreviousHosts || !st.triedBefore(ep) {
			break
		}
	}
	return ep
}

func (st *reqState) remember(ep *upstream.Endpoint) {
	if st.ntried < maxTracked {
		st.tried[st.ntried] = ep
		st.ntried++
	}
}

func (st *reqState) triedBefore(ep *upstream.Endpoint) bool {
	for _, t := range st.tried[:st.ntried] {
		if t == ep {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// notGRPC is finish's grpcStatus of a request that is not gRPC.
const notGRPC = -2

// finish records the request's telemetry and returns st to the pool.
// grpcStatus is the gRPC status sent to the client, -1 for a gRPC request
// that got none, notGRPC for other requests.
func (r *Router) finish(st *reqState, s h1.Summary, grpcStatus int) {
	status, err := s.Status, s.Err
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
	if st.retryHeld {
		st.cluster.Release(upstream.Retries)
	}
	dest := st.dest
	if st.ep != nil {
		// The endpoint that answered (the last attempt's) names the
		// destination workload; a destination reporter ignores it.
		dest = dest.Upstream(st.ep.WorkloadKey, st.ep.Workload)
	}
	switch {
	case st.peer != "":
		dest = dest.Peer(st.peer)
	case st.tlsKey != "" && err == nil && r.peerOf != nil:
		if p := r.peerOf(st.addr, st.tlsKey); p != "" {
			dest = dest.Peer(p)
		}
	}
	if grpcStatus == notGRPC {
		dest.Request(status, flag, s.Duration, s.BytesIn, s.BytesOut)
	} else {
		dest.GRPC(status, grpcStatus, flag, s.Duration, s.BytesIn, s.BytesOut)
	}
	st.cluster, st.ep, st.acquired, st.dest, st.flag = nil, nil, false, nil, telemetry.FlagNone
	st.policy, st.addr, st.retryHeld, st.hash, st.hasHash = nil, "", false, 0, false
	st.tlsKey, st.peer = "", ""
	st.jwt = jwtauthn.Result{}
	clear(st.tried[:st.ntried])
	st.ntried = 0
	r.states.Put(st)
}

func flagFor(status int, err error) telemetry.Flag {
	switch {
	case errors.Is(err, h1.ErrConnectFailure):
		return telemetry.FlagConnectFailure
	case isTimeout(err), status == 504:
		return telemetry.FlagTimeout
	case errors.Is(err, h1.ErrPoolExhausted):
		return telemetry.FlagOverflow
	}
	return telemetry.FlagUpstreamReset
}

func (r *Router) local(st *reqState, dest *telemetry.Dest, flag telemetry.Flag, status int, reason string) h1.Decision {
	st.dest, st.flag = dest, flag
	return h1.Decision{Status: status, Reason: reason}
}

func (r *Router) decide(req Request, st *reqState) h1.Decision {
	st.wi = -1
	if p, ok := req.Conn().(PeerIdentity); ok { // inbound mesh mTLS: telemetry's source_principal
		st.peer = p.PeerPrincipal()
	}
	if req.IsConnect() {
		// The tunnel handler resolves the authority and keeps its own
		// telemetry (TCP metrics).
		return h1.Decision{Tunnel: true}
	}
	if r.tracer != nil {
		r.traceStart(req, st)
	}
	snap := r.holder.Load()
	var table *runtime.RouteTable
	var hcm *runtime.HTTPConnectionManager
	if r.hcmSrc != nil {
		if hcm = r.hcmSrc.HCM(snap, req); hcm != nil {
			table = hcm.RouteTable
			if table == nil {
				table = snap.RouteTable(hcm.RouteConfigName)
			}
		}
	} else {
		table = r.src.Table(snap, req)
	}
	if hcm != nil && hcm.HasAuth() {
		// Like Envoy's HTTP filters, authentication and authorization
		// decide before routing does (a denied request to no route is 403).
		if d, done := r.authorize(req, st, hcm, table); done {
			return d
		}
	}
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
	origin, corsOK, preflight := corsOrigin(req, rt.Cors)
	if preflight {
		if d, ok := r.corsPreflight(st, rt.Cors, origin, corsOK, rt.VirtualHost.Name); ok {
			return d
		}
	}
	var delay time.Duration
	if f := rt.Fault; f != nil {
		var abort bool
		delay, abort = f.Decide(r.rnd(), r.rnd())
		if abort && f.AbortStatus != 0 {
			// Like Envoy, an aborted request is delayed first when both apply.
			d := r.local(st, r.metrics.Dest(r.reporter, rt.ClusterName), telemetry.FlagFaultAbort, f.AbortStatus, ReasonFaultAbort)
			d.Delay = delay
			return d
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
	d := r.toCluster(req, st, c, rt, ops)
	if d.Status == 0 {
		if corsOK && !preflight {
			corsResponse(st, &d, rt.Cors, origin)
		}
		if len(rt.Mirrors) > 0 {
			r.mirror(st, &d, rt.Mirrors)
		}
		if st.trace.on {
			traceInject(st, &d)
		}
		d.Delay = delay
		if p := rt.Retry; p != nil {
			d.PerTryTimeout = p.PerTryTimeout
			if p.NumRetries > 0 {
				st.policy = p
				d.Retry = st
			}
		}
	}
	return d
}

// passthroughOps are the ops of requests forwarded without a route.
var passthroughOps = &routeOps{timeout: -1}

func (r *Router) toCluster(req Request, st *reqState, c *upstream.Cluster, rt *route.Route, ops *routeOps) h1.Decision {
	st.dest = r.metrics.Dest(r.reporter, c.Name)
	var upstreamAddr, tlsKey string
	if c.Type == clusterv3.Cluster_ORIGINAL_DST {
		upstreamAddr = r.src.Passthrough(req)
		if upstreamAddr == "" {
			return r.local(st, st.dest, telemetry.FlagNoHealthyUpstream, 503, ReasonNoHealthyUpstream)
		}
		if t := c.PassthroughTLS(); t != nil {
			tlsKey = t.Key
		}
	} else {
		var hash uint64
		var hasHash bool
		if rt != nil && len(rt.Hash) > 0 {
			hash, hasHash = rt.RequestHash(req.Header, req.RawQuery(), remoteIP(req))
		}
		st.hash, st.hasHash = hash, hasHash
		ep := c.Pick(hash, hasHash)
		if ep == nil {
			if c.Name == "BlackHoleCluster" {
				return r.local(st, st.dest, telemetry.FlagNoRoute, 502, ReasonBlackHole)
			}
			return r.local(st, st.dest, telemetry.FlagNoHealthyUpstream, 503, ReasonNoHealthyUpstream)
		}
		if t := ep.TLS; t != nil && t.Unavailable != "" {
			if r.log.Enabled(context.Background(), slog.LevelDebug) {
				r.log.Debug("upstream TLS unavailable", "cluster", c.Name, "endpoint", ep.Addr, "reason", t.Unavailable)
			}
			return r.local(st, st.dest, telemetry.FlagConnectFailure, 503, ReasonTLSUnavailable)
		}
		if !c.Acquire(upstream.Requests) {
			return r.local(st, st.dest, telemetry.FlagOverflow, 503, ReasonOverflow)
		}
		ep.Begin()
		st.cluster, st.ep, st.acquired = c, ep, true
		upstreamAddr, tlsKey = ep.Addr, ep.TLSKey()
	}
	st.addr, st.tlsKey = upstreamAddr, tlsKey
	d := h1.Decision{Upstream: upstreamAddr, UpstreamTLS: tlsKey, Timeout: ops.timeout, UpstreamProtocol: upstreamProtocol(c)}
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

// upstreamProtocol is the cluster's HTTP version: explicit HTTP/2 (gRPC and
// HTTP2 ports), the client's (use_downstream_protocol: sniffed ports;
// passthrough), else HTTP/1.1, as Envoy picks it.
func upstreamProtocol(c *upstream.Cluster) h1.UpstreamProtocol {
	switch {
	case c.HTTP2:
		return h1.UpstreamHTTP2
	case c.UseDownstreamProtocol || c.Type == clusterv3.Cluster_ORIGINAL_DST:
		return h1.UpstreamSameAsClient
	}
	return h1.UpstreamHTTP1
}

// mergeOps builds per-request header slices in st's scratch space when a
// route has add-if-absent entries or per-cluster mutations.
func (r *Router) mergeOps(req Request, st *reqState, d *h1.Decision, ops *routeOps, wi int) {
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

func (r *Router) redirect(req Request, st *reqState, red *route.Redirect) h1.Decision {
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

var (
	locationName        = []byte("location")
	wwwAuthenticateName = []byte("www-authenticate")
	rbacDeniedBody      = []byte(rbac.DeniedBody)
)

// authorize runs an inbound HCM's jwt_authn and RBAC filters. done is true
// when the request was answered locally: 401/403 from jwt_authn with
// Envoy's text, or 403 "RBAC: access denied" (response flag RBAC). It does
// no upstream work and, without a token, no allocation.
func (r *Router) authorize(req Request, st *reqState, hcm *runtime.HTTPConnectionManager, table *runtime.RouteTable) (h1.Decision, bool) {
	var md map[string]any
	if hcm.JWT != nil {
		res, fail := hcm.JWT.Verify(req, time.Now())
		if fail != nil {
			d := r.local(st, r.destFor(req, table), telemetry.FlagNone, fail.Code, ReasonJWTFailed)
			d.Body = []byte(fail.Body)
			if fail.WWWAuthenticate != "" {
				st.setResp = append(st.setResp[:0], h1.Header{Name: wwwAuthenticateName, Value: []byte(fail.WWWAuthenticate)})
				d.SetResponseHeaders = st.setResp
			}
			return d, true
		}
		md, st.jwt = res.Metadata, res
	}
	if len(hcm.RBAC) == 0 {
		return h1.Decision{}, false
	}
	in := rbac.Input{Source: remoteIP(req), Destination: r.hcmSrc.Destination(), HTTP: req, JWT: md}
	in.Remote = in.Source
	if p, ok := req.Conn().(PeerIdentity); ok {
		in.Principal, in.SNI = p.PeerPrincipal(), p.ServerName()
	}
	if rbac.Allowed(hcm.RBAC, &in, r.log) {
		return h1.Decision{}, false
	}
	st.jwt = jwtauthn.Result{}
	d := r.local(st, r.destFor(req, table), telemetry.FlagRBAC, 403, ReasonRBACDenied)
	d.Body = rbacDeniedBody
	return d, true
}

// destFor is the telemetry destination of a request answered before
// routing: the cluster of the route it would have taken.
func (r *Router) destFor(req Request, table *runtime.RouteTable) *telemetry.Dest {
	if table != nil {
		if rt := table.Select(req.Host(), req.Path(), req.Method(), req.Header, req.RawQuery()); rt != nil && rt.ClusterName != "" {
			return r.metrics.Dest(r.reporter, rt.ClusterName)
		}
	}
	return r.noRoute
}

// jwtHeaders adds jwt_authn's outputs (token removal, payload and claim
// headers) to a forwarded request's mutations, in st's scratch space.
func (r *Router) jwtHeaders(st *reqState, d *h1.Decision) {
	st.rmReq = append(st.rmReq[:0], d.RemoveRequestHeaders...)
	for _, n := range st.jwt.Remove {
		st.rmReq = append(st.rmReq, []byte(n))
	}
	st.setReq = append(st.setReq[:0], d.SetRequestHeaders...)
	for _, h := range st.jwt.Set {
		st.setReq = append(st.setReq, h1.Header{Name: []byte(h.Name), Value: []byte(h.Value)})
	}
	d.RemoveRequestHeaders, d.SetRequestHeaders = st.rmReq, st.setReq
}

func wcIndex(rt *route.Route, wc *route.WeightedCluster) int {
	for i := range rt.Weighted {
		if &rt.Weighted[i] == wc {
			return i
		}
	}
	return -1
}

func remoteIP(req Request) netip.Addr {
	if ta, ok := req.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	return netip.Addr{}
}
