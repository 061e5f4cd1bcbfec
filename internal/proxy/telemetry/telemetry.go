// Package telemetry records Istio's standard metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes and the istio_tcp_* family) for weft-proxy, with
// Istio's label names so existing dashboards work unchanged.
//
// The hot path does not allocate: label tuples are resolved once per
// (reporter, cluster) into a Dest, and a Dest caches the bound child metrics
// per response code. Only unusual outcomes (response flags other than "-",
// codes outside 100..599) take the allocating WithLabelValues path.
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
)

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

var httpLabels = []string{
	"reporter", "source_workload", "source_workload_namespace",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_workload", "destination_workload_namespace", "source_principal", "destination_principal",
	"response_code", "request_protocol", "response_flags", "connection_security_policy",
}

var tcpLabels = []string{
	"reporter", "source_workload", "source_workload_namespace",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_workload", "destination_workload_namespace", "source_principal", "destination_principal",
	"request_protocol", "response_flags", "connection_security_policy",
}

// Indexes into Dest.base of the labels Dest.Peer sets.
const (
	labelSourcePrincipal      = 8
	labelDestinationPrincipal = 9
)

// maxPeers bounds the per-destination principal variants (label cardinality).
const maxPeers = 256

// Metrics owns the proxy's Prometheus registry and the Istio metric families.
type Metrics struct {
	reg  *prometheus.Registry
	self Identity

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
	if self.Workload == "" {
		self.Workload = "unknown"
	}
	if self.Namespace == "" {
		self.Namespace = "unknown"
	}
	m := &Metrics{reg: prometheus.NewRegistry(), self: self}
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
	host, name, ns := ServiceOf(cluster)
	srcW, srcNS, dstW, dstNS, policy := m.self.Workload, m.self.Namespace, "unknown", "unknown", "unknown"
	if r == Destination {
		// Without peer metadata exchange the caller's workload is unknown;
		// a plaintext connection has no policy ("none"), Dest.Peer gives
		// the mTLS variant.
		srcW, srcNS, dstW, dstNS, policy = "unknown", "unknown", m.self.Workload, m.self.Namespace, "none"
	}
	return m.destFor(r, []string{r.String(), srcW, srcNS, host, name, ns, dstW, dstNS, "unknown", "unknown"}, policy)
}

func (m *Metrics) destFor(r Reporter, base []string, policy string) *Dest {
	d := &Dest{m: m, r: r, base: base, policy: policy}
	tcp := append(append([]string{}, d.base...), "tcp", "-", policy)
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
	codes  [500]atomic.Pointer[codeStats] // index: code-100, flag "-", protocol http

	tcpSent, tcpRecv, tcpOpen, tcpClose prometheus.Counter

	peers atomic.Pointer[map[string]*Dest] // Peer variants, copy-on-write
}

// Peer returns the label tuple of traffic to d's destination over mesh mTLS
// with a peer whose verified SPIFFE ID is peer, as Istio labels it: a
// destination reporter sets source_principal to the caller and
// connection_security_policy to mutual_tls; a source reporter sets
// destination_principal to the server. The proxy's own identity fills the
// other principal. It does not allocate once the variant exists.
func (d *Dest) Peer(peer string) *Dest {
	if d == nil || peer == "" {
		return d
	}
	if m := d.peers.Load(); m != nil {
		if v := (*m)[peer]; v != nil {
			return v
		}
	}
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	cur := map[string]*Dest{}
	if m := d.peers.Load(); m != nil {
		if v := (*m)[peer]; v != nil {
			return v
		}
		if len(*m) >= maxPeers {
			return d
		}
		cur = *m
	}
	self := d.m.self.Principal
	if self == "" {
		self = "unknown"
	}
	base := append([]string{}, d.base...)
	policy := d.policy
	if d.r == Destination {
		base[labelSourcePrincipal], base[labelDestinationPrincipal], policy = peer, self, "mutual_tls"
	} else {
		base[labelSourcePrincipal], base[labelDestinationPrincipal] = self, peer
	}
	v := d.m.destFor(d.r, base, policy)
	next := make(map[string]*Dest, len(cur)+1)
	for k, x := range cur {
		next[k] = x
	}
	next[peer] = v
	d.peers.Store(&next)
	return v
}

type codeStats struct {
	requests            prometheus.Counter
	duration, req, resp prometheus.Observer
}

func (d *Dest) stats(code int, flag Flag) *codeStats {
	if flag == FlagNone && code >= 100 && code < 600 {
		if cs := d.codes[code-100].Load(); cs != nil {
			return cs
		}
	}
	labels := append(append(make([]string, 0, len(httpLabels)), d.base...), strconv.Itoa(code), "http", flag.String(), d.policy)
	cs := &codeStats{
		requests: d.m.requests.WithLabelValues(labels...),
		duration: d.m.duration.WithLabelValues(labels...),
		req:      d.m.reqBytes.WithLabelValues(labels...),
		resp:     d.m.respBytes.WithLabelValues(labels...),
	}
	if flag == FlagNone && code >= 100 && code < 600 {
		d.codes[code-100].Store(cs)
	}
	return cs
}

// Request records one HTTP exchange.
func (d *Dest) Request(code int, flag Flag, dur time.Duration, bytesIn, bytesOut int64) {
	if d == nil {
		return
	}
	cs := d.stats(code, flag)
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
