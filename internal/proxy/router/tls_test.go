package router_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/router"
	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
)

var ads = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}

// meshSocket is the ISTIO_MUTUAL socket weftd generates; certName "default"
// is the workload certificate, anything else a credentialName secret.
func meshSocket(certName string) *corev3.TransportSocket {
	ctx := &tlsv3.UpstreamTlsContext{Sni: "outbound_.9080_._." + host, CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: certName, SdsConfig: ads}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ads}},
	}}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// autoMTLS is Istio's auto mTLS: mTLS to endpoints labelled tlsMode=istio.
func autoMTLS(c *clusterv3.Cluster) {
	match, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: match, TransportSocket: meshSocket("default")},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{
			Name: "envoy.transport_sockets.raw_buffer", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})}}},
	}
}

// tlsModeCLA marks the endpoints at mesh (by index) with tlsMode=istio.
func tlsModeCLA(name string, addrs []string, mesh ...int) *endpointv3.ClusterLoadAssignment {
	c := cla(name, addrs...)
	md, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	for _, i := range mesh {
		c.Endpoints[0].LbEndpoints[i].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": md}}
	}
	return c
}

// dialLog is a PoolConfig.Dial that records (address, TLS key) and dials
// plain TCP: the engine and the router are under test, not TLS.
type dialLog struct {
	mu    sync.Mutex
	dials []string
}

func (d *dialLog) dial(ctx context.Context, network, addr, key string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, addr+" "+key)
	d.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (d *dialLog) keysFor(addr string) map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for _, l := range d.dials {
		if a, k, _ := strings.Cut(l, " "); a == addr {
			out[k]++
		}
	}
	return out
}

func serveWithDial(t *testing.T, h *wrt.Holder, dial func(context.Context, string, string, string) (net.Conn, error)) string {
	t.Helper()
	rt := router.New(router.Config{Holder: h, Source: portSource{}})
	srv, err := h1.NewServer(h1.Config{Router: rt, Observer: rt, Pool: h1.NewPool(h1.PoolConfig{Dial: dial})})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func tlsHolder(t testing.TB, c *clusterv3.Cluster, l *endpointv3.ClusterLoadAssignment, policy *routev3.RetryPolicy) *wrt.Holder {
	t.Helper()
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "r", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c.Name}, RetryPolicy: policy}}},
	}}}}
	s, err := wrt.Build(nil, c, l, rc)
	if err != nil {
		t.Fatal(err)
	}
	return wrt.NewHolder(s)
}

// TestUpstreamTLSKeys: each endpoint is dialled with its own transport
// (auto mTLS: a key for tlsMode=istio endpoints, none for the others).
func TestUpstreamTLSKeys(t *testing.T) {
	mesh, plain := countedBackend(t, status(200)), countedBackend(t, status(200))
	c := edsCluster(v1Name, 1024)
	autoMTLS(c)
	h := tlsHolder(t, c, tlsModeCLA(v1Name, []string{mesh.addr, plain.addr}, 0), nil)
	log := &dialLog{}
	addr := serveWithDial(t, h, log.dial)
	for i := 0; i < 6; i++ {
		if code, body := get(t, "http://"+addr+"/"); code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
	}
	meshKeys, plainKeys := log.keysFor(mesh.addr), log.keysFor(plain.addr)
	if len(meshKeys) != 1 || meshKeys[""] != 0 || len(plainKeys) != 1 || plainKeys[""] == 0 {
		t.Fatalf("dials: mesh endpoint %v, plaintext endpoint %v", meshKeys, plainKeys)
	}
	for k := range meshKeys {
		if !strings.HasPrefix(k, "tls:") {
			t.Fatalf("mesh endpoint dialled with key %q", k)
		}
	}
}

// TestRetryFollowsEndpointTransport: a connect failure on the mTLS endpoint
// is retried on the plaintext one with the plaintext transport.
func TestRetryFollowsEndpointTransport(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := l.Addr().String()
	l.Close()
	plain := countedBackend(t, status(200))
	c := edsCluster(v1Name, 1024)
	autoMTLS(c)
	h := tlsHolder(t, c, tlsModeCLA(v1Name, []string{refused, plain.addr}, 0), istioRetry("connect-failure", 2, 0))
	log := &dialLog{}
	addr := serveWithDial(t, h, log.dial)
	for i := 0; i < 6; i++ {
		if code, body := get(t, "http://"+addr+"/"); code != 200 {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if k := log.keysFor(plain.addr); len(k) != 1 || k[""] == 0 {
		t.Fatalf("the plaintext endpoint was dialled with %v", k)
	}
	if k := log.keysFor(refused); k[""] != 0 || len(k) != 1 {
		t.Fatalf("the mTLS endpoint was dialled with %v", k)
	}
}

// TestUpstreamTLSUnavailable: a context weft-proxy has no secret for
// (credentialName) answers 503 upstream_tls_unavailable; nothing is dialled.
func TestUpstreamTLSUnavailable(t *testing.T) {
	b := countedBackend(t, status(200))
	c := edsCluster(v1Name, 1024)
	c.TransportSocket = meshSocket("kubernetes://client-credential")
	h := tlsHolder(t, c, cla(v1Name, b.addr), nil)
	log := &dialLog{}
	addr := serveWithDial(t, h, log.dial)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Reason") != router.ReasonTLSUnavailable {
		t.Fatalf("got %d %s", resp.StatusCode, resp.Header.Get("X-Weft-Reason"))
	}
	if n := len(log.keysFor(b.addr)); n != 0 || b.n.Load() != 0 {
		t.Fatalf("dialled %d times", n)
	}
}
