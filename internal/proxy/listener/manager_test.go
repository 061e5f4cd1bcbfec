package listener

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime"
)

func tcpListener(name string, port uint32, statPrefix string) *listenerv3.Listener {
	tp, _ := anypb.New(&tcpv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "PassthroughCluster"}})
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		UseOriginalDst: wrapperspb.Bool(true),
		DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
			Name: runtime.FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}}},
	}
}

// TestUpdateKeepsSockets: a listener whose content changes keeps its socket;
// a removed listener loses it.
func TestUpdateKeepsSockets(t *testing.T) {
	h := runtime.NewHolder(nil)
	m := New(Config{Holder: h, Mode: Transparent, BindAddr: netip.MustParseAddr("127.0.0.1"),
		PortOverrides: map[uint16]uint16{15001: 0}})
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	build := func(prev *runtime.Snapshot, l *listenerv3.Listener) *runtime.Snapshot {
		s, err := runtime.Build(prev, l)
		if err != nil {
			t.Fatal(err)
		}
		h.Store(s)
		return s
	}
	s1 := build(nil, tcpListener("virtualOutbound", 15001, "a"))
	if err := m.Update(s1); err != nil {
		t.Fatal(err)
	}
	addr1 := m.Addrs()["virtualOutbound"]
	if addr1 == "" {
		t.Fatalf("not bound: %v", m.Addrs())
	}
	ln1 := m.bound["virtualOutbound"].ln
	s2 := build(s1, tcpListener("virtualOutbound", 15001, "b"))
	if !runtime.ListenerChanged(s1.Listener("virtualOutbound"), s2.Listener("virtualOutbound")) {
		t.Fatal("fixture: listener should have changed")
	}
	if err := m.Update(s2); err != nil {
		t.Fatal(err)
	}
	if m.bound["virtualOutbound"].ln != ln1 || m.Addrs()["virtualOutbound"] != addr1 {
		t.Fatal("socket replaced for a content-only change")
	}
	// A connection straight to the capture port (not redirected) is closed,
	// not passed through to itself.
	c, err := net.Dial("tcp", addr1)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("want the connection closed, got %d %v", n, err)
	}
	c.Close()

	s3, err := runtime.Build(s2)
	if err != nil {
		t.Fatal(err)
	}
	h.Store(s3)
	if err := m.Update(s3); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Addrs()["virtualOutbound"]; ok {
		t.Fatal("removed listener still bound")
	}
	if _, err := net.DialTimeout("tcp", addr1, time.Second); err == nil {
		t.Fatal("removed listener still accepts")
	}
}

// TestConnectPassthrough: CONNECT to a non-mesh host:port tunnels directly,
// also after a plain request on the same connection.
func TestConnectPassthrough(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	const plain = "example.invalid"
	m := New(Config{Holder: runtime.NewHolder(nil), Mode: Explicit, BindAddr: netip.MustParseAddr("127.0.0.1")})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	c, err := net.Dial("tcp", m.Addrs()[ExplicitListenerName])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	// A plain request first: h1 hands the CONNECT that follows on the same
	// keep-alive connection to the tunnel handler.
	io.WriteString(c, "GET http://"+plain+"/ HTTP/1.1\r\nHost: "+plain+"\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("plain request: %v", err)
	}
	// No snapshot yet: a local 404 that keeps the connection open.
	if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 404 || resp.Close {
		t.Fatalf("plain request: %d close=%v %v", resp.StatusCode, resp.Close, err)
	}
	// The first tunnel bytes ride in the same write as the CONNECT head.
	io.WriteString(c, "CONNECT "+echo.Addr().String()+" HTTP/1.1\r\nHost: "+echo.Addr().String()+"\r\n\r\nhello")
	resp, err = http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("tunnel echo: %q %v", buf, err)
	}
	if _, err := io.WriteString(c, "world"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "world" {
		t.Fatalf("tunnel echo: %q %v", buf, err)
	}
}

func TestSplitHostPort(t *testing.T) {
	for in, want := range map[string][2]string{
		"a.b:80": {"a.b", "80"}, "a.b": {"a.b", ""}, "[::1]:8080": {"[::1]", "8080"}, "[::1]": {"[::1]", ""},
	} {
		h, p := splitHostPort([]byte(in))
		if string(h) != want[0] || string(p) != want[1] {
			t.Errorf("%s: %q %q", in, h, p)
		}
	}
}
