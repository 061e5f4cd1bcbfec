package translate

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

func TestOutboundConnectionSimulation(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	listeners, _, _ := rtGenerate(t, snap, productpageProxy())
	apiVIP := snap.Service("api.example.com").Addresses[0]
	tests := []struct {
		name         string
		ip           string
		port         uint32
		sni          string
		wantListener string
		wantTarget   string
	}{
		{"HTTP port goes to the shared port listener and RDS", "10.0.0.10", 9080, "", "0.0.0.0_9080", "rds:9080"},
		{"gRPC port is HTTP too", "10.0.0.30", 7070, "", "0.0.0.0_7070", "rds:7070"},
		{"TCP service split by tcp route", "10.0.0.20", 3306, "",
			"10.0.0.20_3306", "weighted:outbound|3306|v1|mysql.default.svc.cluster.local=80,outbound|3306|v2|mysql.default.svc.cluster.local=20"},
		{"TLS by SNI", apiVIP, 443, "api.example.com", OutboundListenerName(apiVIP, 443), "outbound|443||api.example.com"},
		{"TLS unknown SNI falls to the service default", apiVIP, 443, "other.example.com", OutboundListenerName(apiVIP, 443), "outbound|443||api.example.com"},
		{"unknown destination passes through", "192.0.2.7", 5432, "", VirtualOutboundListener, PassthroughCluster},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, target := simulateOutboundConnection(listeners, tc.ip, tc.port, tc.sni)
			if l != tc.wantListener || target != tc.wantTarget {
				t.Errorf("%s:%d sni=%q -> %s %s, want %s %s", tc.ip, tc.port, tc.sni, l, target, tc.wantListener, tc.wantTarget)
			}
		})
	}

	t.Run("shape", func(t *testing.T) {
		vo := listeners[VirtualOutboundListener].(*listenerv3.Listener)
		if !vo.GetUseOriginalDst().GetValue() || vo.GetAddress().GetSocketAddress().GetPortValue() != OutboundCapturePort {
			t.Errorf("virtualOutbound = %v", vo)
		}
		for name, m := range listeners {
			l := m.(*listenerv3.Listener)
			if name == VirtualOutboundListener || name == VirtualInboundListener {
				continue
			}
			if l.GetBindToPort() == nil || l.GetBindToPort().GetValue() {
				t.Errorf("%s: bind_to_port must be false, the capture listener hands connections over", name)
			}
		}
		tls := listeners[OutboundListenerName(apiVIP, 443)].(*listenerv3.Listener)
		if len(tls.GetListenerFilters()) != 1 || tls.GetListenerFilters()[0].GetName() != wellknown.TlsInspector {
			t.Errorf("TLS listener filters = %v", tls.GetListenerFilters())
		}
		hcm := hcmOf(t, listeners["0.0.0.0_9080"].(*listenerv3.Listener).GetFilterChains()[0])
		var names []string
		for _, f := range hcm.GetHttpFilters() {
			names = append(names, f.GetName())
		}
		if got := strings.Join(names, ","); got != "envoy.filters.http.fault,envoy.filters.http.cors,envoy.filters.http.router" {
			t.Errorf("http filters = %s", got)
		}
		if hcm.GetRds().GetConfigSource().GetAds() == nil {
			t.Errorf("RDS must come over ADS: %v", hcm.GetRds())
		}
	})
}

func hcmOf(t *testing.T, fc *listenerv3.FilterChain) *hcmv3.HttpConnectionManager {
	t.Helper()
	var hcm hcmv3.HttpConnectionManager
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	return &hcm
}

func TestInboundSimulation(t *testing.T) {
	objs := append(bookinfoObjects(),
		// productpage also serves a TCP debug port.
		rtObj(config.KindServiceEntry, "default", "productpage-debug", 0, &networkingv1.ServiceEntry{
			Hosts: []string{"productpage-debug.default.svc.cluster.local"}, Addresses: []string{"10.0.0.99"},
			Ports:            rtPorts(&networkingv1.ServicePort{Name: "tcp", Number: 9999, Protocol: "TCP", TargetPort: 19999}),
			WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": "productpage"}},
		}),
	)
	snap := rtModel(t, objs...)
	for _, tc := range []struct {
		name  string
		proxy *model.Proxy
	}{
		{"by workload", productpageProxy()},
		{"by IP", &model.Proxy{ID: "p", Type: model.ProxySidecar, Namespace: "default", IPs: []string{"10.1.2.1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listeners, _, _ := rtGenerate(t, snap, tc.proxy)
			vi := listeners[VirtualInboundListener].(*listenerv3.Listener)
			// Default PERMISSIVE: the tls_inspector tells mTLS from plaintext.
			if len(vi.GetListenerFilters()) != 2 || vi.GetListenerFilters()[0].GetName() != wellknown.OriginalDestination ||
				vi.GetListenerFilters()[1].GetName() != wellknown.TlsInspector {
				t.Errorf("inbound listener filters = %v", vi.GetListenerFilters())
			}
			if got := chainTarget(selectFilterChain(vi, "", 9080)); got != "inline:inbound|9080||" {
				t.Errorf("port 9080 -> %s", got)
			}
			hcm := hcmOf(t, selectFilterChain(vi, "", 9080))
			if got := simulateRoute(hcm.GetRouteConfig(), "anything", "/x", nil); got != "inbound|9080||productpage.default.svc.cluster.local" {
				t.Errorf("inbound HTTP route -> %s", got)
			}
			if got := chainTarget(selectFilterChain(vi, "", 19999)); got != "inbound|9999||productpage-debug.default.svc.cluster.local" {
				t.Errorf("target port 19999 -> %s", got)
			}
			if got := chainTarget(selectFilterChain(vi, "", 12345)); got != InboundPassthroughCluster {
				t.Errorf("unknown port -> %s", got)
			}
			if n := len(vi.GetFilterChains()); n != 6 {
				t.Errorf("inbound chains = %d, want 6 (only this workload's ports; mTLS, app TLS and plaintext each)", n)
			}
		})
	}
}

func TestGRPCProxyless(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	listeners, routes, diags := rtGenerate(t, snap, grpcProxy())

	for _, name := range []string{"echo.default.svc.cluster.local:7070", "echo:7070", "echo.default:7070", "echo.default.svc:7070", "details.other.svc.cluster.local:9080"} {
		if _, ok := listeners[name]; !ok {
			t.Errorf("no listener %q", name)
		}
		if _, ok := routes[name]; !ok {
			t.Errorf("no route configuration %q", name)
		}
	}
	for _, name := range []string{"details:9080", "mysql:3306", "mysql.default.svc.cluster.local:3306", "api.example.com:443", VirtualOutboundListener} {
		if _, ok := listeners[name]; ok {
			t.Errorf("unexpected listener %q", name)
		}
	}
	if len(listeners) != len(routes) {
		t.Errorf("%d listeners but %d route configurations", len(listeners), len(routes))
	}

	// grpc-go NACKs filters it does not implement.
	allowed := map[string]bool{wellknown.Router: true, wellknown.Fault: true, "envoy.filters.http.rbac": true}
	for name, m := range listeners {
		l := m.(*listenerv3.Listener)
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hcm.GetRds().GetRouteConfigName() != name || hcm.GetRds().GetConfigSource().GetAds() == nil {
			t.Errorf("%s: rds = %v", name, hcm.GetRds())
		}
		fs := hcm.GetHttpFilters()
		if fs[len(fs)-1].GetName() != wellknown.Router {
			t.Errorf("%s: last filter %s", name, fs[len(fs)-1].GetName())
		}
		for _, f := range fs {
			if !allowed[f.GetName()] {
				t.Errorf("%s: filter %s is not supported by grpc-go", name, f.GetName())
			}
		}
		wantFault := strings.HasPrefix(name, "echo") || strings.HasPrefix(name, "ratings") || strings.HasPrefix(name, "kitchen")
		if hasFault := len(fs) == 2 && fs[0].GetName() == wellknown.Fault; hasFault != wantFault {
			t.Errorf("%s: fault filter present=%v, want %v", name, hasFault, wantFault)
		}
	}
	for name, m := range routes {
		for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				for f := range r.GetTypedPerFilterConfig() {
					if !allowed[f] {
						t.Errorf("%s: per-filter config for %s", name, f)
					}
				}
				if len(r.GetRequestHeadersToAdd()) > 0 || len(r.GetRoute().GetRequestMirrorPolicies()) > 0 || r.GetRoute().GetTimeout() != nil {
					t.Errorf("%s: route %q carries fields grpc-go ignores", name, r.GetName())
				}
			}
		}
	}

	echo := routes["echo:7070"].(*routev3.RouteConfiguration)
	if got := simulateRoute(echo, "echo:7070", "/echo.Echo/Slow", nil); got != "outbound|7070||echo.default.svc.cluster.local" {
		t.Errorf("slow -> %s", got)
	}
	last := echo.GetVirtualHosts()[0].GetRoutes()[1].GetRoute()
	if last.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration().Seconds() != 3 {
		t.Errorf("timeout = %v", last.GetMaxStreamDuration())
	}
	if rp := last.GetRetryPolicy(); rp.GetRetryOn() != "unavailable" || rp.GetNumRetries().GetValue() != 4 {
		t.Errorf("retry policy = %v", rp)
	}
	found := false
	for _, d := range diags {
		found = found || (d.Key.Name == "echo" && strings.Contains(d.Message, `"5xx" is not supported by proxyless gRPC`))
	}
	if !found {
		t.Errorf("unsupported gRPC retry condition not reported: %v", diags)
	}
	// Alias targets share the translation of the service port.
	if !proto.Equal(routes["echo:7070"].(*routev3.RouteConfiguration).GetVirtualHosts()[0],
		routes["echo.default.svc.cluster.local:7070"].(*routev3.RouteConfiguration).GetVirtualHosts()[0]) {
		t.Error("alias route tables differ")
	}
}
