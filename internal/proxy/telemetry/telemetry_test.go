package telemetry

import (
	"slices"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/weftmesh/weft/internal/workloadmeta"
)

func TestServiceOf(t *testing.T) {
	for _, tt := range []struct{ cluster, host, name, ns string }{
		{"outbound|9080|v1|reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local", "reviews", "default"},
		{"inbound|9080||productpage.prod.svc.cluster.local", "productpage.prod.svc.cluster.local", "productpage", "prod"},
		{"outbound|443||api.example.com", "api.example.com", "api.example.com", "unknown"},
		{"PassthroughCluster", "PassthroughCluster", "PassthroughCluster", "unknown"},
		{"reviews.default.svc.cluster.local:9080", "reviews.default.svc.cluster.local", "reviews", "default"},
	} {
		h, n, ns := ServiceOf(tt.cluster)
		if h != tt.host || n != tt.name || ns != tt.ns {
			t.Errorf("ServiceOf(%q) = %q %q %q, want %q %q %q", tt.cluster, h, n, ns, tt.host, tt.name, tt.ns)
		}
	}
}

// series is one gathered sample: its labels and value (counter value or
// histogram count).
type series struct {
	labels map[string]string
	value  float64
}

func gather(t *testing.T, m *Metrics, name string) []series {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, lp := range mt.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			s.value = value(mt)
			out = append(out, s)
		}
	}
	return out
}

func value(mt *dto.Metric) float64 {
	if c := mt.GetCounter(); c != nil {
		return c.GetValue()
	}
	return float64(mt.GetHistogram().GetSampleCount())
}

// find returns the one series of name whose labels include want.
func find(t *testing.T, m *Metrics, name string, want map[string]string) series {
	t.Helper()
	var hits []series
	for _, s := range gather(t, m, name) {
		ok := true
		for k, v := range want {
			if got, present := s.labels[k]; !present || got != v {
				ok = false
				break
			}
		}
		if ok {
			hits = append(hits, s)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("%s with %v: %d series, want 1; have %v", name, want, len(hits), gather(t, m, name))
	}
	return hits[0]
}

// istioHTTPLabels is Istio's standard label set of istio_requests_total and
// the request histograms; the TCP metrics lack response_code and
// grpc_response_status.
var istioHTTPLabels = []string{
	"reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
	"source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
	"destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
	"destination_canonical_service", "destination_canonical_revision", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
}

func TestIstioLabelSet(t *testing.T) {
	m := New(Identity{Workload: "productpage-v1", Namespace: "default"})
	d := m.Dest(Source, "outbound|9080||reviews.default.svc.cluster.local")
	d.Request(200, FlagNone, time.Millisecond, 1, 2)
	d.TCPOpened()
	d.TCPClosed(1, 2)
	names := func(s series) []string {
		var n []string
		for k := range s.labels {
			n = append(n, k)
		}
		sort.Strings(n)
		return n
	}
	want := slices.Sorted(slices.Values(istioHTTPLabels))
	for _, fam := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
		if got := names(find(t, m, fam, nil)); !slices.Equal(got, want) {
			t.Errorf("%s labels = %v, want %v", fam, got, want)
		}
	}
	wantTCP := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "response_code" || s == "grpc_response_status" })
	for _, fam := range []string{"istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total", "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"} {
		if got := names(find(t, m, fam, nil)); !slices.Equal(got, wantTCP) {
			t.Errorf("%s labels = %v, want %v", fam, got, wantTCP)
		}
	}
}

func TestIstioLabelsAndNoAllocs(t *testing.T) {
	m := New(Identity{Workload: "productpage-v1", Namespace: "default", Labels: map[string]string{"app": "productpage", "version": "v1"}})
	d := m.Dest(Source, "outbound|9080|v1|reviews.default.svc.cluster.local")
	if m.Dest(Source, "outbound|9080|v1|reviews.default.svc.cluster.local") != d {
		t.Fatal("Dest not cached")
	}
	d.Request(200, FlagNone, 3*time.Millisecond, 10, 20)
	if n := testing.AllocsPerRun(1000, func() {
		m.Dest(Source, "outbound|9080|v1|reviews.default.svc.cluster.local").Request(200, FlagNone, time.Millisecond, 1, 2)
	}); n != 0 {
		t.Errorf("hot path allocates %v times", n)
	}
	m.Dest(Destination, "inbound|9080||productpage.default.svc.cluster.local").Request(503, FlagNoHealthyUpstream, time.Millisecond, 0, 0)
	tcp := m.Dest(Source, "outbound|3306||db.default.svc.cluster.local")
	tcp.TCPOpened()
	tcp.TCPClosed(100, 50)

	out := find(t, m, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "200"})
	want := map[string]string{
		"reporter": "source", "source_workload": "productpage-v1", "source_workload_namespace": "default",
		"source_principal": "unknown", "source_app": "productpage", "source_version": "v1",
		"source_canonical_service": "productpage", "source_canonical_revision": "v1", "source_cluster": "unknown",
		"destination_workload": "unknown", "destination_workload_namespace": "unknown", "destination_principal": "unknown",
		"destination_app": "unknown", "destination_version": "unknown", "destination_service": "reviews.default.svc.cluster.local",
		"destination_service_name": "reviews", "destination_service_namespace": "default",
		"destination_canonical_service": "unknown", "destination_canonical_revision": "unknown", "destination_cluster": "unknown",
		"request_protocol": "http", "response_code": "200", "grpc_response_status": "", "response_flags": "-",
		"connection_security_policy": "unknown",
	}
	if !mapsEqual(out.labels, want) || out.value != 1002 {
		t.Errorf("source series = %v %v\nwant %v 1002", out.labels, out.value, want)
	}
	in := find(t, m, "istio_requests_total", map[string]string{"reporter": "destination"})
	for k, v := range map[string]string{
		"response_code": "503", "response_flags": "UH", "connection_security_policy": "none",
		"destination_workload": "productpage-v1", "destination_app": "productpage", "destination_version": "v1",
		"destination_canonical_service": "productpage", "destination_canonical_revision": "v1",
		"source_workload": "unknown", "source_app": "unknown", "source_version": "unknown", "source_principal": "unknown",
	} {
		if in.labels[k] != v {
			t.Errorf("destination series %s = %q, want %q", k, in.labels[k], v)
		}
	}
	if s := find(t, m, "istio_tcp_sent_bytes_total", map[string]string{"destination_service_name": "db"}); s.value != 100 || s.labels["request_protocol"] != "tcp" {
		t.Errorf("tcp sent = %v %v", s.value, s.labels)
	}
	if s := find(t, m, "istio_tcp_received_bytes_total", map[string]string{"destination_service_name": "db"}); s.value != 50 {
		t.Errorf("tcp received = %v", s.value)
	}
	find(t, m, "istio_request_duration_milliseconds", map[string]string{"response_code": "200"})
	find(t, m, "istio_tcp_connections_opened_total", map[string]string{"destination_service_name": "db"})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCanonicalDefaults: without app/version labels Istio's defaults apply
// (canonical service = workload name, canonical revision = latest).
func TestCanonicalDefaults(t *testing.T) {
	m := New(Identity{Workload: "batch", Namespace: "jobs", Cluster: "east"})
	m.Dest(Source, "outbound|80||api.example.com").Request(200, FlagNone, 0, 0, 0)
	s := find(t, m, "istio_requests_total", nil)
	for k, v := range map[string]string{
		"source_canonical_service": "batch", "source_canonical_revision": "latest", "source_app": "unknown",
		"source_version": "unknown", "source_cluster": "east", "destination_service_namespace": "unknown",
	} {
		if s.labels[k] != v {
			t.Errorf("%s = %q, want %q", k, s.labels[k], v)
		}
	}
}

// TestPeerPrincipals: traffic over mesh mTLS carries Istio's principal
// labels — the caller on the destination side (with mutual_tls and the
// caller's namespace from its SPIFFE ID), the server on the source side —
// without allocating once the variant exists.
func TestPeerPrincipals(t *testing.T) {
	const self, peer = "spiffe://cluster.local/ns/default/sa/productpage", "spiffe://cluster.local/ns/shop/sa/reviews"
	m := New(Identity{Workload: "productpage-v1", Namespace: "default", Principal: self})
	in := m.Dest(Destination, "inbound|9080||productpage.default.svc.cluster.local")
	if in.Peer("") != in {
		t.Fatal("Peer(\"\") must be the plaintext tuple")
	}
	in.Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2)
	in.Request(200, FlagNone, time.Millisecond, 1, 2)
	in.Peer(peer).TCPOpened()
	out := m.Dest(Source, "outbound|9080||reviews.shop.svc.cluster.local")
	out.Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2)
	if in.Peer(peer) != in.Peer(peer) {
		t.Fatal("variant not cached")
	}
	if n := testing.AllocsPerRun(1000, func() { in.Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2) }); n != 0 {
		t.Errorf("mTLS hot path allocates %v times", n)
	}
	s := find(t, m, "istio_requests_total", map[string]string{"reporter": "destination", "connection_security_policy": "mutual_tls"})
	for k, v := range map[string]string{
		"source_principal": peer, "source_workload_namespace": "shop", "source_workload": "unknown", "source_app": "unknown",
		"destination_principal": self, "destination_workload": "productpage-v1",
	} {
		if s.labels[k] != v {
			t.Errorf("inbound mTLS %s = %q, want %q", k, s.labels[k], v)
		}
	}
	if s.value != 1002 {
		t.Errorf("inbound mTLS count = %v, want 1002", s.value)
	}
	find(t, m, "istio_requests_total", map[string]string{"reporter": "destination", "connection_security_policy": "none", "source_principal": "unknown", "destination_principal": "unknown"})
	find(t, m, "istio_tcp_connections_opened_total", map[string]string{"connection_security_policy": "mutual_tls", "destination_principal": self})
	s = find(t, m, "istio_requests_total", map[string]string{"reporter": "source"})
	for k, v := range map[string]string{
		"destination_principal": peer, "source_principal": self, "connection_security_policy": "unknown",
		"destination_workload_namespace": "shop", "destination_workload": "unknown",
	} {
		if s.labels[k] != v {
			t.Errorf("outbound mTLS %s = %q, want %q", k, s.labels[k], v)
		}
	}
}

// TestUpstreamWorkload: a source reporter labels the destination side from
// the chosen endpoint's workload metadata, one cached variant per workload
// (and per principal on top), without allocating once it exists.
func TestUpstreamWorkload(t *testing.T) {
	m := New(Identity{Workload: "productpage-v1", Namespace: "default", Principal: "spiffe://cluster.local/ns/default/sa/productpage"})
	d := m.Dest(Source, "outbound|9080||reviews.default.svc.cluster.local")
	v1, _ := workloadmeta.Parse("reviews-v1;default;reviews;v1;", "reviews", "v1")
	v2, _ := workloadmeta.Parse("reviews-v2;default;reviews;v2;", "reviews", "v2")
	const peer = "spiffe://cluster.local/ns/default/sa/reviews"
	d.Upstream("v1", &v1).Request(200, FlagNone, time.Millisecond, 1, 2)
	d.Upstream("v2", &v2).Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2)
	d.Upstream("v2", &v2).Request(503, FlagNone, time.Millisecond, 1, 2)
	if d.Upstream("v2", &v2) != d.Upstream("v2", &v2) || d.Upstream("v1", &v1) == d.Upstream("v2", &v2) {
		t.Fatal("upstream variants not cached per key")
	}
	if d.Upstream("x", nil) != d {
		t.Error("Upstream(nil) must be d")
	}
	in := m.Dest(Destination, "inbound|9080||productpage.default.svc.cluster.local")
	if in.Upstream("v2", &v2) != in {
		t.Error("a destination reporter must ignore upstream workloads (it is the destination)")
	}
	if n := testing.AllocsPerRun(1000, func() {
		d.Upstream("v2", &v2).Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2)
	}); n != 0 {
		t.Errorf("upstream hot path allocates %v times", n)
	}
	s := find(t, m, "istio_requests_total", map[string]string{"destination_version": "v2", "response_code": "200"})
	for k, v := range map[string]string{
		"reporter": "source", "destination_workload": "reviews-v2", "destination_workload_namespace": "default",
		"destination_app": "reviews", "destination_canonical_service": "reviews", "destination_canonical_revision": "v2",
		"destination_cluster": "unknown", "destination_principal": peer, "destination_service_name": "reviews",
	} {
		if s.labels[k] != v {
			t.Errorf("v2 series %s = %q, want %q", k, s.labels[k], v)
		}
	}
	if s.value != 1002 {
		t.Errorf("v2 count = %v, want 1002", s.value)
	}
	find(t, m, "istio_requests_total", map[string]string{"destination_version": "v1", "destination_workload": "reviews-v1", "destination_principal": "unknown"})
	find(t, m, "istio_requests_total", map[string]string{"destination_version": "v2", "response_code": "503", "destination_principal": "unknown"})
}

// TestGRPC: gRPC requests carry request_protocol grpc and the gRPC status;
// a missing status is derived from the HTTP status as Envoy does.
func TestGRPC(t *testing.T) {
	m := New(Identity{Workload: "client", Namespace: "default"})
	d := m.Dest(Source, "outbound|50051||greeter.default.svc.cluster.local")
	d.GRPC(200, 0, FlagNone, time.Millisecond, 1, 2)
	d.GRPC(200, 5, FlagNone, time.Millisecond, 1, 2)
	d.GRPC(503, -1, FlagNoHealthyUpstream, time.Millisecond, 0, 0)
	d.Request(200, FlagNone, time.Millisecond, 1, 2)
	if n := testing.AllocsPerRun(1000, func() { d.GRPC(200, 5, FlagNone, time.Millisecond, 1, 2) }); n != 0 {
		t.Errorf("gRPC hot path allocates %v times", n)
	}
	if s := find(t, m, "istio_requests_total", map[string]string{"request_protocol": "grpc", "grpc_response_status": "0"}); s.value != 1 || s.labels["response_code"] != "200" {
		t.Errorf("grpc OK = %v %v", s.value, s.labels)
	}
	if s := find(t, m, "istio_requests_total", map[string]string{"request_protocol": "grpc", "grpc_response_status": "5"}); s.value != 1002 { // one before, 1001 in AllocsPerRun (a warm-up run included)
		t.Errorf("grpc NOT_FOUND count = %v, want 1002", s.value)
	}
	find(t, m, "istio_requests_total", map[string]string{"request_protocol": "grpc", "grpc_response_status": "14", "response_code": "503", "response_flags": "UH"})
	find(t, m, "istio_requests_total", map[string]string{"request_protocol": "http", "grpc_response_status": "", "response_code": "200"})
	for code, want := range map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 500: 2, 200: 2} {
		if got := GRPCFromHTTP(code); got != want {
			t.Errorf("GRPCFromHTTP(%d) = %d, want %d", code, got, want)
		}
	}
}
