package tracing_test

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/tracing"
)

func headers(kv ...string) tracing.HeaderFunc {
	return func(name string) ([]byte, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == name {
				return []byte(kv[i+1]), true
			}
		}
		return nil, false
	}
}

func TestExtract(t *testing.T) {
	const (
		tid = "0af7651916cd43dd8448eb211c80319c"
		sid = "b7ad6b7169203331"
	)
	tests := []struct {
		name    string
		h       tracing.HeaderFunc
		ok      bool
		trace   string
		parent  string
		sampled bool
		decided bool
		b3      bool
	}{
		{"none", headers(), false, "", "", false, false, false},
		{"traceparent sampled", headers("traceparent", "00-"+tid+"-"+sid+"-01"), true, tid, sid, true, true, false},
		{"traceparent not sampled", headers("traceparent", "00-"+tid+"-"+sid+"-00"), true, tid, sid, false, true, false},
		{"traceparent upper-case hex", headers("traceparent", "00-"+strings.ToUpper(tid)+"-"+sid+"-01"), true, tid, sid, true, true, false},
		{"traceparent short", headers("traceparent", "00-"+tid+"-"+sid), false, "", "", false, false, false},
		{"traceparent version ff", headers("traceparent", "ff-"+tid+"-"+sid+"-01"), false, "", "", false, false, false},
		{"traceparent v00 with extra field", headers("traceparent", "00-"+tid+"-"+sid+"-01-x"), false, "", "", false, false, false},
		{"traceparent future version with extra field", headers("traceparent", "01-"+tid+"-"+sid+"-01-x"), true, tid, sid, true, true, false},
		{"traceparent zero trace", headers("traceparent", "00-"+strings.Repeat("0", 32)+"-"+sid+"-01"), false, "", "", false, false, false},
		{"traceparent not hex", headers("traceparent", "00-"+strings.Repeat("z", 32)+"-"+sid+"-01"), false, "", "", false, false, false},
		{"traceparent wins over b3", headers("traceparent", "00-"+tid+"-"+sid+"-01", "x-b3-traceid", sid), true, tid, sid, true, true, false},
		{"b3 multi 128-bit", headers("x-b3-traceid", tid, "x-b3-spanid", sid, "x-b3-sampled", "1"), true, tid, sid, true, true, true},
		{"b3 multi 64-bit trace id", headers("x-b3-traceid", sid, "x-b3-spanid", sid), true, strings.Repeat("0", 16) + sid, sid, false, false, true},
		{"b3 multi bad span", headers("x-b3-traceid", tid, "x-b3-spanid", "xyz"), false, "", "", false, false, false},
		{"b3 single", headers("b3", tid+"-"+sid+"-1"), true, tid, sid, true, true, true},
		{"b3 single deny", headers("b3", tid+"-"+sid+"-0"), true, tid, sid, false, true, true},
		{"b3 single decision only", headers("b3", "0"), false, "", "", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := tracing.Extract(tt.h)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if got := hex.EncodeToString(c.Trace[:]); got != tt.trace {
				t.Errorf("trace %s, want %s", got, tt.trace)
			}
			if got := hex.EncodeToString(c.Parent[:]); got != tt.parent {
				t.Errorf("parent %s, want %s", got, tt.parent)
			}
			if c.Sampled != tt.sampled || c.Decided != tt.decided || c.B3 != tt.b3 {
				t.Errorf("sampled/decided/b3 = %v/%v/%v, want %v/%v/%v", c.Sampled, c.Decided, c.B3, tt.sampled, tt.decided, tt.b3)
			}
		})
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	tr, sp := tracing.NewTraceID(), tracing.NewSpanID()
	v := tracing.AppendTraceparent(nil, tr, sp, true)
	c, ok := tracing.Extract(headers("traceparent", string(v)))
	if !ok || c.Trace != tr || c.Parent != sp || !c.Sampled {
		t.Fatalf("%s -> %+v %v", v, c, ok)
	}
}

// collector is an OTLP/HTTP JSON endpoint that keeps what it receives.
type collector struct {
	mu     sync.Mutex
	bodies []map[string]any
	status int
	gate   chan struct{} // when set, each request waits for it
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.gate != nil {
		<-c.gate
	}
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &m) != nil {
		w.WriteHeader(400)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies = append(c.bodies, m)
	if c.status != 0 {
		w.WriteHeader(c.status)
	}
}

func (c *collector) spans() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, b := range c.bodies {
		for _, rs := range b["resourceSpans"].([]any) {
			for _, ss := range rs.(map[string]any)["scopeSpans"].([]any) {
				for _, s := range ss.(map[string]any)["spans"].([]any) {
					out = append(out, s.(map[string]any))
				}
			}
		}
	}
	return out
}

func TestExport(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	tr, err := tracing.New(tracing.Config{Endpoint: srv.URL + "/v1/traces", ServiceName: "reviews.default", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	trace, parent, id := tracing.NewTraceID(), tracing.NewSpanID(), tracing.NewSpanID()
	start := time.Unix(1700000000, 5)
	tr.Record(tracing.Span{Trace: trace, ID: id, Parent: parent, Name: "reviews:9080/x", Start: start, End: start.Add(time.Millisecond),
		Server: true, Method: "GET", URL: "/x", Status: 503, Flags: "UH"})
	tr.Record(tracing.Span{Trace: trace, ID: tracing.NewSpanID(), Name: "root", Start: start, End: start, Status: 200})
	tr.Close() // flushes
	got := col.spans()
	if len(got) != 2 {
		t.Fatalf("%d spans exported", len(got))
	}
	s := got[0]
	want := map[string]any{
		"traceId": hex.EncodeToString(trace[:]), "spanId": hex.EncodeToString(id[:]), "parentSpanId": hex.EncodeToString(parent[:]),
		"name": "reviews:9080/x", "kind": float64(2), "startTimeUnixNano": "1700000000000000005", "endTimeUnixNano": "1700000000001000005",
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	if s["status"].(map[string]any)["code"] != float64(2) {
		t.Errorf("a 503 span must have status ERROR: %v", s["status"])
	}
	if _, ok := got[1]["parentSpanId"]; ok || got[1]["kind"] != float64(3) {
		t.Errorf("root client span: %v", got[1])
	}
	if st := tr.Stats(); st.Exported != 2 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExportFailureAndOverflow(t *testing.T) {
	col := &collector{status: 503, gate: make(chan struct{})}
	srv := httptest.NewServer(col)
	defer srv.Close()
	// Batches of one: the exporter blocks on the first span's export
	// (the collector holds it), two more fit the queue, the rest drop.
	tr, err := tracing.New(tracing.Config{Endpoint: srv.URL + "/v1/traces", QueueSize: 2, BatchSize: 1, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tr.Record(tracing.Span{Trace: tracing.NewTraceID(), ID: tracing.NewSpanID()})
	// Once the exporter took it off the queue it is stuck in that export.
	for deadline := time.Now().Add(5 * time.Second); tr.Queued() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("exporter never took the first span")
		}
	}
	for i := 0; i < 49; i++ {
		tr.Record(tracing.Span{Trace: tracing.NewTraceID(), ID: tracing.NewSpanID()})
	}
	close(col.gate)
	tr.Close()
	if st := tr.Stats(); st.Dropped != 47 || st.Failed != 3 || st.Exported != 0 {
		t.Fatalf("stats %+v: want 47 dropped (queue of 2 while one export hangs) and 3 failed (collector 503)", st)
	}
	if _, err := tracing.New(tracing.Config{}); err == nil {
		t.Fatal("no endpoint accepted")
	}
	if _, err := tracing.New(tracing.Config{Endpoint: "http://x", SampleRate: 2}); err == nil {
		t.Fatal("sample rate 2 accepted")
	}
}
