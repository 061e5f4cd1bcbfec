package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
	}{
		{"empty", 0.5, map[float64]float64{}, 0},
		{"no observations", 0.5, map[float64]float64{1: 0, inf: 0}, 0},
		{"interpolated in the first bucket", 0.5, map[float64]float64{10: 100, inf: 100}, 5},
		{"interpolated in a middle bucket", 0.5, map[float64]float64{1: 20, 5: 60, 10: 100, inf: 100}, 4},
		{"rank on a bucket edge", 0.2, map[float64]float64{1: 20, 5: 100, inf: 100}, 1},
		{"above the highest finite bucket", 0.99, map[float64]float64{1: 10, 5: 10, inf: 100}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := histogramQuantile(tc.q, tc.buckets); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("histogramQuantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// istioMetrics renders what a weft-proxy serves on /stats/prometheus for
// the given requests, in the Prometheus text format.
type istioMetrics struct{ b strings.Builder }

func (m *istioMetrics) labels(reporter, src, dst, dstWorkload, code, flags, policy, proto string) string {
	return fmt.Sprintf(`connection_security_policy=%q,destination_service=%q,destination_workload=%q,reporter=%q,request_protocol=%q,response_code=%q,response_flags=%q,source_workload=%q`,
		policy, dst, dstWorkload, reporter, proto, code, flags, src)
}

// requests adds n requests with every duration in the bucket ending at le ms.
func (m *istioMetrics) requests(n int, le float64, reporter, src, dst, dstWorkload, code, flags, policy string) {
	l := m.labels(reporter, src, dst, dstWorkload, code, flags, policy, "http")
	fmt.Fprintf(&m.b, "istio_requests_total{%s} %d\n", l, n)
	for _, b := range []float64{1, 5, 10, 1000, 2500} {
		c := 0
		if b >= le {
			c = n
		}
		fmt.Fprintf(&m.b, "istio_request_duration_milliseconds_bucket{%s,le=%q} %d\n", l, fmt.Sprint(b), c)
	}
	fmt.Fprintf(&m.b, "istio_request_duration_milliseconds_bucket{%s,le=\"+Inf\"} %d\n", l, n)
	fmt.Fprintf(&m.b, "istio_request_duration_milliseconds_sum{%s} %v\n", l, float64(n)*le)
	fmt.Fprintf(&m.b, "istio_request_duration_milliseconds_count{%s} %d\n", l, n)
}

func (m *istioMetrics) conns(n int, reporter, src, dst, dstWorkload, policy string) {
	l := strings.Replace(m.labels(reporter, src, dst, dstWorkload, "", "-", policy, "tcp"), `response_code="",`, "", 1)
	fmt.Fprintf(&m.b, "istio_tcp_connections_opened_total{%s} %d\n", l, n)
}

func (m *istioMetrics) String() string {
	return "# TYPE istio_requests_total counter\n# TYPE istio_request_duration_milliseconds histogram\n# TYPE istio_tcp_connections_opened_total counter\n" + m.b.String()
}

// scrapes serves each body in turn (the last one from then on), as a proxy
// whose counters grew between scrapes.
func scrapes(t *testing.T, bodies ...string) string {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/prometheus" {
			http.NotFound(w, r)
			return
		}
		i := min(int(n.Add(1))-1, len(bodies)-1)
		fmt.Fprint(w, bodies[i])
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

const (
	frontendSvc = "frontend.shop.svc.cluster.local"
	backendSvc  = "backend.shop.svc.cluster.local"
	ratingsSvc  = "ratings.shop.svc.cluster.local"
)

// shopScrapes: loadgen's proxy and frontend's proxy (which reports both
// its inbound and its outbound calls), and the two backends, at two times.
// Between them: loadgen sent 100 requests (90 fast, 10 timed out); frontend
// called backend 100 times (v1 answered 60, v2 30, the mesh aborted 10) and
// ratings 100 times; every inbound hop was mTLS except 10 plaintext
// requests to backend v1.
func shopScrapes(t *testing.T) []string {
	t.Helper()
	var before, after [4]istioMetrics
	// Before: a little traffic that must not show in the frame.
	before[0].requests(5, 5, "source", "loadgen", frontendSvc, "unknown", "200", "-", "unknown")
	before[1].requests(5, 5, "destination", "unknown", frontendSvc, "frontend", "200", "-", "mutual_tls")
	before[1].requests(5, 1, "source", "frontend", backendSvc, "unknown", "200", "-", "unknown")
	before[1].conns(5, "source", "frontend", ratingsSvc, "unknown", "unknown")
	before[2].requests(5, 1, "destination", "unknown", backendSvc, "backend-v1", "200", "-", "mutual_tls")

	after[0].requests(95, 5, "source", "loadgen", frontendSvc, "unknown", "200", "-", "unknown")
	after[0].requests(10, 2500, "source", "loadgen", frontendSvc, "unknown", "504", "-", "unknown")
	after[1].requests(95, 5, "destination", "unknown", frontendSvc, "frontend", "200", "-", "mutual_tls")
	after[1].requests(10, 2500, "destination", "unknown", frontendSvc, "frontend", "504", "-", "mutual_tls")
	after[1].requests(95, 1, "source", "frontend", backendSvc, "unknown", "200", "-", "unknown")
	after[1].requests(10, 1, "source", "frontend", backendSvc, "unknown", "500", "FI", "unknown")
	after[1].conns(105, "source", "frontend", ratingsSvc, "unknown", "unknown")
	after[2].requests(55, 1, "destination", "unknown", backendSvc, "backend-v1", "200", "-", "mutual_tls")
	after[2].requests(10, 1, "destination", "unknown", backendSvc, "backend-v1", "200", "-", "none")
	after[3].requests(30, 1, "destination", "unknown", backendSvc, "backend-v2", "200", "-", "mutual_tls")
	after[3].requests(15, 1, "destination", "unknown", backendSvc, "backend-v2", "503", "-", "mutual_tls")
	after[3].conns(0, "destination", "unknown", ratingsSvc, "ratings-host", "mutual_tls") // a pre-created family
	addrs := make([]string, 4)
	for i := range addrs {
		addrs[i] = scrapes(t, before[i].String(), after[i].String())
	}
	return addrs
}

func TestTopTable(t *testing.T) {
	addrs := shopScrapes(t)
	var out, errb bytes.Buffer
	code := Run([]string{"top", "--proxies", strings.Join(addrs, ",") + ",127.0.0.1:1", "--count", "1", "--interval", "10ms"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("weftctl top: exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header, a column line and 3 routes, got:\n%s", out.String())
	}
	if !strings.Contains(lines[0], "4 proxies (unreachable: 127.0.0.1:1)") || !strings.Contains(lines[0], "last ") {
		t.Errorf("header: %q", lines[0])
	}
	for i, want := range [][]string{
		{"ROUTE", "PROTO", "REQS", "RPS", "OK", "P50", "P99", "ERRORS", "ANSWERED BY", "MTLS"},
		// 100 requests, 90 answered (v1 60, v2 30: shares from the backends' proxies); 10 of 105 inbound requests plaintext.
		{"frontend -> backend.shop", "http", "100", "90.0%", "0.5ms", "1.0ms", "500 FI:10", "backend-v1 67% backend-v2 33%", "90%"},
		{"frontend -> ratings.shop", "tcp", "100 conn", "-", "-", "-", "-", "?"},
		// p99 of 90 fast and 10 timed-out requests lands in the 1000-2500 bucket.
		{"loadgen -> frontend.shop", "http", "100", "90.0%", "3.2ms", "2.4s", "504:10", "frontend 100%", "on"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
}

func TestTopJSONCumulative(t *testing.T) {
	addrs := shopScrapes(t)
	for range 2 { // move every proxy to its second scrape: --cumulative shows totals
		for _, a := range addrs {
			resp, err := http.Get("http://" + a + "/stats/prometheus")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	var out, errb bytes.Buffer
	if code := Run([]string{"top", "--proxies", strings.Join(addrs, ","), "--count", "1", "--cumulative", "-o", "json"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rows []TopRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rows) != 3 {
		t.Fatalf("rows: %+v", rows)
	}
	lg := rows[2]
	if lg.Source != "loadgen" || lg.Destination != frontendSvc || lg.Requests != 105 || lg.PerSecond != 0 || math.Abs(lg.OK-95.0/105) > 1e-9 ||
		lg.Errors["504"] != 10 || lg.MTLS != 1 || lg.AnsweredBy["frontend"] != 1 {
		t.Errorf("loadgen row: %+v", lg)
	}
	if r := rows[1]; r.Protocol != "tcp" || r.Requests != 105 || r.OK != -1 || r.MTLS != -1 {
		t.Errorf("ratings row: %+v", r)
	}
}

func TestTopUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run([]string{"top", "-o", "yaml", "--proxies", "127.0.0.1:1"}, nil, &out, &errb); code != 2 {
		t.Fatalf("-o yaml: exit %d, want 2 (%s)", code, errb.String())
	}
}

// TestTopAnsweredByVersion: with the full Istio label set from real
// weft-proxy telemetry, ANSWERED BY names the destination's version
// (destination_version, from the backend proxies' own labels); a workload
// without a version label is named by its workload.
func TestTopAnsweredByVersion(t *testing.T) {
	const inbound, outbound = "inbound|8080||" + backendSvc, "outbound|8080||" + backendSvc
	proxy := func(id telemetry.Identity, r telemetry.Reporter, cluster string, n int) string {
		m := telemetry.New(id)
		for range n {
			m.Dest(r, cluster).Request(200, telemetry.FlagNone, time.Millisecond, 0, 0)
		}
		srv := httptest.NewServer(m.Handler())
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	addrs := []string{
		proxy(telemetry.Identity{Workload: "frontend", Namespace: "shop"}, telemetry.Source, outbound, 100),
		proxy(telemetry.Identity{Workload: "backend-v1", Namespace: "shop", Labels: map[string]string{"app": "backend", "version": "v1"}}, telemetry.Destination, inbound, 50),
		proxy(telemetry.Identity{Workload: "backend-v2", Namespace: "shop", Labels: map[string]string{"app": "backend", "version": "v2"}}, telemetry.Destination, inbound, 30),
		proxy(telemetry.Identity{Workload: "backend-canary", Namespace: "shop", Labels: map[string]string{"app": "backend"}}, telemetry.Destination, inbound, 20),
	}
	var out, errb bytes.Buffer
	if code := Run([]string{"top", "--proxies", strings.Join(addrs, ","), "--count", "1", "--cumulative", "-o", "json"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rows []TopRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rows) != 1 {
		t.Fatalf("rows: %+v", rows)
	}
	want := map[string]float64{"v1": 0.5, "v2": 0.3, "backend-canary": 0.2}
	got := rows[0].AnsweredBy
	if len(got) != len(want) {
		t.Fatalf("answered by %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("answered by %v, want %v", got, want)
		}
	}
}

// A route with no requests in the window is left out of the live view
// (e.g. a few early calls that went nowhere); --cumulative still lists it.
func TestTopHidesIdleRoutes(t *testing.T) {
	var m istioMetrics
	m.requests(3, 1, "source", "loadgen", "PassthroughCluster", "unknown", "404", "NR", "unknown")
	addr := scrapes(t, m.String(), m.String())
	var out, errb bytes.Buffer
	if code := Run([]string{"top", "--proxies", addr, "--count", "1", "--interval", "10ms"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), "PassthroughCluster") {
		t.Fatalf("idle route shown in the live view:\n%s", out.String())
	}
	out.Reset()
	if code := Run([]string{"top", "--proxies", addr, "--count", "1", "--cumulative"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "loadgen -> PassthroughCluster") {
		t.Fatalf("--cumulative lost the route:\n%s", out.String())
	}
}
