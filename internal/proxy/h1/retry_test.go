package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testRetrier retries up to max times on statuses >= 500 and on errors,
// moving to next (if set) for the following attempts.
type testRetrier struct {
	max     int
	next    string
	backoff time.Duration
	mu      sync.Mutex
	seen    []string // "status" or error class per failed attempt
}

func (r *testRetrier) Retry(attempt, status int, err error) (string, time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case errors.Is(err, ErrConnectFailure):
		r.seen = append(r.seen, "connect")
	case errors.Is(err, ErrPerTryTimeout):
		r.seen = append(r.seen, "pertry")
	case err != nil:
		r.seen = append(r.seen, "err")
	default:
		r.seen = append(r.seen, fmt.Sprint(status))
	}
	if attempt > r.max || (err == nil && status < 500) {
		return "", 0, false
	}
	return r.next, r.backoff, true
}

// summaries records Observer summaries.
type summaries struct {
	mu  sync.Mutex
	all []Summary
}

func (s *summaries) RequestStart(*Request) {}
func (s *summaries) RequestEnd(_ *Request, sum Summary) {
	s.mu.Lock()
	s.all = append(s.all, sum)
	s.mu.Unlock()
}

// last waits for the newest summary: RequestEnd runs after the response
// was written.
func (s *summaries) last() Summary {
	settle(0, func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.all) == 0 {
			return 1
		}
		return 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all[len(s.all)-1]
}

// flaky answers 503 to the first fails requests, then 200 with the body it got.
func flaky(t *testing.T, fails int64) (*countingUpstream, *atomic.Int64) {
	var n atomic.Int64
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n.Add(1) <= fails {
			w.WriteHeader(503)
			return
		}
		fmt.Fprintf(w, "ok %d", len(b))
	}))
	return u, &n
}

func TestRetry(t *testing.T) {
	// Port 1 on loopback refuses (nothing listens there); a closed
	// ephemeral port could be reused by a concurrently running test.
	const refused = "127.0.0.1:1"

	t.Run("503 twice then success", func(t *testing.T) {
		u, n := flaky(t, 2)
		rt := &testRetrier{max: 3, next: u.addr()}
		obs := &summaries{}
		_, addr := startProxy(t, Config{Observer: obs, Router: RouterFunc(func(*Request) Decision {
			return Decision{Upstream: u.addr(), Retry: rt}
		})})
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body := mustRead(t, resp.Body)
		if resp.StatusCode != 200 || body != "ok 0" || n.Load() != 3 {
			t.Fatalf("got %d %q after %d upstream requests", resp.StatusCode, body, n.Load())
		}
		if s := obs.last(); s.Attempts != 3 || s.Status != 200 {
			t.Fatalf("summary %+v", s)
		}
	})
	t.Run("retries exhausted relays the last 503", func(t *testing.T) {
		u, n := flaky(t, 10)
		rt := &testRetrier{max: 1, next: u.addr()}
		_, addr := startProxy(t, Config{Router: RouterFunc(func(*Request) Decision {
			return Decision{Upstream: u.addr(), Retry: rt}
		})})
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || n.Load() != 2 {
			t.Fatalf("got %d after %d upstream requests", resp.StatusCode, n.Load())
		}
	})
	t.Run("connect failure goes to another upstream", func(t *testing.T) {
		u, n := flaky(t, 0)
		rt := &testRetrier{max: 1, next: u.addr()}
		_, addr := startProxy(t, Config{Router: RouterFunc(func(*Request) Decision {
			return Decision{Upstream: refused, Retry: rt}
		})})
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || n.Load() != 1 || strings.Join(rt.seen, ",") != "connect" {
			t.Fatalf("got %d, %d upstream requests, retrier saw %v", resp.StatusCode, n.Load(), rt.seen)
		}
	})
	t.Run("4xx is not offered below 400 and not retried by policy", func(t *testing.T) {
		var n atomic.Int64
		u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(404)
		}))
		rt := &testRetrier{max: 3, next: u.addr()}
		_, addr := startProxy(t, Config{Router: RouterFunc(func(*Request) Decision {
			return Decision{Upstream: u.addr(), Retry: rt}
		})})
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || n.Load() != 1 {
			t.Fatalf("got %d after %d upstream requests", resp.StatusCode, n.Load())
		}
	})
	t.Run("POST bodies: small replayed, over the limit streamed once", func(t *testing.T) {
		for _, size := range []int{100, 40 << 10, 100 << 10} {
			u, n := flaky(t, 1)
			rt := &testRetrier{max: 2, next: u.addr()}
			_, addr := startProxy(t, Config{Router: RouterFunc(func(*Request) Decision {
				return Decision{Upstream: u.addr(), Retry: rt}
			})})
			resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("b", size)))
			if err != nil {
				t.Fatal(err)
			}
			body := mustRead(t, resp.Body)
			if size <= 64<<10 {
				if resp.StatusCode != 200 || body != fmt.Sprintf("ok %d", size) || n.Load() != 2 {
					t.Fatalf("%d B: got %d %q after %d upstream requests", size, resp.StatusCode, body, n.Load())
				}
			} else if resp.StatusCode != 503 || n.Load() != 1 {
				t.Fatalf("%d B: got %d after %d upstream requests, want 503 not retried", size, resp.StatusCode, n.Load())
			}
		}
	})
	t.Run("per-try timeout retries then 504", func(t *testing.T) {
		var n atomic.Int64
		u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}))
		rt := &testRetrier{max: 1, next: u.addr()}
		_, addr := startProxy(t, Config{Router: RouterFunc(func(*Request) Decision {
			return Decision{Upstream: u.addr(), Retry: rt, PerTryTimeout: 100 * time.Millisecond}
		})})
		start := time.Now()
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 504 || resp.Header.Get("X-Weft-Reason") != "upstream_per_try_timeout" || n.Load() != 2 {
			t.Fatalf("got %d %q after %d upstream requests", resp.StatusCode, resp.Header.Get("X-Weft-Reason"), n.Load())
		}
		if el := time.Since(start); el < 200*time.Millisecond || el > time.Second {
			t.Fatalf("took %v, want about 2 x 100ms", el)
		}
		if got := strings.Join(rt.seen, ","); got != "pertry,pertry" {
			t.Fatalf("retrier saw %s", got)
		}
	})
}

func TestConnectFailureIs503(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := l.Addr().String()
	l.Close()
	obs := &summaries{}
	_, addr := startProxy(t, Config{Observer: obs, Router: staticRouter(refused)})
	resp := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Reason") != "upstream_connect_failure" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("X-Weft-Reason"))
	}
	if s := obs.last(); !errors.Is(s.Err, ErrConnectFailure) {
		t.Fatalf("summary err %v", s.Err)
	}
}

func TestDelay(t *testing.T) {
	var n atomic.Int64
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	_, addr := startProxy(t, Config{Router: RouterFunc(func(r *Request) Decision {
		if string(r.Path()) == "/short" {
			return Decision{Upstream: u.addr(), Delay: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}
		}
		return Decision{Upstream: u.addr(), Delay: 200 * time.Millisecond}
	})})
	t.Run("delayed", func(t *testing.T) {
		start := time.Now()
		resp := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp.Body.Close()
		if el := time.Since(start); resp.StatusCode != 200 || el < 200*time.Millisecond {
			t.Fatalf("got %d after %v", resp.StatusCode, el)
		}
	})
	t.Run("timeout during delay", func(t *testing.T) {
		before := n.Load()
		resp := rawExchange(t, addr, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
		resp.Body.Close()
		if resp.StatusCode != 504 || n.Load() != before {
			t.Fatalf("got %d, upstream saw %d", resp.StatusCode, n.Load()-before)
		}
	})
	t.Run("client gone during delay", func(t *testing.T) {
		before := n.Load()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		c.Close()
		time.Sleep(300 * time.Millisecond)
		if n.Load() != before {
			t.Fatalf("request forwarded after the client left")
		}
	})
}

type stateObs struct{ got atomic.Pointer[int] }

func (o *stateObs) RequestStart(*Request) {}
func (o *stateObs) RequestEnd(_ *Request, s Summary) {
	if p, ok := s.State.(*int); ok {
		o.got.Store(p)
	}
}

func TestStateRoundTrip(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	mine := new(int)
	obs := &stateObs{}
	_, addr := startProxy(t, Config{Observer: obs, Router: RouterFunc(func(*Request) Decision {
		return Decision{Upstream: u.addr(), State: mine}
	})})
	resp := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp.Body.Close()
	if settle(0, func() int {
		if obs.got.Load() == mine {
			return 0
		}
		return 1
	}) != 0 {
		t.Fatal("State not handed back in Summary")
	}
}

func TestConnectTunnel(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	echo := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		io.Copy(c, br)
	})
	var sawAuthority atomic.Value
	tunnel := func(c net.Conn, req *Request, rest []byte) {
		sawAuthority.Store(string(req.Host()))
		up, err := net.Dial("tcp", echo)
		if err != nil {
			return
		}
		defer up.Close()
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		up.Write(rest)
		go func() {
			io.Copy(up, c)
			up.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(c, up)
	}
	_, addr := startProxy(t, Config{TunnelHandler: tunnel, Router: RouterFunc(func(r *Request) Decision {
		if r.IsConnect() {
			return Decision{Tunnel: true}
		}
		return Decision{Upstream: u.addr()}
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	// A plain request first, then CONNECT on the same connection, with
	// tunnel bytes sent right behind the CONNECT head.
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || mustRead(t, resp.Body) != "plain" {
		t.Fatalf("plain request: %v", err)
	}
	io.WriteString(c, "CONNECT echo.local:443 HTTP/1.1\r\nHost: echo.local:443\r\n\r\nhello")
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("CONNECT answered %q", line)
	}
	br.ReadString('\n')
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "hello" {
		t.Fatalf("tunnel echo %q %v", got, err)
	}
	io.WriteString(c, "world")
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "world" {
		t.Fatalf("tunnel echo %q %v", got, err)
	}
	if sawAuthority.Load() != "echo.local:443" {
		t.Fatalf("authority %v", sawAuthority.Load())
	}

	t.Run("no handler: 501", func(t *testing.T) {
		_, addr := startProxy(t, Config{Router: RouterFunc(func(*Request) Decision { return Decision{Tunnel: true} })})
		resp := rawExchange(t, addr, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n")
		if resp.StatusCode != 501 {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

func TestUpstreamTLSDial(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls "+r.Proto)
	}))
	t.Cleanup(up.Close)
	addr := up.Listener.Addr().String()
	var dials atomic.Int64
	pool := NewPool(PoolConfig{Dial: func(ctx context.Context, network, a, key string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		c, err := d.DialContext(ctx, network, a)
		if err != nil || key == "" {
			return c, err
		}
		if key != "test-ca" {
			c.Close()
			return nil, fmt.Errorf("unknown TLS key %q", key)
		}
		cfg := up.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.ServerName = "example.com" // in httptest's certificate
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}})
	t.Cleanup(pool.Close)
	_, paddr := startProxy(t, Config{Pool: pool, Router: RouterFunc(func(r *Request) Decision {
		if string(r.Path()) == "/plain" {
			return Decision{Upstream: addr}
		}
		return Decision{Upstream: addr, UpstreamTLS: "test-ca"}
	})})
	c, err := net.Dial("tcp", paddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := mustRead(t, resp.Body); resp.StatusCode != 200 || b != "tls HTTP/1.1" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
	}
	if dials.Load() != 1 {
		t.Fatalf("%d dials for 3 keep-alive requests, want 1", dials.Load())
	}
	// The same address without the TLS key is a different pool entry: a
	// plain connection the TLS server rejects.
	io.WriteString(c, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 || dials.Load() != 2 {
		t.Fatalf("plain request to the TLS port: %d, %d dials", resp.StatusCode, dials.Load())
	}
}
