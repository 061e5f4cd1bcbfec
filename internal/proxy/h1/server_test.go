package h1

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Te", strings.Join(r.TransferEncoding, ","))
		for _, n := range []string{"X-Hop", "X-Set", "X-Add", "X-Drop", "Expect", "Keep-Alive"} {
			if v := r.Header.Values(n); len(v) > 0 {
				w.Header().Set("X-Seen-"+n, strings.Join(v, ","))
			}
		}
		_, _ = io.Copy(w, r.Body)
	})
}

func TestMalformedRequests(t *testing.T) {
	up := newUpstream(t, echoHandler())
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr()), MaxHeaderBytes: 4096, MaxRequestLine: 1024})
	long := strings.Repeat("a", 2000)
	tests := []struct {
		name, raw string
		want      int
	}{
		{"ok", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400},
		{"differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"identical CL ok", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 200},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
		{"CL plus sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400},
		{"CL negative", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"CL huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"TE chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE obfuscated", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
		{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk missing CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400},
		{"chunk bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
		{"chunk ext ok", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", 200},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400},
		{"bare LF in head", "GET / HTTP/1.1\nHost: x\n\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"1.0 no host ok", "GET / HTTP/1.0\r\n\r\n", 200},
		{"version 2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"garbage version", "GET / HTXP/1.1\r\nHost: x\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"relative target", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
		{"uri too long", "GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"headers too large", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + long + "\r\nX-B: " + long + "\r\nX-C: " + long + "\r\n\r\n", 431},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 101) + "\r\n", 431},
		{"expect other", "GET / HTTP/1.1\r\nHost: x\r\nExpect: fly\r\n\r\n", 417},
		{"absolute form", "GET http://h.example/p?q=1 HTTP/1.1\r\nHost: h.example\r\n\r\n", 200},
		{"asterisk non-OPTIONS", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"leading CRLF ok", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawExchange(t, addr, tc.raw)
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, resp.Header.Get("X-Weft-Reason"), tc.want)
			}
			if tc.want >= 400 && !resp.Close {
				t.Errorf("error response must close the connection")
			}
		})
	}
}

func TestForwardingAndHeaderRules(t *testing.T) {
	up := newUpstream(t, echoHandler())
	router := RouterFunc(func(r *Request) Decision {
		if string(r.Path()) == "/local" {
			return Decision{Status: 403, Reason: "rbac_denied", Body: []byte("nope")}
		}
		return Decision{
			Upstream:              up.addr(),
			HostRewrite:           []byte("rewritten.local"),
			SetRequestHeaders:     []Header{{[]byte("X-Set"), []byte("s")}},
			AddRequestHeaders:     []Header{{[]byte("X-Add"), []byte("a")}},
			RemoveRequestHeaders:  [][]byte{[]byte("x-drop")},
			SetResponseHeaders:    []Header{{[]byte("X-Resp"), []byte("r")}},
			RemoveResponseHeaders: [][]byte{[]byte("x-seen-te")},
		}
	})
	_, addr := startProxy(t, Config{Router: router})

	resp := rawExchange(t, addr, "POST /a/b?x=1&y=2 HTTP/1.1\r\nHost: orig\r\nX-Set: old\r\nX-Drop: d\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nhello")
	body := mustRead(t, resp.Body)
	checks := map[string]string{
		"X-Seen-Host": "rewritten.local", "X-Seen-Path": "/a/b?x=1&y=2", "X-Seen-X-Set": "s",
		"X-Seen-X-Add": "a", "X-Seen-X-Drop": "", "X-Seen-X-Hop": "", "X-Seen-Keep-Alive": "", "X-Resp": "r", "X-Seen-Te": "",
	}
	for k, v := range checks {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if body != "hello" || resp.StatusCode != 200 {
		t.Errorf("status %d body %q", resp.StatusCode, body)
	}

	resp = rawExchange(t, addr, "GET /local HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 403 || resp.Header.Get("X-Weft-Reason") != "rbac_denied" || mustRead(t, resp.Body) != "nope" {
		t.Errorf("local response: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestKeepAliveReuseAndPipelining(t *testing.T) {
	up := newUpstream(t, echoHandler())
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr())})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := 0; i < 50; i++ {
		resp, err := client.Post("http://"+addr+"/", "text/plain", strings.NewReader(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, resp.Body); got != fmt.Sprint(i) {
			t.Fatalf("body %q", got)
		}
		resp.Body.Close()
	}
	if n := up.conns.Load(); n != 1 {
		t.Errorf("upstream connections = %d, want 1 (keep-alive reuse)", n)
	}

	// Three pipelined requests in one write come back in order.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var raw strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&raw, "POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nb%d", i, i)
	}
	_, _ = io.WriteString(c, raw.String())
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, resp.Body); got != fmt.Sprintf("b%d", i) || resp.Header.Get("X-Seen-Path") != fmt.Sprintf("/p%d", i) {
			t.Fatalf("pipelined %d: %q %s", i, got, resp.Header.Get("X-Seen-Path"))
		}
	}
}

func TestChunkedBothWays(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Req-Te", strings.Join(r.TransferEncoding, ","))
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		fl := w.(http.Flusher)
		buf := make([]byte, 1000)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				fl.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr())})
	pr, pw := io.Pipe()
	want := bytes.Repeat([]byte("0123456789"), 50000)
	go func() {
		for i := 0; i < len(want); i += 7777 {
			_, _ = pw.Write(want[i:min(i+7777, len(want))])
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := mustRead(t, resp.Body)
	if len(resp.TransferEncoding) == 0 || resp.Header.Get("X-Req-Te") != "chunked" || got != string(want) {
		t.Fatalf("te=%v len=%d want %d", resp.TransferEncoding, len(got), len(want))
	}

	// HTTP/1.0 client gets the chunked response de-chunked and closed.
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
	all := mustRead(t, c)
	if !strings.HasSuffix(all, "\r\n\r\nabc") || strings.Contains(strings.ToLower(all), "transfer-encoding") {
		t.Fatalf("1.0 response: %q", all)
	}
}

func TestLargeBodiesStreamBounded(t *testing.T) {
	const size = 64 << 20
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Up-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Up-Len", fmt.Sprint(n))
		w.Header().Set("Content-Length", fmt.Sprint(size))
		chunk := bytes.Repeat([]byte{'z'}, 1<<16)
		for i := 0; i < size/len(chunk); i++ {
			_, _ = w.Write(chunk)
		}
	}))
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr())})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse

	body := &patternReader{n: size}
	req, _ := http.NewRequest("PUT", "http://"+addr+"/big", body)
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var peak uint64
	n, err := io.Copy(io.Discard, &sampling{r: resp.Body, peak: &peak})
	if err != nil || n != size {
		t.Fatalf("response: %d %v", n, err)
	}
	h := sha256.New()
	_, _ = io.Copy(h, &patternReader{n: size})
	if resp.Header.Get("X-Up-Sum") != fmt.Sprintf("%x", h.Sum(nil)) {
		t.Errorf("upstream saw a different body (len %s)", resp.Header.Get("X-Up-Len"))
	}
	if peak > before+16<<20 {
		t.Errorf("heap grew from %d to %d while streaming 64 MiB each way", before, peak)
	}
}

type patternReader struct{ n, off int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(len(b), p.n-p.off)
	for i := 0; i < k; i++ {
		b[i] = byte((p.off + i) % 251)
	}
	p.off += k
	return k, nil
}

type sampling struct {
	r    io.Reader
	peak *uint64
	i    int
}

func (s *sampling) Read(b []byte) (int, error) {
	s.i++
	if s.i%256 == 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		*s.peak = max(*s.peak, ms.HeapInuse)
	}
	return s.r.Read(b)
}

func TestExpectContinue(t *testing.T) {
	up := newUpstream(t, echoHandler())
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr())})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim: %q", line)
	}
	if l2, _ := br.ReadString('\n'); l2 != "\r\n" {
		t.Fatalf("interim end: %q", l2)
	}
	_, _ = io.WriteString(c, "ping")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, resp.Body); got != "ping" || resp.Header.Get("X-Seen-Expect") != "" {
		t.Fatalf("body %q, upstream saw Expect %q", got, resp.Header.Get("X-Seen-Expect"))
	}
}

func TestWebSocketUpgradeEcho(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(c, brw) // echo until EOF
	}))
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr())})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early" {
		t.Fatalf("early bytes: %q %v", got, err)
	}
	for i := 0; i < 10; i++ {
		msg := fmt.Sprintf("frame-%d", i)
		_, _ = io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %d: %q %v", i, buf, err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("trailing %q", rest)
	}
}

func TestBodylessResponses(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}
	}))
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr())})
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/204"}, {"GET", "/304"}, {"GET", "/"}} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", tc.method, tc.path)
		req, _ := http.NewRequest(tc.method, "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		body := mustRead(t, resp.Body)
		if tc.path == "/" && tc.method == "GET" && body != "hello" {
			t.Fatalf("GET body %q", body)
		}
		if tc.method == "HEAD" && resp.ContentLength != 5 {
			t.Errorf("HEAD Content-Length %d", resp.ContentLength)
		}
	}
}

func TestRequestAccessorsAndUpstreamBadChunk(t *testing.T) {
	bad := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = http.ReadRequest(br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
	})
	type seen struct{ method, path, query, host, ua, target string }
	got := make(chan seen, 1)
	router := RouterFunc(func(r *Request) Decision {
		ua, _ := r.Header("USER-agent")
		got <- seen{string(r.Method()), string(r.Path()), string(r.RawQuery()), string(r.Host()), string(ua), string(r.Target())}
		return Decision{Upstream: bad}
	})
	_, addr := startProxy(t, Config{Router: router})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /p/q?a=1&b HTTP/1.1\r\nHost: svc.local:8080\r\nUser-Agent: t/1\r\n\r\n")
	want := seen{"GET", "/p/q", "a=1&b", "svc.local:8080", "t/1", "/p/q?a=1&b"}
	if s := <-got; s != want {
		t.Fatalf("router saw %+v, want %+v", s, want)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Invalid chunk framing upstream never reaches the client as valid
	// data: before any byte was flushed it becomes a 502, afterwards a
	// truncated body on a closed connection.
	if resp.StatusCode != 502 || resp.Header.Get("X-Weft-Reason") != "upstream_malformed_response" {
		t.Fatalf("got %d %q, want 502 upstream_malformed_response", resp.StatusCode, resp.Header.Get("X-Weft-Reason"))
	}
}
