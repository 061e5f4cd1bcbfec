package health

import (
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestHTTPProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		// Off-host redirect: not followed, 302 counts as success.
		http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
	})
	mux.HandleFunc("/local-redirect", func(w http.ResponseWriter, r *http.Request) {
		// Same-host redirect: followed, the target's status counts.
		http.Redirect(w, r, "/fail", http.StatusFound)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database down", http.StatusInternalServerError)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	port := serverPort(t, srv)
	refused := closedPort(t)

	tests := []struct {
		name    string
		get     HTTPGet
		timeout time.Duration
		wantErr string // empty: success
	}{
		{"200", HTTPGet{Path: "/ok", Port: port}, 0, ""},
		{"path without slash", HTTPGet{Path: "ok", Port: port}, 0, ""},
		{"302 off-host", HTTPGet{Path: "/moved", Port: port}, 0, ""},
		{"redirect followed on same host", HTTPGet{Path: "/local-redirect", Port: port}, 0, "status 500"},
		{"500", HTTPGet{Path: "/fail", Port: port}, 0, `/fail: status 500: "database down"`},
		{"404", HTTPGet{Path: "/nope", Port: port}, 0, "status 404"},
		{"timeout", HTTPGet{Path: "/slow", Port: port}, 200 * time.Millisecond, "/slow: timeout after 200ms"},
		{"connection refused", HTTPGet{Port: refused}, 0, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			get := tt.get
			start := time.Now()
			err := checkOnce(t, Probe{HTTPGet: &get, Timeout: tt.timeout})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("probe failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("probe error = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.timeout > 0 && time.Since(start) > 5*tt.timeout+time.Second {
				t.Errorf("probe took %v with timeout %v", time.Since(start), tt.timeout)
			}
		})
	}
}

func TestHTTPProbeSendsHeaders(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Clone(r.Context())
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	err := checkOnce(t, Probe{HTTPGet: &HTTPGet{Path: "/healthz?verbose=1", Port: serverPort(t, srv), Headers: []Header{
		{"X-Custom", "a"}, {"X-Custom", "b"}, {"Host", "app.example"}, {"User-Agent", "mine"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Method != http.MethodGet || got.URL.Path != "/healthz" || got.URL.RawQuery != "verbose=1" {
		t.Errorf("request = %s %s", got.Method, got.URL)
	}
	if v := got.Header.Values("X-Custom"); len(v) != 2 || v[0] != "a" || v[1] != "b" {
		t.Errorf("X-Custom = %q, want [a b]", v)
	}
	if got.Host != "app.example" {
		t.Errorf("Host = %q, want app.example", got.Host)
	}
	if ua := got.Header.Values("User-Agent"); len(ua) != 1 || ua[0] != "mine" {
		t.Errorf("User-Agent = %q, want the probe's [mine]", ua)
	}
	if a := got.Header.Get("Accept"); a != "*/*" {
		t.Errorf("Accept = %q, want */*", a)
	}
}

func TestHTTPSProbeAcceptsSelfSigned(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	if err := checkOnce(t, Probe{HTTPGet: &HTTPGet{Port: serverPort(t, srv), Scheme: "HTTPS"}}); err != nil {
		t.Fatalf("https probe against self-signed server: %v", err)
	}
	// The same port over plain HTTP gets a 400 from the TLS server.
	if err := checkOnce(t, Probe{HTTPGet: &HTTPGet{Port: serverPort(t, srv)}}); err == nil {
		t.Fatal("plain http probe against a TLS server succeeded")
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := checkOnce(t, Probe{TCPSocket: &TCPSocket{Port: ln.Addr().(*net.TCPAddr).Port}}); err != nil {
		t.Errorf("open port: %v", err)
	}
	port := closedPort(t)
	err = checkOnce(t, Probe{TCPSocket: &TCPSocket{Port: port}})
	if err == nil || !strings.Contains(err.Error(), "tcp probe: connect 127.0.0.1:") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: err = %v", err)
	}
}

func TestGRPCProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := grpchealth.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	port := ln.Addr().(*net.TCPAddr).Port

	probe := func(service string) error {
		return checkOnce(t, Probe{GRPC: &GRPC{Port: port, Service: service}})
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	if err := probe("app"); err != nil {
		t.Errorf("SERVING: %v", err)
	}
	if err := probe(""); err != nil {
		t.Errorf("whole server SERVING: %v", err)
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := probe("app"); err == nil || !strings.Contains(err.Error(), "status NOT_SERVING") {
		t.Errorf("NOT_SERVING: err = %v", err)
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	if err := probe("app"); err != nil {
		t.Errorf("SERVING again: %v", err)
	}
	if err := probe("unknown"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown service: err = %v", err)
	}
	if err := checkOnce(t, Probe{GRPC: &GRPC{Port: closedPort(t)}}); err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Errorf("closed port: err = %v", err)
	}
}

// TestProbesLeakNoGoroutines: HTTP, TCP and gRPC probes leave nothing
// running once they return (no keep-alive connections, closed gRPC
// channels), so a prober can run for months.
func TestProbesLeakNoGoroutines(t *testing.T) {
	httpSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(httpSrv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := grpchealth.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	grpcPort := ln.Addr().(*net.TCPAddr).Port

	probes := []Probe{
		{HTTPGet: &HTTPGet{Port: serverPort(t, httpSrv)}},
		{TCPSocket: &TCPSocket{Port: serverPort(t, httpSrv)}},
		{GRPC: &GRPC{Port: grpcPort}},
		{GRPC: &GRPC{Port: closedPort(t)}},
	}
	// Warm up lazily started runtime and server goroutines.
	for _, p := range probes {
		_ = checkOnce(t, p)
	}
	baseline := runtime.NumGoroutine()
	for range 20 {
		for _, p := range probes {
			_ = checkOnce(t, p)
		}
	}
	// 80 probes: a leak of even one goroutine per probe would show.
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseline+2 })
}
