package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	securityv1 "istio.io/api/security/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/proxy/runtime"
)

// legacyObjects adds "legacy", a service whose port 7000 declares no
// protocol (port name without a protocol prefix), served by productpage,
// with a VirtualService that routes HTTP by header.
func legacyObjects(extra ...*config.Object) []*config.Object {
	return append(append(bookinfoObjects(),
		rtObj(config.KindServiceEntry, "default", "legacy", 0, &networkingv1.ServiceEntry{
			Hosts: []string{"legacy.default.svc.cluster.local"}, Addresses: []string{"10.0.0.40"},
			Ports:    rtPorts(&networkingv1.ServicePort{Name: "legacy", Number: 7000, TargetPort: 17000}),
			Location: networkingv1.ServiceEntry_MESH_INTERNAL, Resolution: networkingv1.ServiceEntry_STATIC,
			WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "productpage"}},
		}),
		rtObj(config.KindDestinationRule, "default", "legacy", 0, &networkingv1.DestinationRule{
			Host: "legacy",
			Subsets: []*networkingv1.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		}),
		rtObj(config.KindVirtualService, "default", "legacy", 0, &networkingv1.VirtualService{
			Hosts: []string{"legacy"},
			Http: []*networkingv1.HTTPRoute{
				{
					Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{"x-canary": rtExact("yes")}}},
					Route: []*networkingv1.HTTPRouteDestination{rtDest("legacy", "v2", 0)},
				},
				{Route: []*networkingv1.HTTPRouteDestination{rtDest("legacy", "v1", 0)}},
			},
		}),
	), extra...)
}

// buildRuntime compiles generated LDS (and RDS) with weft-proxy's runtime,
// so chain selection below is the proxy's own, not a test re-implementation.
func buildRuntime(t *testing.T, sets ...map[string]proto.Message) *runtime.Snapshot {
	t.Helper()
	var msgs []proto.Message
	for _, set := range sets {
		for _, m := range set {
			msgs = append(msgs, m)
		}
	}
	s, err := runtime.Build(nil, msgs...)
	if err != nil {
		t.Fatalf("weft-proxy refuses the generated config: %v", err)
	}
	return s
}

// checkLegacyWarnings fails on warnings about the legacy service (the
// bookinfo fixture warns about other objects on purpose).
func checkLegacyWarnings(t *testing.T, diags config.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		if strings.Contains(fmt.Sprint(d), "legacy") {
			t.Errorf("unexpected warning: %s", d)
		}
	}
}

func chainKind(fc *runtime.FilterChain) string {
	var k string
	switch {
	case fc == nil:
		return "none"
	case fc.HTTP != nil:
		k = "http"
	case fc.TCP != nil:
		k = "tcp:" + fc.TCP.PickCluster(0)
	}
	if fc.TLS {
		k = "mtls+" + k
	}
	return k
}

func TestSniffedOutbound(t *testing.T) {
	snap := rtModel(t, legacyObjects()...)
	listeners, routes, diags := rtGenerate(t, snap, productpageProxy())
	checkLegacyWarnings(t, diags)
	checkRoutesGolden(t, "sidecar_sniffed_outbound_listener", map[string]proto.Message{"10.0.0.40_7000": listeners["10.0.0.40_7000"]})
	checkRoutesGolden(t, "sidecar_sniffed_routes", map[string]proto.Message{"7000": routes["7000"]})
	if _, ok := listeners["0.0.0.0_7000"]; ok {
		t.Error("a sniffed-only port must not get a 0.0.0.0_PORT HTTP listener: other TCP on that port would be parsed as HTTP")
	}

	// The bookinfo fixture has route features weft-proxy refuses on
	// purpose (retry_priority): build only what this port uses.
	rs := buildRuntime(t, map[string]proto.Message{
		"10.0.0.40_7000": listeners["10.0.0.40_7000"], "10.0.0.20_3306": listeners["10.0.0.20_3306"], "7000": routes["7000"],
	})
	l := rs.OutboundListenerFor(netip.MustParseAddr("10.0.0.40"), 7000)
	if l == nil || l.Name != "10.0.0.40_7000" {
		t.Fatalf("listener for 10.0.0.40:7000 = %v", l)
	}
	if !slices.Contains(l.ListenerFilters, runtime.FilterHTTPInspect) {
		t.Errorf("listener filters = %v, want the http_inspector", l.ListenerFilters)
	}
	ci := func(alpn ...string) runtime.ConnInfo {
		return runtime.ConnInfo{DstIP: netip.MustParseAddr("10.0.0.40"), DstPort: 7000, TransportProtocol: "raw_buffer", ALPN: alpn}
	}
	for _, tc := range []struct {
		alpn []string
		want string
	}{
		{[]string{"http/1.1"}, "http"},
		{[]string{"http/1.0"}, "http"},
		{[]string{"h2c"}, "http"},
		{nil, "tcp:outbound|7000||legacy.default.svc.cluster.local"},
	} {
		fc := l.FilterChainFor(ci(tc.alpn...))
		if got := chainKind(fc); got != tc.want {
			t.Errorf("alpn %v -> %s, want %s", tc.alpn, got, tc.want)
		}
	}
	hcm := l.FilterChainFor(ci("http/1.1")).HTTP
	if hcm.RouteConfigName != "7000" {
		t.Fatalf("HTTP chain uses route table %q, want 7000", hcm.RouteConfigName)
	}
	rc := routes["7000"].(*routev3.RouteConfiguration)
	for _, tc := range []struct {
		authority string
		headers   map[string]string
		want      string
	}{
		{"legacy.default.svc.cluster.local:7000", map[string]string{"x-canary": "yes"}, "outbound|7000|v2|legacy.default.svc.cluster.local"},
		{"legacy.default.svc.cluster.local:7000", nil, "outbound|7000|v1|legacy.default.svc.cluster.local"},
		{"legacy:7000", nil, "outbound|7000|v1|legacy.default.svc.cluster.local"},
		{"10.0.0.40:7000", map[string]string{"x-canary": "yes"}, "outbound|7000|v2|legacy.default.svc.cluster.local"},
		{"elsewhere.example:7000", nil, PassthroughCluster},
	} {
		if got := simulateRoute(rc, tc.authority, "/", tc.headers); got != tc.want {
			t.Errorf("%s %v -> %s, want %s", tc.authority, tc.headers, got, tc.want)
		}
	}
	// Declared TCP ports keep plain tcp_proxy listeners.
	if mysql := rs.Listener("10.0.0.20_3306"); mysql == nil || len(mysql.ListenerFilters) != 0 || len(mysql.FilterChains) != 0 {
		t.Errorf("mysql listener = %+v, want tcp_proxy only", mysql)
	}
}

func TestSniffedInbound(t *testing.T) {
	const cluster = "inbound|7000||legacy.default.svc.cluster.local"
	tls := func(alpn ...string) runtime.ConnInfo {
		return runtime.ConnInfo{DstPort: 17000, TransportProtocol: "tls", ALPN: alpn}
	}
	raw := func(alpn ...string) runtime.ConnInfo {
		return runtime.ConnInfo{DstPort: 17000, TransportProtocol: "raw_buffer", ALPN: alpn}
	}
	type want struct {
		ci   runtime.ConnInfo
		kind string
	}
	tcp, mtcp := "tcp:"+cluster, "mtls+tcp:"+cluster
	for _, tc := range []struct {
		name       string
		mode       securityv1.PeerAuthentication_MutualTLS_Mode
		wantChains int
		want       []want
	}{
		{"PERMISSIVE", paPermissive, 5, []want{
			{tls("istio-http/1.1", "istio"), "mtls+http"},
			{tls("istio-h2"), "mtls+http"},
			{tls("istio-peer-exchange", "istio"), mtcp},
			{tls("h2", "http/1.1"), tcp}, // the application's own TLS
			{raw("http/1.1"), "http"},
			{raw("h2c"), "http"},
			{raw(), tcp},
		}},
		{"STRICT", paStrict, 2, []want{
			{tls("istio-http/1.1"), "mtls+http"},
			{tls("istio-peer-exchange", "istio"), mtcp},
			{raw("http/1.1"), mtcp}, // plaintext must fail the handshake
			{raw(), mtcp},
		}},
		{"DISABLE", paDisable, 2, []want{
			{raw("http/1.1"), "http"},
			{raw(), tcp},
			{tls("istio"), tcp},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := rtModel(t, legacyObjects(paObj("default", "pp", 0, map[string]string{"app": "productpage"}, tc.mode, nil))...)
			listeners, _, diags := rtGenerate(t, snap, productpageProxy())
			checkLegacyWarnings(t, diags)
			vi := listeners[VirtualInboundListener].(*listenerv3.Listener)
			var lf []string
			for _, f := range vi.GetListenerFilters() {
				lf = append(lf, f.GetName())
			}
			wantLF := []string{wellknown.OriginalDestination, wellknown.TlsInspector, wellknown.HttpInspector}
			if tc.mode == paDisable {
				wantLF = []string{wellknown.OriginalDestination, wellknown.HttpInspector}
			}
			if !slices.Equal(lf, wantLF) {
				t.Errorf("listener filters = %v, want %v", lf, wantLF)
			}
			// Istio's filter_disabled: the http_inspector runs only for
			// sniffed ports (9080 is declared HTTP here).
			hi := vi.GetListenerFilters()[len(vi.GetListenerFilters())-1]
			r := hi.GetFilterDisabled().GetNotMatch().GetDestinationPortRange()
			if r.GetStart() != 17000 || r.GetEnd() != 17001 {
				t.Errorf("http_inspector filter_disabled = %v, want not(port 17000)", hi.GetFilterDisabled())
			}
			n := 0
			for _, fc := range vi.GetFilterChains() {
				if fc.GetFilterChainMatch().GetDestinationPort().GetValue() == 17000 {
					n++
				}
			}
			if n != tc.wantChains {
				t.Errorf("%d chains for port 17000, want %d", n, tc.wantChains)
			}
			l := buildRuntime(t, map[string]proto.Message{VirtualInboundListener: vi}).Listener(VirtualInboundListener)
			for _, w := range tc.want {
				fc := l.FilterChainFor(w.ci)
				if got := chainKind(fc); got != w.kind {
					t.Errorf("%s %v -> %s (%s), want %s", w.ci.TransportProtocol, w.ci.ALPN, got, fc.Name, w.kind)
				}
				if fc != nil && fc.HTTP != nil {
					rt := fc.HTTP.RouteTable
					if rt == nil {
						t.Fatalf("inbound HCM without inline route table")
					}
				}
			}
			if tc.mode == paPermissive {
				checkRoutesGolden(t, "sidecar_sniffed_inbound_permissive", map[string]proto.Message{VirtualInboundListener: vi})
			}
		})
	}
}
