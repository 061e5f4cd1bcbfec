package router_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/router"
	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

const host = "reviews.default.svc.cluster.local"

var (
	v1Name = "outbound|9080|v1|" + host
	v2Name = "outbound|9080|v2|" + host
)

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func edsCluster(name string, maxReq uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRequests: wrapperspb.UInt32(maxReq),
		}}},
	}
}

func cla(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		h, p, _ := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

func toCluster(name string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// snapshot is shaped like weftd's output for reviews (RDS "9080").
func snapshot(t testing.TB, v1, v2 string) *wrt.Holder {
	t.Helper()
	abort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
		ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: 418},
		Percentage: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
	}}
	_ = faultcommonv3.FaultDelay{}
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{
		Name:    host + ":9080",
		Domains: []string{host, host + ":9080"},
		Routes: []*routev3.Route{
			{Match: prefix("/redirect"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				HostRedirect: "example.com", ResponseCode: routev3.RedirectAction_FOUND}}},
			{Match: prefix("/direct"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "hello"}}}}},
			{Match: prefix("/abort"), Action: toCluster(v1Name),
				TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(abort)}},
			{Match: prefix("/missing"), Action: toCluster("outbound|9080|nope|" + host)},
			{Match: prefix("/api/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: v1Name},
				PrefixRewrite:        "/v2/",
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "rewritten.local"},
				Timeout:              durationpb.New(2 * time.Second),
			}},
				RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "yes"}}},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-resp", Value: "r"},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
			},
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}}},
				// Istio's default outbound retry policy: the happy path
				// carries a Retrier and must still not allocate.
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: v2Name},
					RetryPolicy:      istioRetry("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", 2, 0),
				}}},
			{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
				WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: v1Name, Weight: wrapperspb.UInt32(80)},
					{Name: v2Name, Weight: wrapperspb.UInt32(20), RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-subset", Value: "v2"}}}},
				}}}}}},
		},
	}}}
	s, err := wrt.Build(nil, edsCluster(v1Name, 1024), edsCluster(v2Name, 1024),
		withWorkload(cla(v1Name, v1), "v1"), withWorkload(cla(v2Name, v2), "v2"), rc)
	if err != nil {
		t.Fatal(err)
	}
	return wrt.NewHolder(s)
}

// withWorkload gives every endpoint the workload metadata weftd sends for
// the reviews-<version> WorkloadEntry (app=reviews, version=<version>).
func withWorkload(c *endpointv3.ClusterLoadAssignment, version string) *endpointv3.ClusterLoadAssignment {
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		"workload": structpb.NewStringValue("reviews-" + version + ";default;reviews;" + version + ";"),
		"app":      structpb.NewStringValue("reviews"),
		"version":  structpb.NewStringValue(version),
	}}
	for _, l := range c.Endpoints {
		for _, e := range l.LbEndpoints {
			e.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": md}}
		}
	}
	return c
}

type portSource struct{}

func (portSource) Table(s *wrt.Snapshot, req router.Request) *wrt.RouteTable {
	return s.RouteTable("9080")
}
func (portSource) Passthrough(req router.Request) string { return string(req.Host()) }

// backend answers with its name, the path and the headers the tests look at.
func backend(t testing.TB, name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s host=%s added=%s subset=%s", name, r.URL.Path, r.Host, r.Header.Get("x-added"), r.Header.Get("x-subset"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func serve(t testing.TB, h *wrt.Holder, m *telemetry.Metrics) string {
	rt := router.New(router.Config{Holder: h, Source: portSource{}, Metrics: m})
	srv, err := h1.NewServer(h1.Config{Router: rt, Observer: rt})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestRoute(t *testing.T) {
	h := snapshot(t, backend(t, "v1"), backend(t, "v2"))
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	addr := serve(t, h, m)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	do := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req := "GET " + path + " HTTP/1.1\r\nHost: " + host + ":9080\r\n"
		for _, h := range hdr {
			req += h + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	tests := []struct {
		name, path string
		hdr        []string
		status     int
		body       string // prefix
		header     [2]string
	}{
		{"redirect", "/redirect/a?q=1", nil, 302, "", [2]string{"Location", "http://example.com/redirect/a?q=1"}},
		{"direct response", "/direct", nil, 200, "hello", [2]string{}},
		{"fault abort", "/abort", nil, 418, "", [2]string{"X-Weft-Reason", router.ReasonFaultAbort}},
		{"cluster not found", "/missing", nil, 503, "", [2]string{"X-Weft-Reason", router.ReasonClusterNotFound}},
		{"rewrites and headers", "/api/items", nil, 200, "v1 /v2/items host=rewritten.local added=yes", [2]string{"X-Resp", "r"}},
		{"header match", "/x", []string{"end-user: jason"}, 200, "v2 /x host=" + host + ":9080 added= subset=", [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(tt.path, tt.hdr...)
			if resp.StatusCode != tt.status || !strings.HasPrefix(body, tt.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if tt.header[0] != "" && resp.Header.Get(tt.header[0]) != tt.header[1] {
				t.Fatalf("%s = %q, want %q", tt.header[0], resp.Header.Get(tt.header[0]), tt.header[1])
			}
		})
	}
	got := map[string]int{}
	t.Run("weighted 80/20", func(t *testing.T) {
		for i := 0; i < 1000; i++ {
			_, body := do("/w")
			v := strings.Fields(body)[0]
			got[v]++
			if (v == "v2") != strings.HasSuffix(body, "subset=v2") {
				t.Fatalf("per-cluster header mutation: %q", body)
			}
		}
		if got["v2"] < 140 || got["v2"] > 260 {
			t.Fatalf("split %v", got)
		}
	})
	// The source reporter labels each answer with the workload of the
	// endpoint that gave it (EDS metadata): the v2 subset's requests (the
	// header match and the weighted share) are destination_version="v2".
	t.Run("destination workload labels", func(t *testing.T) {
		for _, v := range []string{"v1", "v2"} {
			var n float64
			for _, l := range outboundSeries(t, m) {
				if l.labels["destination_version"] == v {
					n += l.value
					for k, want := range map[string]string{
						"destination_workload": "reviews-" + v, "destination_app": "reviews",
						"destination_canonical_service": "reviews", "destination_canonical_revision": v,
						"destination_workload_namespace": "default", "source_workload": "productpage-v1",
						"destination_service_name": "reviews", "response_code": "200",
					} {
						if l.labels[k] != want {
							t.Errorf("%s series: %s = %q, want %q", v, k, l.labels[k], want)
						}
					}
				}
			}
			// Plus one each: the header match (v2) and the rewrite (v1);
			// the fault abort never reached an endpoint.
			want := got[v] + 1
			if int(n) != want {
				t.Errorf("destination_version=%q requests = %v, want %d", v, n, want)
			}
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: other.local\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 404 || resp.Header.Get("X-Weft-Reason") != router.ReasonRouteNotFound {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("X-Weft-Reason"))
		}
	})
}

type labeled struct {
	labels map[string]string
	value  float64
}

// outboundSeries returns the source reporter's istio_requests_total series.
func outboundSeries(t *testing.T, m *telemetry.Metrics) []labeled {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []labeled
	for _, mf := range mfs {
		if mf.GetName() != "istio_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := labeled{labels: map[string]string{}, value: mt.GetCounter().GetValue()}
			for _, lp := range mt.GetLabel() {
				l.labels[lp.GetName()] = lp.GetValue()
			}
			if l.labels["reporter"] == "source" {
				out = append(out, l)
			}
		}
	}
	return out
}

func TestNoHealthyUpstreamAndOverflow(t *testing.T) {
	// v1 has no endpoints: 503 no_healthy_upstream. v2 allows 0 requests.
	s, err := wrt.Build(nil, edsCluster(v1Name, 1024), edsCluster(v2Name, 0), cla(v1Name), cla(v2Name, "127.0.0.1:1"),
		&routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "r", Domains: []string{"*"}, Routes: []*routev3.Route{
			{Match: prefix("/v2"), Action: toCluster(v2Name)},
			{Match: prefix("/"), Action: toCluster(v1Name)},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, wrt.NewHolder(s), nil)
	for path, want := range map[string]string{"/": router.ReasonNoHealthyUpstream, "/v2": router.ReasonOverflow} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Reason") != want {
			t.Errorf("%s: %d %q, want 503 %s", path, resp.StatusCode, resp.Header.Get("X-Weft-Reason"), want)
		}
	}
}

// rawUpstream answers every request with a fixed body without allocating.
func rawUpstream(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:n])
						n -= i + 4
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type rawClient struct {
	c   net.Conn
	buf []byte
	req []byte
}

func (rc *rawClient) roundTrip(t testing.TB) {
	if _, err := rc.c.Write(rc.req); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m, err := rc.c.Read(rc.buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
		if i := bytes.Index(rc.buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+5 {
			if !bytes.HasPrefix(rc.buf, []byte("HTTP/1.1 200")) {
				t.Fatalf("%q", rc.buf[:n])
			}
			return
		}
	}
}

func newRawClient(t testing.TB, addr, path string) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{c: c, buf: make([]byte, 16<<10),
		req: []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + ":9080\r\nUser-Agent: bench\r\nEnd-User: jason\r\n\r\n")}
}

// TestHappyPathAllocations drives keep-alive requests through router +
// telemetry + h1 and counts heap allocations in the whole process.
func TestHappyPathAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	up := rawUpstream(t)
	h := snapshot(t, up, up)
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	rc := newRawClient(t, serve(t, h, m), "/reviews/1")
	for i := 0; i < 200; i++ {
		rc.roundTrip(t)
	}
	const n = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		rc.roundTrip(t)
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.3f allocations per request (route, pick, circuit breaker, telemetry, h1)", per)
	if per > 0.5 {
		t.Errorf("happy path allocates %.2f times per request, want ~0", per)
	}
}

// BenchmarkRoundTrip: one keep-alive GET through router + telemetry + h1.
func BenchmarkRoundTrip(b *testing.B) {
	up := rawUpstream(b)
	h := snapshot(b, up, up)
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	rc := newRawClient(b, serve(b, h, m), "/reviews/1")
	for i := 0; i < 200; i++ {
		rc.roundTrip(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc.roundTrip(b)
	}
}
