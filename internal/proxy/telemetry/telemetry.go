// Package telemetry records Istio's standard metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes and the istio_tcp_* family) for weft-proxy, with
// Istio's label names so existing dashboards work unchanged.
//
// The label set is Istio's full standard set (see baseLabels). The proxy's
// own side comes from its Identity (workload, namespace, labels, SPIFFE ID);
// the peer side from what the proxy knows without a metadata-exchange
// protocol: for a source reporter the chosen endpoint's EDS metadata
// (Dest.Upstream) and the server's verified SPIFFE ID (Dest.Peer); for a
// destination reporter only the caller's verified SPIFFE ID.
//
// The hot path does not allocate: label tuples are resolved once per
// (reporter, cluster) into a Dest, variants per upstream workload and peer
// principal are cached on it, and a Dest caches the bound child metrics per
// response code (and gRPC status). Only unusual outcomes (response flags
// other than "-", codes outside 100..599, gRPC statuses with a non-200
// HTTP code) take the allocating WithLabelValues path.
package telemetry

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/workloadmeta"
)

const unknown = workloadmeta.Unknown

// Reporter says which side of a request the proxy saw.
type Reporter uint8

// Reporters, Istio's values of the reporter label.
const (
	Source      Reporter = iota // outbound: the proxy next to the client
	Destination                 // inbound: the proxy next to the server
)

func (r Reporter) String() string {
	if r == Destination {
		return "destination"
	}
	return "source"
}

// Identity is the workload this proxy runs next to.
type Identity struct {
	Workload  string
	Namespace string
	// Principal is the proxy's SPIFFE ID ("" without a workload identity):
	// the source_principal (outbound) or destination_principal (inbound)
	// of traffic secured by mesh mTLS.
	Principal string
	// Labels are the workload's labels (the node's LABELS): they give the
	// app, version, canonical service and canonical revision labels of the
	// proxy's own side (see workloadmeta.FromLabels).
	Labels map[string]string
	// Cluster is the mesh cluster id of the proxy's side ("": "unknown").
	Cluster string
}

// Flag is an Envoy response flag (the response_flags label).
type Flag uint8

// Response flags weft-proxy sets (Envoy's short names).
const (
	FlagNone              Flag = iota // "-"
	FlagNoRoute                       // NR
	FlagNoHealthyUpstream             // UH
	FlagOverflow                      // UO
	FlagConnectFailure                // UF
	FlagTimeout                       // UT
	FlagFaultAbort                    // FI
	FlagNoCluster                     // NC
	FlagUpstreamReset                 // UR
	FlagRBAC                          // RBAC: denied by an RBAC filter
)

var flagNames = [...]string{"-", "NR", "UH", "UO", "UF", "UT", "FI", "NC", "UR", "RBAC"}

func (f Flag) String() string {
	if int(f) < len(flagNames) {
		return flagNames[f]
	}
	return "-"
}

// Istio's default buckets.
var (
	durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	sizeBuckets     = []float64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}
)

// Istio's standard label set, in Istio's order. baseLabels are the
// per-destination labels a Dest resolves once; the outcome labels follow.
var baseLabels = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision", "source_workload_namespace",
	"source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service",
	"destination_canonical_service", "destination_canonical_revision",
	"destination_service_name", "destination_service_namespace", "destination_cluster",
}

// Indexes into baseLabels (and Dest.base).
const (
	lReporter = iota
	lSrcWorkload
	lSrcCanonicalService
	lSrcCanonicalRevision
	lSrcNamespace
	lSrcPrincipal
	lSrcApp
	lSrcVersion
	lSrcCluster
	lDstWorkload
	lDstNamespace
	lDstPrincipal
	lDstApp
	lDstVersion
	lDstService
	lDstCanonicalService
	lDstCanonicalRevision
	lDstServiceName
	lDstServiceNamespace
	lDstCluster
	numBase
)

var (
	// HTTP: request_protocol, response_code, grpc_response_status, response_flags, connection_security_policy.
	httpLabels = append(append([]string{}, baseLabels...), "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy")
	// TCP: Istio's TCP metrics have no response code or gRPC status.
	tcpLabels = append(append([]string{}, baseLabels...), "request_protocol", "response_flags", "connection_security_policy")
)

// maxPeers bounds the per-destination principal variants and, separately,
// the per-destination upstream workload variants (label cardinality).
const maxPeers = 256

// Metrics owns the proxy's Prometheus registry and the Istio metric families.
type Metrics struct {
	reg       *prometheus.Registry
	self      workloadmeta.Workload
	principal string // self's SPIFFE ID, "unknown" without one

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec
	tcpSent   *prometheus.CounterVec
	tcpRecv   *prometheus.CounterVec
	tcpOpen   *prometheus.CounterVec
	tcpClose  *prometheus.CounterVec

	mu    sync.Mutex
	dests [2]atomic.Pointer[map[string]*Dest] // copy-on-write per reporter
}

// New creates the metric families in a fresh registry (with Go and process
// collectors, like Envoy's server stats).
func New(self Identity) *Metrics {
	m := &Metrics{
		reg:       prometheus.NewRegistry(),
		self:      workloadmeta.FromLabels(self.Workload, self.Namespace, self.Labels, self.Cluster),
		principal: self.Principal,
	}
	if m.principal == "" {
		m.principal = unknown
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Requests handled by the proxy."}, httpLabels)
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "Request duration.", Buckets: durationBuckets}, httpLabels)
	m.reqBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_bytes", Help: "Request body sizes.", Buckets: sizeBuckets}, httpLabels)
	m.respBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_response_bytes", Help: "Response body sizes.", Buckets: sizeBuckets}, httpLabels)
	m.tcpSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_sent_bytes_total", Help: "Bytes sent to the downstream on TCP connections."}, tcpLabels)
	m.tcpRecv = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_received_bytes_total", Help: "Bytes received from the downstream on TCP connections."}, tcpLabels)
	m.tcpOpen = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_connections_opened_total", Help: "TCP connections opened."}, tcpLabels)
	m.tcpClose = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_connections_closed_total", Help: "TCP connections closed."}, tcpLabels)
	m.reg.MustRegister(m.requests, m.duration, m.reqBytes, m.respBytes, m.tcpSent, m.tcpRecv, m.tcpOpen, m.tcpClose,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	for i := range m.dests {
		empty := map[string]*Dest{}
		m.dests[i].Store(&empty)
	}
	return m
}

// Registry returns the registry (extra collectors may be added).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Dest returns the label tuple for traffic to cluster as seen by reporter.
// It does not allocate once the Dest exists.
func (m *Metrics) Dest(r Reporter, cluster string) *Dest {
	if m == nil {
		return nil
	}
	if d := (*m.dests[r].Load())[cluster]; d != nil {
		return d
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.dests[r].Load()
	if d := cur[cluster]; d != nil {
		return d
	}
	d := m.newDest(r, cluster)
	next := make(map[string]*Dest, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[cluster] = d
	m.dests[r].Store(&next)
	return d
}

// ServiceOf splits an Istio cluster name ("outbound|9080|v1|reviews.default.svc.cluster.local",
// "inbound|9080||reviews.default.svc.cluster.local") into the service host, its
// short name and namespace. Other names (PassthroughCluster) are their own service.
func ServiceOf(cluster string) (host, name, namespace string) {
	host = cluster
	if parts := strings.Split(cluster, "|"); len(parts) == 4 && parts[3] != "" {
		host = parts[3]
	}
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.Contains(host[i:], "]") {
		host = host[:i] // virtual host names carry the port
	}
	name, namespace = host, "unknown"
	if labels := strings.Split(host, "."); len(labels) >= 3 && labels[2] == "svc" {
		name, namespace = labels[0], labels[1]
	}
	return host, name, namespace
}

func (m *Metrics) newDest(r Reporter, cluster string) *Dest {
	base := make([]string, numBase)
	for i := range base {
		base[i] = unknown
	}
	base[lReporter] = r.String()
	base[lDstService], base[lDstServiceName], base[lDstServiceNamespace] = ServiceOf(cluster)
	policy := unknown // Istio's source reporter does not know the server's policy
	if r == Source {
		setSource(base, m.self)
	} else {
		// The caller is known only by its principal (Dest.Peer); a
		// plaintext connection has no policy ("none"), Peer gives the
		// mTLS variant.
		setDestination(base, m.self)
		policy = "none"
	}
	return m.destFor(r, base, policy)
}

func setSource(base []string, w workloadmeta.Workload) {
	base[lSrcWorkload], base[lSrcNamespace] = w.Name, w.Namespace
	base[lSrcApp], base[lSrcVersion] = w.App, w.Version
	base[lSrcCanonicalService], base[lSrcCanonicalRevision] = w.CanonicalService, w.CanonicalRevision
	base[lSrcCluster] = w.Cluster
}

func setDestination(base []string, w workloadmeta.Workload) {
	base[lDstWorkload], base[lDstNamespace] = w.Name, w.Namespace
	base[lDstApp], base[lDstVersion] = w.App, w.Version
	base[lDstCanonicalService], base[lDstCanonicalRevision] = w.CanonicalService, w.CanonicalRevision
	base[lDstCluster] = w.Cluster
}

func (m *Metrics) destFor(r Reporter, base []string, policy string) *Dest {
	d := &Dest{m: m, r: r, base: base, policy: policy}
	tcp := append(append(make([]string, 0, len(tcpLabels)), d.base...), "tcp", "-", policy)
	d.tcpSent = m.tcpSent.WithLabelValues(tcp...)
	d.tcpRecv = m.tcpRecv.WithLabelValues(tcp...)
	d.tcpOpen = m.tcpOpen.WithLabelValues(tcp...)
	d.tcpClose = m.tcpClose.WithLabelValues(tcp...)
	return d
}

// Dest is one resolved (reporter, destination) label tuple.
type Dest struct {
	m      *Metrics
	r      Reporter
	base   []string
	policy string
	codes  [500]atomic.Pointer[codeStats]          // index: code-100, flag "-", protocol http
	grpc   [grpcStatuses]atomic.Pointer[codeStats] // HTTP 200, flag "-", protocol grpc

	tcpSent, tcpRecv, tcpOpen, tcpClose prometheus.Counter

	peers     atomic.Pointer[map[string]*Dest] // Peer variants, copy-on-write
	upstreams atomic.Pointer[map[string]*Dest] // Upstream variants, copy-on-write
}

// grpcStatuses is the number of gRPC status codes (OK..UNAUTHENTICATED).
const grpcStatuses = 17

// variant returns (*m)[key] of a copy-on-write variant map, or builds it
// with mk under the Metrics lock. Past maxPeers variants it returns d.
func (d *Dest) variant(p *atomic.Pointer[map[string]*Dest], key string, mk func() *Dest) *Dest {
	if m := p.Load(); m != nil {
		if v := (*m)[key]; v != nil {
			return v
		}
	}
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	cur := map[string]*Dest{}
	if m := p.Load(); m != nil {
		if v := (*m)[key]; v != nil {
			return v
		}
		if len(*m) >= maxPeers {
			return d
		}
		cur = *m
	}
	v := mk()
	next := make(map[string]*Dest, len(cur)+1)
	for k, x := range cur {
		next[k] = x
	}
	next[key] = v
	p.Store(&next)
	return v
}

// Peer returns the label tuple of traffic to d's destination over mesh mTLS
// with a peer whose verified SPIFFE ID is peer, as Istio labels it: a
// destination reporter sets source_principal to the caller (and
// source_workload_namespace to the ID's namespace) and
// connection_security_policy to mutual_tls; a source reporter sets
// destination_principal to the server (and destination_workload_namespace
// when no endpoint metadata named it). The proxy's own identity fills the
// other principal. It does not allocate once the variant exists.
func (d *Dest) Peer(peer string) *Dest {
	if d == nil || peer == "" {
		return d
	}
	return d.variant(&d.peers, peer, func() *Dest {
		base := append([]string{}, d.base...)
		policy := d.policy
		ns := unknown
		if id, err := spiffe.Parse(peer); err == nil {
			ns = id.Namespace
		}
		if d.r == Destination {
			base[lSrcPrincipal], base[lDstPrincipal], policy = peer, d.m.principal, "mutual_tls"
			base[lSrcNamespace] = ns
		} else {
			base[lSrcPrincipal], base[lDstPrincipal] = d.m.principal, peer
			if base[lDstNamespace] == unknown {
				base[lDstNamespace] = ns
			}
		}
		return d.m.destFor(d.r, base, policy)
	})
}

// Upstream returns the label tuple of outbound traffic that went to an
// endpoint of workload w (from the endpoint's EDS metadata, the way
// Istio's metadata exchange would tell it): destination_workload,
// destination_workload_namespace, destination_app, destination_version,
// destination_canonical_service, destination_canonical_revision and
// destination_cluster. key identifies w's values (variants are cached by
// key; callers pass a stable string such as the raw metadata). A
// destination reporter, a nil d or w return d. It does not allocate once
// the variant exists.
func (d *Dest) Upstream(key string, w *workloadmeta.Workload) *Dest {
	if d == nil || w == nil || d.r != Source {
		return d
	}
	return d.variant(&d.upstreams, key, func() *Dest {
		base := append([]string{}, d.base...)
		setDestination(base, *w)
		return d.m.destFor(d.r, base, d.policy)
	})
}

type codeStats struct {
	requests            prometheus.Counter
	duration, req, resp prometheus.Observer
}

func (d *Dest) stats(code, grpcStatus int, flag Flag) *codeStats {
	var slot *atomic.Pointer[codeStats]
	switch {
	case flag != FlagNone:
	case grpcStatus < 0 && code >= 100 && code < 600:
		slot = &d.codes[code-100]
	case grpcStatus >= 0 && grpcStatus < grpcStatuses && code == 200:
		slot = &d.grpc[grpcStatus]
	}
	if slot != nil {
		if cs := slot.Load(); cs != nil {
			return cs
		}
	}
	proto, gs := "http", ""
	if grpcStatus >= 0 {
		proto, gs = "grpc", strconv.Itoa(grpcStatus)
	}
	labels := append(append(make([]string, 0, len(httpLabels)), d.base...), proto, strconv.Itoa(code), gs, flag.String(), d.policy)
	cs := &codeStats{
		requests: d.m.requests.WithLabelValues(labels...),
		duration: d.m.duration.WithLabelValues(labels...),
		req:      d.m.reqBytes.WithLabelValues(labels...),
		resp:     d.m.respBytes.WithLabelValues(labels...),
	}
	if slot != nil {
		slot.Store(cs)
	}
	return cs
}

// Request records one HTTP exchange (request_protocol "http",
// grpc_response_status "").
func (d *Dest) Request(code int, flag Flag, dur time.Duration, bytesIn, bytesOut int64) {
	d.record(code, -1, flag, dur, bytesIn, bytesOut)
}

// GRPC records one gRPC exchange: request_protocol "grpc" and
// grpc_response_status the status sent to the client. grpcStatus < 0 (no
// grpc-status, e.g. a reset stream) is derived from the HTTP status as
// Envoy does (GRPCFromHTTP).
func (d *Dest) GRPC(code, grpcStatus int, flag Flag, dur time.Duration, bytesIn, bytesOut int64) {
	if grpcStatus < 0 {
		grpcStatus = GRPCFromHTTP(code)
	}
	d.record(code, grpcStatus, flag, dur, bytesIn, bytesOut)
}

// GRPCFromHTTP maps an HTTP status to a gRPC status the way Envoy
// (Grpc::Utility::httpToGrpcStatus) and the gRPC spec do.
func GRPCFromHTTP(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

func (d *Dest) record(code, grpcStatus int, flag Flag, dur time.Duration, bytesIn, bytesOut int64) {
	if d == nil {
		return
	}
	cs := d.stats(code, grpcStatus, flag)
	cs.requests.Inc()
	cs.duration.Observe(float64(dur) / float64(time.Millisecond))
	cs.req.Observe(float64(bytesIn))
	cs.resp.Observe(float64(bytesOut))
}

// TCPOpened records a forwarded TCP connection being opened.
func (d *Dest) TCPOpened() {
	if d != nil {
		d.tcpOpen.Inc()
	}
}

// TCPClosed records a forwarded TCP connection's end. Istio's directions:
// "sent" is the response direction (to the downstream), "received" the
// request direction (from the downstream).
func (d *Dest) TCPClosed(toDownstream, fromDownstream int64) {
	if d == nil {
		return
	}
	d.tcpClose.Inc()
	d.tcpSent.Add(float64(toDownstream))
	d.tcpRecv.Add(float64(fromDownstream))
}
