package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestUpstreamFailures(t *testing.T) {
	// Accepts and never answers.
	black, _ := net.Listen("tcp", "127.0.0.1:0")
	defer black.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := black.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	// Refuses: a closed listener's port.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := l.Addr().String()
	l.Close()
	// Answers garbage / smuggling-shaped responses.
	bad := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = http.ReadRequest(br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	})
	reset := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = http.ReadRequest(br)
		c.(*net.TCPConn).SetLinger(0)
	})

	router := RouterFunc(func(r *Request) Decision {
		switch string(r.Path()) {
		case "/black":
			return Decision{Upstream: black.Addr().String(), Timeout: 200 * time.Millisecond}
		case "/refused":
			return Decision{Upstream: refused}
		case "/bad":
			return Decision{Upstream: bad}
		case "/reset":
			return Decision{Upstream: reset}
		}
		return Decision{Status: 503, Reason: "no_healthy_upstream"}
	})
	_, addr := startProxy(t, Config{Router: router})
	for _, tc := range []struct {
		path   string
		status int
		reason string
	}{
		{"/black", 504, "upstream_timeout"},
		{"/refused", 503, "upstream_connect_failure"},
		{"/bad", 502, "upstream_malformed_response"},
		{"/reset", 502, "upstream_reset"},
		{"/none", 503, "no_healthy_upstream"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			resp := rawExchange(t, addr, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp.StatusCode != tc.status || resp.Header.Get("X-Weft-Reason") != tc.reason {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Weft-Reason"), tc.status, tc.reason)
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

// rawUpstream serves each connection with fn and returns its address.
func rawUpstream(t testing.TB, fn func(net.Conn, *bufio.Reader)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return l.Addr().String()
}

func TestRetryOnStaleKeepAlive(t *testing.T) {
	// The upstream answers one request per connection with keep-alive
	// framing and then closes: the pooled connection is dead on reuse.
	var mu sync.Mutex
	conns := 0
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		mu.Lock()
		conns++
		mu.Unlock()
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	_, addr := startProxy(t, Config{Router: staticRouter(up)})
	for i := 0; i < 5; i++ {
		resp := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, resp.Header.Get("X-Weft-Reason"))
		}
		time.Sleep(20 * time.Millisecond) // let the upstream FIN arrive
	}
	// POST is not idempotent: no retry, a clean 502.
	resp := rawExchange(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if resp.StatusCode != 502 {
		t.Fatalf("POST on stale conn: %d, want 502", resp.StatusCode)
	}
}

func TestNoLeaksAndShutdownDrains(t *testing.T) {
	g0, fd0 := goroutines(), fdCount(t)
	func() {
		release := make(chan struct{})
		up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			_, _ = io.WriteString(w, "done")
		}))
		s, err := NewServer(Config{Router: staticRouter(up.addr())})
		if err != nil {
			t.Fatal(err)
		}
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		addr := l.Addr().String()

		// Burst of keep-alive and one-shot requests.
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		client := &http.Client{Transport: tr}
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 20; j++ {
					resp, err := client.Get("http://" + addr + "/")
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
		}
		wg.Wait()

		// In-flight requests must complete across Shutdown.
		results := make(chan string, 10)
		for i := 0; i < 10; i++ {
			go func() {
				resp, err := client.Get("http://" + addr + "/slow")
				if err != nil {
					results <- err.Error()
					return
				}
				results <- mustRead(t, resp.Body)
				resp.Body.Close()
			}()
		}
		for deadline := time.Now().Add(3 * time.Second); ; {
			s.mu.Lock()
			n := 0
			for cn := range s.conns {
				if cn.state.Load() == stateActive {
					n++
				}
			}
			s.mu.Unlock()
			if n >= 10 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			shut <- s.Shutdown(ctx)
		}()
		time.Sleep(50 * time.Millisecond)
		if _, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Error("listener still accepting after Shutdown")
		}
		close(release)
		for i := 0; i < 10; i++ {
			if r := <-results; r != "done" {
				t.Errorf("in-flight request dropped: %s", r)
			}
		}
		if err := <-shut; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		tr.CloseIdleConnections()
		up.Close()
	}()
	if g := settle(g0, goroutines); g > g0 {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines %d -> %d\n%s", g0, g, buf[:runtime.Stack(buf, true)])
	}
	if fd := settle(fd0, func() int { return fdCount(t) }); fd > fd0 {
		t.Errorf("fds %d -> %d", fd0, fd)
	}
}

func TestSlowlorisHeaderTimeout(t *testing.T) {
	up := newUpstream(t, echoHandler())
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr()), ReadHeaderTimeout: 150 * time.Millisecond})
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 408 {
		t.Fatalf("got %v %v, want 408", resp, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestEarlyUpstreamAnswerAndHooks(t *testing.T) {
	// The upstream rejects a large upload without reading it.
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	var mu sync.Mutex
	var done []int
	obs := &recObserver{}
	router := RouterFunc(func(*Request) Decision {
		return Decision{Upstream: up, Done: func(st int, _ error) { mu.Lock(); done = append(done, st); mu.Unlock() }}
	})
	_, addr := startProxy(t, Config{Router: router, Observer: obs})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\npartial")
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("got %v %v, want 413", resp, err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("early answer took %v", time.Since(start))
	}
	// The client connection cannot be resynchronised and must close.
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(done)
		mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(done) != 1 || done[0] != 413 {
		t.Errorf("Done calls %v", done)
	}
	if obs.starts.Load() != 1 || obs.ends.Load() != 1 || obs.lastStatus.Load() != 413 {
		t.Errorf("observer start=%d end=%d status=%d", obs.starts.Load(), obs.ends.Load(), obs.lastStatus.Load())
	}
}

type recObserver struct {
	starts, ends, lastStatus atomic.Int64
}

func (o *recObserver) RequestStart(*Request) { o.starts.Add(1) }
func (o *recObserver) RequestEnd(_ *Request, s Summary) {
	o.lastStatus.Store(int64(s.Status))
	o.ends.Add(1)
}

func TestPoolLimitsAndIdleExpiry(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	pool := NewPool(PoolConfig{MaxConnsPerHost: 1, IdleTimeout: 100 * time.Millisecond})
	defer pool.Close()
	_, addr := startProxy(t, Config{Router: staticRouter(up.addr()), Pool: pool})

	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	for deadline := time.Now().Add(3 * time.Second); ; {
		if _, total := pool.Stats(up.addr()); total == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp := rawExchange(t, addr, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Reason") != "upstream_overflow" {
		t.Fatalf("over the limit: %d %q", resp.StatusCode, resp.Header.Get("X-Weft-Reason"))
	}
	close(release)
	if st := <-slow; st != 200 {
		t.Fatalf("slow request: %d", st)
	}
	// The connection goes back to the pool just after the response reached
	// the client: wait for it rather than race it.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		idle, total := pool.Stats(up.addr())
		if idle == 1 && total == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after request: idle=%d total=%d", idle, total)
		}
	}
	// The sweeper closes it after IdleTimeout without any traffic.
	got := settle(0, func() int { _, total := pool.Stats(up.addr()); return total })
	if got != 0 {
		t.Fatalf("idle connection not expired: total=%d", got)
	}
}
