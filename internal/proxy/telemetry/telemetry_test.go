package telemetry

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

func TestIstioLabelsAndNoAllocs(t *testing.T) {
	m := New(Identity{Workload: "productpage-v1", Namespace: "default"})
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
	m.Dest(Destination, "inbound|9080||reviews.default.svc.cluster.local").Request(503, FlagNoHealthyUpstream, time.Millisecond, 0, 0)
	in := m.Dest(Source, "outbound|3306||db.default.svc.cluster.local")
	in.TCPOpened()
	in.TCPClosed(100, 50)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`istio_requests_total{connection_security_policy="unknown",destination_principal="unknown",destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",destination_service_namespace="default",destination_workload="unknown",destination_workload_namespace="unknown",reporter="source",request_protocol="http",response_code="200",response_flags="-",source_principal="unknown",source_workload="productpage-v1",source_workload_namespace="default"} 1002`,
		`reporter="destination",request_protocol="http",response_code="503",response_flags="UH",source_principal="unknown",source_workload="unknown"`,
		`istio_request_duration_milliseconds_bucket{`,
		`istio_request_bytes_sum{`,
		`istio_response_bytes_count{`,
		`istio_tcp_sent_bytes_total{connection_security_policy="unknown",destination_principal="unknown",destination_service="db.default.svc.cluster.local"`,
		`istio_tcp_connections_opened_total{`,
		`istio_tcp_connections_closed_total{`,
		`istio_tcp_received_bytes_total{`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

// TestPeerPrincipals: traffic over mesh mTLS carries Istio's principal
// labels — the caller on the destination side (with mutual_tls), the server
// on the source side — without allocating once the variant exists.
func TestPeerPrincipals(t *testing.T) {
	const self, peer = "spiffe://cluster.local/ns/default/sa/productpage", "spiffe://cluster.local/ns/default/sa/reviews"
	m := New(Identity{Workload: "productpage-v1", Namespace: "default", Principal: self})
	in := m.Dest(Destination, "inbound|9080||productpage.default.svc.cluster.local")
	if in.Peer("") != in {
		t.Fatal("Peer(\"\") must be the plaintext tuple")
	}
	in.Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2)
	in.Request(200, FlagNone, time.Millisecond, 1, 2)
	in.Peer(peer).TCPOpened()
	out := m.Dest(Source, "outbound|9080||reviews.default.svc.cluster.local")
	out.Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2)
	if in.Peer(peer) != in.Peer(peer) {
		t.Fatal("variant not cached")
	}
	if n := testing.AllocsPerRun(1000, func() { in.Peer(peer).Request(200, FlagNone, time.Millisecond, 1, 2) }); n != 0 {
		t.Errorf("mTLS hot path allocates %v times", n)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`istio_requests_total{connection_security_policy="mutual_tls",destination_principal="` + self + `",destination_service="productpage.default.svc.cluster.local",destination_service_name="productpage",destination_service_namespace="default",destination_workload="productpage-v1",destination_workload_namespace="default",reporter="destination",request_protocol="http",response_code="200",response_flags="-",source_principal="` + peer + `",source_workload="unknown",source_workload_namespace="unknown"} 1002`,
		`istio_requests_total{connection_security_policy="none",destination_principal="unknown",destination_service="productpage.default.svc.cluster.local"`,
		`istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_principal="` + self + `"`,
		`istio_requests_total{connection_security_policy="unknown",destination_principal="` + peer + `",destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",destination_service_namespace="default",destination_workload="unknown",destination_workload_namespace="unknown",reporter="source",request_protocol="http",response_code="200",response_flags="-",source_principal="` + self + `"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}
