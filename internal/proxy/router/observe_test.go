package router_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/accesslog"
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tracing"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tracing continues the caller's trace and hands the upstream the proxy's
// span as parent; spans reach an OTLP/HTTP collector; the access log gets
// one JSON line per request.
func TestTracingAndAccessLog(t *testing.T) {
	var mu sync.Mutex
	var spans []map[string]any
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ResourceSpans []struct {
				ScopeSpans []struct{ Spans []map[string]any }
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range m.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
	}))
	defer col.Close()
	seen := make(chan http.Header, 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer up.Close()

	tr, err := tracing.New(tracing.Config{Endpoint: col.URL + "/v1/traces", SampleRate: 1, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf lockedBuf
	alog := accesslog.New(&logBuf, 0)
	h := snapshot(t, strings.TrimPrefix(up.URL, "http://"), strings.TrimPrefix(up.URL, "http://"))
	rt := router.New(router.Config{Holder: h, Source: portSource{}, Reporter: telemetry.Source,
		Metrics: telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"}), AccessLog: alog, Tracer: tr})
	srv, err := h1.NewServer(h1.Config{Router: rt, Observer: rt})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(path string, hdr ...string) http.Header {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s:9080\r\nUser-Agent: t\r\n%s\r\n", path, host, strings.Join(hdr, ""))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		select {
		case h := <-seen:
			return h
		case <-time.After(5 * time.Second):
			t.Fatal("upstream saw nothing")
		}
		return nil
	}
	const tid, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

	// 1. W3C: same trace, the proxy's span becomes the parent.
	hdr := get("/w3c?x=1", "traceparent: 00-"+tid+"-"+parent+"-01\r\n")
	c1, ok := tracing.Extract(func(n string) ([]byte, bool) { v := hdr.Get(n); return []byte(v), v != "" })
	if !ok || hex.EncodeToString(c1.Trace[:]) != tid || hex.EncodeToString(c1.Parent[:]) == parent || !c1.Sampled {
		t.Fatalf("upstream traceparent %q", hdr.Get("traceparent"))
	}
	// 2. B3: B3 span headers follow the proxy's span too.
	hdr = get("/b3", "x-b3-traceid: "+tid+"\r\nx-b3-spanid: "+parent+"\r\nx-b3-sampled: 1\r\n")
	if hdr.Get("x-b3-traceid") != tid || hdr.Get("x-b3-parentspanid") != parent || hdr.Get("x-b3-spanid") == parent ||
		hdr.Get("x-b3-sampled") != "1" || !strings.Contains(hdr.Get("traceparent"), tid) {
		t.Fatalf("B3 headers upstream: %v", hdr)
	}
	// 3. No context: a new trace; a caller's "not sampled" is honoured.
	hdr = get("/new")
	if c3, ok := tracing.Extract(func(n string) ([]byte, bool) { v := hdr.Get(n); return []byte(v), v != "" }); !ok || c3.Trace == c1.Trace {
		t.Fatalf("new trace: %q", hdr.Get("traceparent"))
	}
	hdr = get("/unsampled", "traceparent: 00-"+tid+"-"+parent+"-00\r\n")
	if !strings.HasSuffix(hdr.Get("traceparent"), "-00") {
		t.Fatalf("unsampled decision lost: %q", hdr.Get("traceparent"))
	}

	// The observer runs after the response went out: let the server
	// finish its connections before closing the log and the tracer.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	alog.Close()
	tr.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(spans) != 3 {
		t.Fatalf("%d spans exported, want 3 (the unsampled request records none)", len(spans))
	}
	first := spans[0]
	if first["traceId"] != tid || first["parentSpanId"] != parent || first["spanId"] != hex.EncodeToString(c1.Parent[:]) {
		t.Fatalf("span does not link caller and upstream: %v", first)
	}
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d access log lines: %q", len(lines), logBuf.String())
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e["path"] != "/w3c?x=1" || e["response_code"] != float64(200) || e["user_agent"] != "t" || e["reporter"] != "source" ||
		!strings.Contains(e["traceparent"].(string), tid) || !strings.HasPrefix(e["upstream_cluster"].(string), "outbound|9080|") {
		t.Fatalf("access log line: %s", lines[0])
	}
}
