package h1

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestRawIO runs the opt-in raw socket path through streaming bodies,
// keep-alive reuse and the deadline-driven 504.
func TestRawIO(t *testing.T) {
	up := newUpstream(t, echoHandler())
	black, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer black.Close()
	router := RouterFunc(func(r *Request) Decision {
		if string(r.Path()) == "/black" {
			return Decision{Upstream: black.Addr().String(), Timeout: 200 * time.Millisecond}
		}
		return Decision{Upstream: up.addr()}
	})
	pool := NewPool(PoolConfig{RawIO: true})
	defer pool.Close()
	_, addr := startProxy(t, Config{Router: router, Pool: pool, RawIO: true})

	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, streamed
	client := &http.Client{}
	defer client.CloseIdleConnections()
	for i := 0; i < 3; i++ {
		resp, err := client.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("round %d: %d bytes, %v", i, len(got), err)
		}
	}
	// net/http closes after answering before the body was fully read, so
	// check reuse with small bodies.
	before := up.conns.Load()
	for i := 0; i < 5; i++ {
		resp, err := client.Post("http://"+addr+"/", "text/plain", bytes.NewReader(body[:1000]))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := up.conns.Load(); n > before+1 {
		t.Errorf("upstream connections grew %d -> %d over 5 keep-alive requests", before, n)
	}
	resp := rawExchange(t, addr, "GET /black HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 504 {
		t.Fatalf("black hole: %d, want 504", resp.StatusCode)
	}
}
