package listener

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime"
)

func TestClassifyHTTP(t *testing.T) {
	for _, tc := range []struct {
		in    string
		proto string
		done  bool
	}{
		{"GET / HTTP/1.1\r\n", "http/1.1", true},
		{"POST /x?y=1 HTTP/1.0\r\n", "http/1.0", true},
		{"OPTIONS * HTTP/1.1\n", "http/1.1", true},
		{"GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", "http/1.1", true},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2c", true},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", "h2c", true},
		{"PUT /a HTTP/1.1\r\n", "http/1.1", true},
		// Not decided yet: a prefix of something HTTP.
		{"", "", false},
		{"G", "", false},
		{"PRI * HTTP/2", "", false},
		{"GET /", "", false},
		{"GET / HTTP/1.", "", false},
		{"GET / HTTP/1.1", "", false},
		// Not HTTP.
		{"hello\n", "", true},
		{"SSH-2.0-OpenSSH_9.6\r\n", "", true},
		{"*1\r\n$4\r\nPING\r\n", "", true},
		{"\x16\x03\x01\x02\x00", "", true},
		{"GET / HTTP/2.0\r\n", "", true},
		{"GET / HTTP/1.1 \r\n", "", true},
		{"GET  / HTTP/1.1\r\n", "", true},
		{" GET / HTTP/1.1\r\n", "", true},
		{"GET / FTP/1.1\r\n", "", true},
		{"PRI * HTTP/2.0\r\n\r\nXX", "", true},
	} {
		proto, done := classifyHTTP([]byte(tc.in))
		if proto != tc.proto || done != tc.done {
			t.Errorf("classifyHTTP(%q) = %q, %v; want %q, %v", tc.in, proto, done, tc.proto, tc.done)
		}
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func staticCluster(name string, port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: sockAddr("127.0.0.1", port)}}}}}}},
	}
}

func tcpProxyFilter(t *testing.T, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: runtime.FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t,
		&tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})}}
}

func hcmFilter(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	hcm.HttpFilters = []*hcmv3.HttpFilter{{Name: runtime.FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}}
	return &listenerv3.Filter{Name: runtime.FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}
}

func listenerFilter(t *testing.T, name string) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: name, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &wrapperspb.StringValue{})}}
}

// startVersionApp answers every HTTP request with its version.
func startVersionApp(t *testing.T, version string) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// startGreeter is a server-first TCP app: it greets, then echoes lines.
func startGreeter(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprint(c, "220 ready\r\n")
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// TestOutboundSniffing: a captured connection to a VIP whose port declares
// no protocol (weftd's shape: http_inspector, an HCM chain for http/1.x and
// h2c with the port's RDS table, tcp_proxy as default chain). HTTP is routed
// by the table's header match; other client-first TCP and a server-first
// protocol (after the inspection timeout) pass through to the TCP cluster.
func TestOutboundSniffing(t *testing.T) {
	const (
		v1, v2, tcpCl = "outbound|7000|v1|legacy", "outbound|7000|v2|legacy", "outbound|7000||legacy"
	)
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	vip := &listenerv3.Listener{
		Name:            "10.0.0.40_7000",
		Address:         sockAddr("10.0.0.40", 7000),
		BindToPort:      wrapperspb.Bool(false),
		ListenerFilters: []*listenerv3.ListenerFilter{listenerFilter(t, runtime.FilterHTTPInspect)},
		FilterChains: []*listenerv3.FilterChain{{
			Name:             tcpCl + "|http",
			FilterChainMatch: &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.0", "http/1.1", "h2c"}},
			Filters: []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{StatPrefix: tcpCl,
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "7000", ConfigSource: ads}}})},
		}},
		DefaultFilterChain: &listenerv3.FilterChain{Name: tcpCl, Filters: []*listenerv3.Filter{tcpProxyFilter(t, tcpCl)}},
	}
	vo := &listenerv3.Listener{
		Name: "virtualOutbound", Address: sockAddr("0.0.0.0", 15001), UseOriginalDst: wrapperspb.Bool(true),
		DefaultFilterChain: &listenerv3.FilterChain{Name: "PassthroughFilterChain", Filters: []*listenerv3.Filter{tcpProxyFilter(t, tcpCl)}},
	}
	route := func(c string) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}}
	}
	rc := &routev3.RouteConfiguration{Name: "7000", VirtualHosts: []*routev3.VirtualHost{{
		Name: "legacy:7000", Domains: []string{"legacy:7000", "10.0.0.40:7000"},
		Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{
				Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "yes"}}}}}}, Action: route(v2)},
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: route(v1)},
		},
	}}}
	s, err := runtime.Build(nil, staticCluster(v1, startVersionApp(t, "v1")), staticCluster(v2, startVersionApp(t, "v2")),
		staticCluster(tcpCl, startGreeter(t)), vip, vo, rc)
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{Holder: runtime.NewHolder(s), Mode: Transparent, BindAddr: netip.MustParseAddr("127.0.0.1"),
		PortOverrides: map[uint16]uint16{15001: 0}, ListenerFiltersTimeout: 300 * time.Millisecond})
	m.origDst = func(net.Conn) (netip.AddrPort, error) { return netip.MustParseAddrPort("10.0.0.40:7000"), nil }
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.Update(s); err != nil {
		t.Fatal(err)
	}
	addr := m.Addrs()["virtualOutbound"]

	for _, tc := range []struct{ header, want string }{{"x-canary: yes\r\n", "200 v2"}, {"", "200 v1"}, {"x-canary: no\r\n", "200 v1"}} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rawRequest(c, "GET / HTTP/1.1\r\nHost: legacy:7000\r\n"+tc.header+"Connection: close\r\n\r\n")
		if err != nil || got != tc.want {
			t.Errorf("HTTP with %q: %q %v, want %q", tc.header, got, err, tc.want)
		}
	}

	// Client-first TCP: decided at the first byte that is not HTTP.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	fmt.Fprint(c, "hello\n")
	br := bufio.NewReader(c)
	if l, err := br.ReadString('\n'); err != nil || l != "220 ready\r\n" {
		t.Fatalf("TCP greeting: %q %v", l, err)
	}
	if l, err := br.ReadString('\n'); err != nil || l != "hello\n" {
		t.Fatalf("TCP echo: %q %v", l, err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("client-first TCP waited %v: it should not need the inspection timeout", d)
	}

	// Server-first: the client waits for the greeting, which comes once
	// the inspector gave up.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	br2 := bufio.NewReader(c2)
	if l, err := br2.ReadString('\n'); err != nil || l != "220 ready\r\n" {
		t.Fatalf("server-first greeting: %q %v", l, err)
	}
	fmt.Fprint(c2, "GET / HTTP/1.1\r\n")
	if l, err := br2.ReadString('\n'); err != nil || l != "GET / HTTP/1.1\r\n" {
		t.Fatalf("server-first echo: %q %v (a decided connection stays TCP)", l, err)
	}
}

// rawRequest writes req on c and returns "STATUS BODY" of the response.
func rawRequest(c net.Conn, req string) (string, error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body), nil
}

// sniffedInbound is virtualInbound for one port without a declared
// protocol in PERMISSIVE mode, as translate generates it: HTTP chains (mesh
// mTLS announcing istio-http/*, plaintext http/1.x) to the app, TCP chains
// to a greeter, so a test can tell which chain served a connection. Port
// declaredTCP is a plain TCP port (protocol declared) to the greeter too.
func sniffedInbound(t *testing.T, port, declaredTCP, appPort, tcpPort uint32) *runtime.Snapshot {
	t.Helper()
	const app, raw = "inbound|7000||legacy", "inbound|7000||legacy-tcp"
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	mtls := &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio", "h2", "http/1.1"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: ads}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ads}},
		},
	})}}
	httpF := func() []*listenerv3.Filter {
		return []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_7000",
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
				Name: "inbound|7000||",
				VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|7000", Domains: []string{"*"}, Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: app}}},
				}}}},
			}}})}
	}
	tcpF := func() []*listenerv3.Filter { return []*listenerv3.Filter{tcpProxyFilter(t, raw)} }
	chain := func(suffix, transport string, alpn []string, f []*listenerv3.Filter, ts *corev3.TransportSocket) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{
			Name:             app + suffix,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transport, ApplicationProtocols: alpn},
			Filters:          f, TransportSocket: ts,
		}
	}
	vi := &listenerv3.Listener{
		Name: "virtualInbound", Address: sockAddr("0.0.0.0", 15006),
		ListenerFilters: []*listenerv3.ListenerFilter{listenerFilter(t, runtime.FilterTLSInspector), listenerFilter(t, runtime.FilterHTTPInspect)},
		FilterChains: []*listenerv3.FilterChain{
			chain("|mtls|http", "tls", []string{"istio-http/1.0", "istio-http/1.1", "istio-h2"}, httpF(), mtls),
			chain("|mtls", "tls", []string{"istio-peer-exchange", "istio"}, tcpF(), mtls),
			chain("|tls", "tls", nil, tcpF(), nil),
			chain("|http", "", []string{"http/1.0", "http/1.1", "h2c"}, httpF(), nil),
			chain("", "", nil, tcpF(), nil),
			{Name: "declared-tcp", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(declaredTCP)}, Filters: tcpF()},
		},
	}
	s, err := runtime.Build(nil, staticCluster(app, appPort), staticCluster(raw, tcpPort), vi)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestInboundSniffing: on a sniffed inbound port, HTTP reaches the HCM
// (the app) and other bytes the TCP chain (the greeter), in plaintext and
// inside mesh mTLS, where a client announcing only "istio" (weft-proxy's
// own) is moved to the HTTP chain by sniffing the decrypted stream.
func TestInboundSniffing(t *testing.T) {
	ca := newTestCA(t, "cluster.local")
	serving := ca.issue(t, "spiffe://cluster.local/ns/default/sa/legacy")
	client := ca.issue(t, "spiffe://cluster.local/ns/default/sa/reviews")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	s := sniffedInbound(t, 7000, 7001, startVersionApp(t, "app"), startGreeter(t))
	m := New(Config{Holder: runtime.NewHolder(s), Mode: Transparent, BindAddr: netip.MustParseAddr("127.0.0.1"),
		PortOverrides: map[uint16]uint16{15006: 0}, ListenerFiltersTimeout: 2 * time.Second,
		InboundTLS: &InboundTLS{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil },
			Roots:          func() *x509.CertPool { return roots },
			TrustDomain:    "cluster.local",
		}})
	var dst atomic.Pointer[netip.AddrPort]
	setDst := func(s string) { a := netip.MustParseAddrPort(s); dst.Store(&a) }
	setDst("10.0.0.5:7000")
	m.origDst = func(net.Conn) (netip.AddrPort, error) { return *dst.Load(), nil }
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.Update(s); err != nil {
		t.Fatal(err)
	}
	addr := m.Addrs()["virtualInbound"]
	dial := func(alpn ...string) net.Conn {
		t.Helper()
		if alpn == nil {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client}, NextProtos: alpn})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		alpn []string
		tcp  bool // a client announcing HTTP gets the HCM whatever it sends
	}{
		{"plaintext", nil, true},
		{"mTLS announcing istio (weft-proxy)", []string{"istio-peer-exchange", "istio"}, true},
		{"mTLS announcing istio-http/1.1 (Istio)", []string{"istio-http/1.1", "istio"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rawRequest(dial(tc.alpn...), "GET /x HTTP/1.1\r\nHost: legacy\r\nConnection: close\r\n\r\n")
			if err != nil || got != "200 app" {
				t.Errorf("HTTP: %q %v, want the app through the HCM", got, err)
			}
			if !tc.tcp {
				return
			}
			c := dial(tc.alpn...)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprint(c, "ping\n")
			br := bufio.NewReader(c)
			if l, err := br.ReadString('\n'); err != nil || l != "220 ready\r\n" {
				t.Fatalf("TCP greeting: %q %v", l, err)
			}
			if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "ping") {
				t.Fatalf("TCP echo: %q %v", l, err)
			}
		})
	}

	// A server-first protocol on a port with a declared protocol is not
	// held by the inspector that another port of the listener needs.
	t.Run("declared TCP port", func(t *testing.T) {
		setDst("10.0.0.5:7001")
		c := dial()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || l != "220 ready\r\n" {
			t.Fatalf("greeting: %q %v", l, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("greeting after %v: the inspector waited on a port that is not sniffed", d)
		}
	})
}

func tcpProxyFilterStat(t *testing.T, cluster, stat string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: runtime.FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t,
		&tcpv3.TcpProxy{StatPrefix: stat, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})}}
}
