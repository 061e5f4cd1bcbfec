package listener

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// TestInboundDispatch: a connection redirected to virtualInbound with
// original destination port 9080 is served by that port's filter chain (HCM
// with an inline route config) and forwarded to the inbound cluster's
// 127.0.0.1:appPort; metrics report it as reporter="destination".
func TestInboundDispatch(t *testing.T) {
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app "+r.URL.Path) })}
	go srv.Serve(app)
	defer srv.Close()
	appPort := uint32(app.Addr().(*net.TCPAddr).Port)

	const inbound = "inbound|9080||productpage.default.svc.cluster.local"
	routerAny, _ := anypb.New(&routerv3.Router{})
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "inbound_0.0.0.0_9080",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound|9080||",
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: inbound}}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: runtime.FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerAny}}},
	})
	vi := &listenerv3.Listener{
		Name:    "virtualInbound",
		Address: sockAddr("0.0.0.0", 15006),
		FilterChains: []*listenerv3.FilterChain{{
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080)},
			Filters:          []*listenerv3.Filter{{Name: runtime.FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}},
	}
	cl := &clusterv3.Cluster{
		Name:                 inbound,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: inbound, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: sockAddr("127.0.0.1", appPort)}}}}}}},
	}
	s, err := runtime.Build(nil, cl, vi)
	if err != nil {
		t.Fatal(err)
	}
	h := runtime.NewHolder(s)
	metrics := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"})
	m := New(Config{Holder: h, Mode: Transparent, BindAddr: netip.MustParseAddr("127.0.0.1"),
		PortOverrides: map[uint16]uint16{15006: 0}, Metrics: metrics})
	// Simulate the REDIRECT: the workload was called on 10.0.0.5:9080.
	var dst atomic.Pointer[netip.AddrPort]
	set := func(s string) { a := netip.MustParseAddrPort(s); dst.Store(&a) }
	set("10.0.0.5:9080")
	m.origDst = func(net.Conn) (netip.AddrPort, error) { return *dst.Load(), nil }
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.Update(s); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + m.Addrs()["virtualInbound"] + "/productpage")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "app /productpage" {
		t.Fatalf("inbound: %d %q", resp.StatusCode, body)
	}
	// A port without a chain has no default chain here: the connection closes.
	set("10.0.0.5:7777")
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := fresh.Get("http://" + m.Addrs()["virtualInbound"] + "/x"); err == nil {
		t.Fatal("want a closed connection for a port without a filter chain")
	}
	rec := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
	if out := rec.Body.String(); !strings.Contains(out, `reporter="destination"`) || !strings.Contains(out, `destination_workload="productpage-v1"`) {
		t.Errorf("no destination-reported request in:\n%.2000s", out)
	}
}
