package accesslog_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/accesslog"
)

func TestAppendIsValidJSON(t *testing.T) {
	e := &accesslog.Entry{
		Start: time.Date(2026, 11, 25, 12, 0, 0, 123e6, time.UTC), Duration: 42 * time.Millisecond,
		Method: []byte("GET"), Path: []byte("/a\"b\\c\x01\xff?q=ü"), Protocol: "HTTP/1.1",
		Authority: []byte("reviews:9080"), Status: 503, Flags: "UH", BytesReceived: 1, BytesSent: 2,
		Upstream: "10.0.0.1:9080", UpstreamCluster: "outbound|9080||reviews", Downstream: "127.0.0.1:5555",
		Attempts: 2, Reporter: "source", ConnectionSecured: true,
	}
	line := accesslog.Append(nil, e)
	if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	want := map[string]any{
		"start_time": "2026-11-25T12:00:00.123Z", "method": "GET", "path": "/a\"b\\c\x01\ufffd?q=ü", "protocol": "HTTP/1.1",
		"response_code": float64(503), "response_flags": "UH", "duration": float64(42), "upstream_host": "10.0.0.1:9080",
		"upstream_cluster": "outbound|9080||reviews", "user_agent": nil, "upstream_attempts": float64(2), "reporter": "source", "mtls": true,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestLoggerWritesEveryLine(t *testing.T) {
	var out syncBuf
	l := accesslog.New(&out, 10000)
	for i := 0; i < 1000; i++ {
		l.Log(&accesslog.Entry{Method: []byte("GET"), Status: 200})
	}
	l.Close()
	if n := strings.Count(out.b.String(), "\n"); n != 1000 {
		t.Fatalf("%d lines written", n)
	}
}
