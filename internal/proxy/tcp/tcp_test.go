package tcp

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// serve runs fn for each connection on a 127.0.0.1:0 listener.
func serve(t *testing.T, fn func(net.Conn)) string {
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
			go func() { defer wg.Done(); defer c.Close(); fn(c) }()
		}
	}()
	return l.Addr().String()
}

// startProxy forwards every accepted connection to upstream.
func startProxy(t *testing.T, p *Proxy, upstream string, stats chan<- Stats) string {
	return serve(t, func(c net.Conn) {
		st, _ := p.Forward(c, upstream)
		if stats != nil {
			stats <- st
		}
	})
}

func TestForwardHalfCloseAndCounts(t *testing.T) {
	// Upstream reads everything until EOF, then answers with its length:
	// only works if the proxy propagates the client's half-close.
	up := serve(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		_, _ = c.Write(bytes.Repeat([]byte{'x'}, int(n/2)))
	})
	stats := make(chan Stats, 1)
	addr := startProxy(t, New(Config{}), up, stats)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	payload := bytes.Repeat([]byte("abcd"), 1<<18) // 1 MiB
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(payload)/2 {
		t.Fatalf("got %d bytes, err %v", len(got), err)
	}
	st := <-stats
	if st.Sent != int64(len(payload)) || st.Received != int64(len(payload)/2) {
		t.Fatalf("stats %+v", st)
	}
}

func TestIdleTimeoutAndConnectFailure(t *testing.T) {
	up := serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
	addr := startProxy(t, New(Config{IdleTimeout: 150 * time.Millisecond}), up, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Activity keeps it open past the idle timeout...
	for i := 0; i < 4; i++ {
		_, _ = c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		time.Sleep(80 * time.Millisecond)
	}
	// ...silence closes it.
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("want EOF after idle, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle close took %v", d)
	}

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	a, b := net.Pipe()
	defer b.Close()
	if _, err := New(Config{ConnectTimeout: time.Second}).Forward(a, dead); err == nil {
		t.Fatal("want dial error")
	}
}

func TestNoLeaks(t *testing.T) {
	g0 := runtime.NumGoroutine()
	fd0 := fds()
	func() {
		up := serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
		addr := startProxy(t, New(Config{}), up, nil)
		for i := 0; i < 20; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte("hi"))
			buf := make([]byte, 2)
			_, _ = io.ReadFull(c, buf)
			c.Close()
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	for (runtime.NumGoroutine() > g0+2 || fds() > fd0+2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > g0+2 { // t.Cleanup listeners close after the test
		t.Errorf("goroutines %d -> %d", g0, g)
	}
	if f := fds(); f > fd0+2 { // the two test listeners close at cleanup
		t.Errorf("fds %d -> %d", fd0, f)
	}
}

// fds counts open sockets; io.Copy's splice pipes are pooled by the
// runtime and freed lazily, so they are not counted.
func fds() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); len(l) > 7 && l[:7] == "socket:" {
			n++
		}
	}
	return n
}
