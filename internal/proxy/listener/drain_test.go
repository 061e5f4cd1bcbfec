package listener

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime"
)

// keepAlive is a plaintext HTTP/1.1 client connection kept open between
// requests.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c: c, br: bufio.NewReader(c)}
}

func (k *keepAlive) get(path string) (string, error) {
	_ = k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: productpage\r\n\r\n", path); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body), nil
}

// closedWithin reports whether the peer closes c within d (nothing may
// arrive before the close).
func closedWithin(c net.Conn, r io.Reader, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := r.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("read %q, want the connection closed", b[:n])
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("still open after %v", d)
	case err == nil:
		return errors.New("read nothing and no error")
	}
	return nil // EOF or reset
}

// TestDrainChangedChains: PERMISSIVE -> STRICT on one port. A plaintext
// keep-alive connection accepted under PERMISSIVE is closed by the update
// (it would otherwise go on in plaintext under STRICT), while a keep-alive
// connection on a port whose chains did not change keeps being served, and
// a TCP connection whose chain changed is closed after the drain time.
func TestDrainChangedChains(t *testing.T) {
	const bind = "127.0.0.1"
	switched, steady, tcpPort := freePort(t, bind), freePort(t, bind), freePort(t, bind)
	appPort, echoPort := startApp(t), startEcho(t)
	build := func(mode, tcpStat string) *runtime.Snapshot {
		vi := mtlsInboundListener(t, map[uint32]string{switched: mode, steady: "PERMISSIVE"})
		// A stat prefix change is enough to make it another chain.
		vi.FilterChains = append(vi.FilterChains, &listenerv3.FilterChain{
			Name:             "tcp",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(tcpPort)},
			Filters:          []*listenerv3.Filter{tcpProxyFilterStat(t, "echo", tcpStat)},
		})
		s, err := runtime.Build(nil, inboundAppCluster(appPort), staticCluster("echo", echoPort), vi)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := build("PERMISSIVE", "tcp-a")
	h := runtime.NewHolder(before)
	m := New(Config{Holder: h, Mode: Explicit, BindAddr: netip.MustParseAddr(bind), DrainTime: 300 * time.Millisecond})
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.UpdateExplicitInbound(before); err != nil {
		t.Fatal(err)
	}
	addr := func(p uint32) string { return net.JoinHostPort(bind, fmt.Sprint(p)) }

	changed, unchanged := dialKeepAlive(t, addr(switched)), dialKeepAlive(t, addr(steady))
	for _, k := range []*keepAlive{changed, unchanged} {
		if got, err := k.get("/before"); err != nil || got != "200 app /before" {
			t.Fatalf("before the update: %q %v", got, err)
		}
	}
	tcp, err := net.Dial("tcp", addr(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tbr := bufio.NewReader(tcp)
	_ = tcp.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(tcp, "one\n")
	if l, err := tbr.ReadString('\n'); err != nil || l != "one\n" {
		t.Fatalf("TCP echo: %q %v", l, err)
	}

	after := build("STRICT", "tcp-b")
	h.Store(after)
	if err := m.Update(after); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateExplicitInbound(after); err != nil {
		t.Fatal(err)
	}

	// The idle connection on the changed chain is closed at once.
	if err := closedWithin(changed.c, changed.br, 2*time.Second); err != nil {
		t.Errorf("plaintext keep-alive connection on the switched port: %v", err)
	}
	if got, err := dialKeepAlive(t, addr(switched)).get("/new"); err == nil {
		t.Errorf("new plaintext connection under STRICT got %q", got)
	}
	// The unchanged chain's connection goes on.
	for i := range 3 {
		if got, err := unchanged.get(fmt.Sprintf("/after%d", i)); err != nil || got != fmt.Sprintf("200 app /after%d", i) {
			t.Fatalf("keep-alive connection on the unchanged port: %q %v", got, err)
		}
	}
	// TCP: still relayed during the drain time, closed after it.
	start := time.Now()
	fmt.Fprint(tcp, "two\n")
	if l, err := tbr.ReadString('\n'); err != nil || l != "two\n" {
		t.Fatalf("TCP during the drain time: %q %v", l, err)
	}
	if err := closedWithin(tcp, tbr, 3*time.Second); err != nil {
		t.Errorf("TCP connection on a changed chain: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("TCP connection closed after %v, before the drain time", d)
	}
}

// TestDrainHTTPResponseInFlight: a request in flight when its chain
// changes is answered, with Connection: close, and the connection closes.
func TestDrainHTTPResponseInFlight(t *testing.T) {
	const bind = "127.0.0.1"
	port := freePort(t, bind)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "app "+r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	appPort := uint32(ln.Addr().(*net.TCPAddr).Port)
	build := func(mode string) *runtime.Snapshot {
		s, err := runtime.Build(nil, inboundAppCluster(appPort), mtlsInboundListener(t, map[uint32]string{port: mode}))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := build("PERMISSIVE")
	h := runtime.NewHolder(before)
	m := New(Config{Holder: h, Mode: Explicit, BindAddr: netip.MustParseAddr(bind)})
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.UpdateExplicitInbound(before); err != nil {
		t.Fatal(err)
	}
	k := dialKeepAlive(t, net.JoinHostPort(bind, fmt.Sprint(port)))
	done := make(chan *http.Response, 1)
	go func() {
		_ = k.c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(k.c, "GET /slow HTTP/1.1\r\nHost: productpage\r\n\r\n")
		resp, err := http.ReadResponse(k.br, nil)
		if err != nil {
			done <- nil
			return
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- resp
	}()
	<-entered
	after := build("STRICT")
	h.Store(after)
	if err := m.Update(after); err != nil {
		t.Fatal(err)
	}
	close(release)
	resp := <-done
	if resp == nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("in-flight response = %+v, want 200 with Connection: close", resp)
	}
	if err := closedWithin(k.c, k.br, 2*time.Second); err != nil {
		t.Errorf("connection after the drained response: %v", err)
	}
}

// TestDrainH2C: an idle h2c connection whose chain changed is sent GOAWAY
// (the client stops using it) while the server stays usable.
func TestDrainH2C(t *testing.T) {
	const bind = "127.0.0.1"
	port := freePort(t, bind)
	appPort := startApp(t)
	build := func(mode string) *runtime.Snapshot {
		s, err := runtime.Build(nil, inboundAppCluster(appPort), mtlsInboundListener(t, map[uint32]string{port: mode}))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := build("PERMISSIVE")
	h := runtime.NewHolder(before)
	m := New(Config{Holder: h, Mode: Explicit, BindAddr: netip.MustParseAddr(bind)})
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.UpdateExplicitInbound(before); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(bind, fmt.Sprint(port))
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req, _ := http.NewRequest("GET", "http://"+addr+"/h2", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "app /h2" {
		t.Fatalf("h2c before the update: %d %q", resp.StatusCode, body)
	}
	if !cc.CanTakeNewRequest() {
		t.Fatal("client connection unusable before the update")
	}
	after := build("STRICT")
	h.Store(after)
	if err := m.Update(after); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for cc.CanTakeNewRequest() {
		if time.Now().After(deadline) {
			t.Fatal("h2c connection on a changed chain got no GOAWAY")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
