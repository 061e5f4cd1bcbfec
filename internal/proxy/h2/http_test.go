package h2

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

func echoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Added", r.Header.Get("X-Added"))
		w.Header().Set("Trailer", "X-Len")
		n, _ := io.Copy(w, r.Body)
		w.Header().Set("X-Len", strconv.FormatInt(n, 10))
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.Method)
	})
	return mux
}

func TestHTTPGetPost(t *testing.T) {
	backend, _ := startH2C(t, echoHandler())
	addr, _ := startProxy(t, Config{Router: RouterFunc(func(req *Request) h1.Decision {
		switch string(req.Path()) {
		case "/deny":
			return h1.Decision{Status: 403, Reason: "rbac_access_denied"}
		case "/old/echo":
			return h1.Decision{
				Upstream:           backend,
				PathRewrite:        []byte("/echo"),
				HostRewrite:        []byte("echo.internal"),
				SetRequestHeaders:  []h1.Header{{Name: []byte("x-added"), Value: []byte("yes")}},
				SetResponseHeaders: []h1.Header{{Name: []byte("server"), Value: []byte("weft")}},
			}
		}
		return h1.Decision{Upstream: backend}
	})})
	cc := h2cConn(t, addr)

	resp := do(t, cc, "GET", "http://"+addr+"/hello", nil)
	if resp.StatusCode != 200 || resp.body != "hello GET" {
		t.Fatalf("GET = %d %q", resp.StatusCode, resp.body)
	}

	resp = do(t, cc, "POST", "http://svc.ns/old/echo?q=1", strings.NewReader("payload"))
	if resp.StatusCode != 200 || resp.body != "payload" {
		t.Fatalf("POST = %d %q", resp.StatusCode, resp.body)
	}
	for k, want := range map[string]string{"X-Seen-Path": "/echo?q=1", "X-Seen-Host": "echo.internal", "X-Seen-Added": "yes", "Server": "weft"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := resp.Trailer.Get("X-Len"); got != "7" {
		t.Errorf("trailer X-Len = %q", got)
	}

	resp = do(t, cc, "GET", "http://"+addr+"/deny", nil)
	if resp.StatusCode != 403 || resp.Header.Get("X-Weft-Reason") != "rbac_access_denied" || resp.body != "rbac_access_denied\n" {
		t.Fatalf("deny = %d %v %q", resp.StatusCode, resp.Header, resp.body)
	}
}

func TestHTTPUpstreamFailures(t *testing.T) {
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: closedAddr(t)})})
	cc := h2cConn(t, addr)
	resp := do(t, cc, "GET", "http://"+addr+"/", nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Reason") != reasonConnectFailure {
		t.Fatalf("down = %d %v", resp.StatusCode, resp.Header)
	}

	// An HTTP/1.1-only upstream (no translation yet) fails cleanly.
	h1ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h1srv := &http.Server{Handler: http.NotFoundHandler()}
	go h1srv.Serve(h1ln)
	defer h1srv.Close()
	addr, _ = startProxy(t, Config{Router: static(h1.Decision{Upstream: h1ln.Addr().String()})})
	cc = h2cConn(t, addr)
	resp = do(t, cc, "GET", "http://"+addr+"/", nil)
	if resp.StatusCode != 502 || resp.Header.Get("X-Weft-Reason") != reasonReset {
		t.Fatalf("h1 upstream = %d %v", resp.StatusCode, resp.Header)
	}

	slow, _ := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	addr, _ = startProxy(t, Config{Router: static(h1.Decision{Upstream: slow, Timeout: 50 * time.Millisecond})})
	cc = h2cConn(t, addr)
	resp = do(t, cc, "GET", "http://"+addr+"/", nil)
	if resp.StatusCode != 504 || resp.Header.Get("X-Weft-Reason") != reasonTimeout {
		t.Fatalf("timeout = %d %v", resp.StatusCode, resp.Header)
	}
}

type result struct {
	*http.Response
	body string
}

func do(t testing.TB, cc interface {
	RoundTrip(*http.Request) (*http.Response, error)
}, method, url string, body io.Reader) result {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp, string(b)}
}

func TestHTTPMultiplexing(t *testing.T) {
	const n = 100
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	backend, conns := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release // all n streams are open upstream at once
		io.WriteString(w, r.URL.Path)
	}))
	pool := NewPool(PoolConfig{})
	defer pool.Close()
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend}), Pool: pool})
	cc := h2cConn(t, addr)
	go func() { arrived.Wait(); close(release) }()
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/s" + string(rune('a'+i%26))
			req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				bad.Add(1)
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != path {
				bad.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("streams did not all reach the backend concurrently")
	}
	if bad.Load() != 0 {
		t.Fatalf("%d bad responses", bad.Load())
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("upstream connections = %d, want 1", got)
	}
	if got := pool.Conns(backend, ""); got != 1 {
		t.Errorf("pool connections = %d, want 1", got)
	}
}

func TestPoolStreamLimit(t *testing.T) {
	const n = 10
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	backend, conns := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
	}))
	pool := NewPool(PoolConfig{MaxStreamsPerConn: 4, MaxConnsPerHost: 2})
	defer pool.Close()
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend}), Pool: pool})
	cc := h2cConn(t, addr)
	codes := make(chan int, n)
	for range n {
		go func() {
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 503 {
				arrived.Done() // answered by the proxy: never reaches the backend
			}
			codes <- resp.StatusCode
		}()
	}
	arrived.Wait()
	close(release)
	count := map[int]int{}
	for range n {
		count[<-codes]++
	}
	if count[200] != 8 || count[503] != 2 {
		t.Errorf("statuses = %v, want 8x200 2x503", count)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("upstream connections = %d, want 2", got)
	}
}

// patternReader yields n bytes without holding them.
type patternReader struct{ n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	for i := range b {
		b[i] = byte(i)
	}
	p.n -= int64(len(b))
	return len(b), nil
}

func TestHTTPLargeStreamedBody(t *testing.T) {
	const size = 16 << 20
	backend, _ := startH2C(t, echoHandler())
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend})})
	cc := h2cConn(t, addr)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.GC() // live heap, not garbage awaiting collection
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo", &patternReader{n: size})
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil || n != size {
		t.Fatalf("echoed %d bytes, err %v", n, err)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("16 MiB echoed; peak live heap growth %.1f MiB", float64(growth)/(1<<20))
	// Flow-control windows (x/net: 1 MiB per server stream, 4 MiB per
	// client stream) bound what may sit in buffers along the four legs.
	if growth > 12<<20 {
		t.Errorf("peak live heap grew %d bytes: body is being buffered", growth)
	}
}

func TestRequestView(t *testing.T) {
	var got struct {
		method, path, query, host, auth, hdr string
		ok                                   bool
	}
	backend, _ := startH2C(t, echoHandler())
	addr, _ := startProxy(t, Config{Router: RouterFunc(func(req *Request) h1.Decision {
		got.method, got.path, got.query, got.host = string(req.Method()), string(req.Path()), string(req.RawQuery()), string(req.Host())
		a, _ := req.Header(":authority")
		h, ok := req.Header("x-tenant")
		got.auth, got.hdr, got.ok = string(a), string(h), ok
		return h1.Decision{Upstream: backend}
	})})
	cc := h2cConn(t, addr)
	req, _ := http.NewRequest("GET", "http://svc.example:8080/hello?a=b", nil)
	req.Header.Set("X-Tenant", "t1")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.method != "GET" || got.path != "/hello" || got.query != "a=b" || got.host != "svc.example:8080" || got.auth != got.host || got.hdr != "t1" || !got.ok {
		t.Errorf("view = %+v", got)
	}
}

func TestIsPreface(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{preface, true},
		{preface + "\x00\x00\x12\x04", true},
		{preface[:20], false},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	} {
		if got := IsPreface([]byte(tt.in)); got != tt.want {
			t.Errorf("IsPreface(%q) = %v", tt.in, got)
		}
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"100m": 100 * time.Millisecond, "1S": time.Second, "2H": 2 * time.Hour,
		"99999999n": 99999999, "5u": 5 * time.Microsecond, "3M": 3 * time.Minute,
		"": -1, "m": -1, "10x": -1, "123456789S": -1, "-1S": -1,
	} {
		got, ok := parseGRPCTimeout(in)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("parseGRPCTimeout(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestGRPCEncodeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain text": "plain text",
		"100%":       "100%25",
		"naïve\n":    "na%C3%AFve%0A",
		"":           "",
	} {
		if got := grpcEncodeMessage(in); got != want {
			t.Errorf("grpcEncodeMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// requestView lists *h1.Request's accessors; *h2.Request must keep the
// same method set so a router can take either behind one interface.
type requestView interface {
	Method() []byte
	Path() []byte
	RawQuery() []byte
	Target() []byte
	Host() []byte
	Proto() h1.Proto
	RemoteAddr() net.Addr
	IsConnect() bool
	ContentLength() int64
	Header(string) ([]byte, bool)
	VisitHeaders(func(name, value []byte))
}

var (
	_ requestView = (*h1.Request)(nil)
	_ requestView = (*Request)(nil)
)
