package translate

import (
	"bytes"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

func rtGenerate(t *testing.T, snap *model.Snapshot, p *model.Proxy) (listeners, routes map[string]proto.Message, diags config.Diagnostics) {
	t.Helper()
	in := Input{Model: snap, Proxy: p}
	listeners, ld := Listeners(in)
	routes, rd := Routes(in)
	validateRouteResources(t, listeners)
	validateRouteResources(t, routes)
	return listeners, routes, append(ld, rd...)
}

func TestRoutesGolden(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	for _, tc := range []struct {
		name  string
		proxy *model.Proxy
	}{
		{"sidecar_default", productpageProxy()},
		{"sidecar_other", detailsProxy()},
		{"grpc_default", grpcProxy()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, r, diags := rtGenerate(t, snap, tc.proxy)
			checkRoutesGolden(t, tc.name+"_listeners", l)
			checkRoutesGolden(t, tc.name+"_routes", r)
			checkRoutesDiagnosticsGolden(t, tc.name+"_warnings", diags)
		})
	}
}

func TestRoutesDeterministic(t *testing.T) {
	for i := 0; i < 3; i++ {
		a, b := rtModel(t, bookinfoObjects()...), rtModel(t, bookinfoObjects()...)
		ra, da := Routes(Input{Model: a, Proxy: productpageProxy()})
		rb, db := Routes(Input{Model: b, Proxy: productpageProxy()})
		if !bytes.Equal(renderRoutesGolden(t, ra), renderRoutesGolden(t, rb)) {
			t.Fatal("route output differs between identical inputs")
		}
		if len(da) != len(db) {
			t.Fatalf("diagnostics differ: %d vs %d", len(da), len(db))
		}
		for j := range da {
			if da[j] != db[j] {
				t.Fatalf("diagnostic %d differs: %v vs %v", j, da[j], db[j])
			}
		}
	}
}

func TestSidecarRouteSimulation(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	const (
		reviewsV1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
		reviewsV2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
		reviewsV3 = "outbound|9080|v3|reviews.default.svc.cluster.local"
		split     = "weighted:" + reviewsV1 + "=90," + reviewsV3 + "=10"
		kitchen   = "outbound|8080||kitchen.default.svc.cluster.local"
		kitchenAd = "outbound|8081||kitchen.default.svc.cluster.local"
	)
	tests := []struct {
		name      string
		proxy     *model.Proxy
		port      uint32
		authority string
		path      string
		headers   map[string]string
		want      string
	}{
		{"GET reviews:9080/ with end-user jason goes to v2", productpageProxy(), 9080, "reviews:9080", "/", map[string]string{"end-user": "jason"}, reviewsV2},
		{"other users split 90/10", productpageProxy(), 9080, "reviews:9080", "/", nil, split},
		{"other end-user value is not jason", productpageProxy(), 9080, "reviews:9080", "/", map[string]string{"end-user": "jasonx"}, split},
		{"authority without port", productpageProxy(), 9080, "reviews", "/", map[string]string{"end-user": "jason"}, reviewsV2},
		{"FQDN", productpageProxy(), 9080, "reviews.default.svc.cluster.local:9080", "/", nil, split},
		{"VIP", productpageProxy(), 9080, "10.0.0.10:9080", "/", nil, split},
		{"name.ns", productpageProxy(), 9080, "reviews.default", "/", nil, split},
		{"name.ns.svc:port", productpageProxy(), 9080, "reviews.default.svc:9080", "/", nil, split},
		{"unknown host goes to allow_any", productpageProxy(), 9080, "www.example.net", "/", nil, PassthroughCluster},
		{"service without VirtualService uses default route", productpageProxy(), 9080, "productpage:9080", "/x", nil, "outbound|9080||productpage.default.svc.cluster.local"},
		{"ratings routed by its VirtualService", productpageProxy(), 9080, "ratings", "/ratings/0", nil, "outbound|9080||ratings.default.svc.cluster.local"},
		{"cross-namespace FQDN", productpageProxy(), 9080, "details.other.svc.cluster.local:9080", "/", nil, "outbound|9080||details.other.svc.cluster.local"},
		{"short name reviews works only from same namespace", detailsProxy(), 9080, "reviews:9080", "/", nil, PassthroughCluster},
		{"name.ns works from another namespace", detailsProxy(), 9080, "reviews.default:9080", "/", nil, split},
		{"own short name in other namespace", detailsProxy(), 9080, "details", "/", nil, "outbound|9080||details.other.svc.cluster.local"},
		{"short name of other namespace", productpageProxy(), 9080, "details", "/", nil, PassthroughCluster},

		{"redirect with method match", productpageProxy(), 8080, "kitchen", "/old", nil, "redirect:302:https://new.example.com:8443/new"},
		{"redirect needs GET", productpageProxy(), 8080, "kitchen", "/old", map[string]string{":method": "POST"}, "404:no-route"},
		{"direct response", productpageProxy(), 8080, "kitchen", "/teapot/earl-grey", nil, "direct:418"},
		{"regex uri with query param", productpageProxy(), 8080, "kitchen:8080", "/api/v1/orders?debug=1", nil, kitchen},
		{"regex uri without query param", productpageProxy(), 8080, "10.0.0.12:8080", "/api/v1/orders", nil, "404:no-route"},
		{"regex uri with query param by VIP", productpageProxy(), 8080, "10.0.0.12:8080", "/api/v1/orders?x=2&debug=1", nil, kitchen},
		{"ignoreUriCase prefix with authority and scheme", productpageProxy(), 8080, "kitchen:8080", "/api/stock", nil, kitchen},
		{"authority prefix mismatch", productpageProxy(), 8080, "10.0.0.12:8080", "/api/stock", nil, "404:no-route"},
		{"port match on its port", productpageProxy(), 8081, "kitchen:8081", "/only-on-admin", nil, kitchenAd},
		{"port match elsewhere dropped", productpageProxy(), 8080, "kitchen:8080", "/only-on-admin", nil, "404:no-route"},
		{"sourceLabels not matching proxy", productpageProxy(), 8080, "kitchen", "/only-for-ratings", nil, "404:no-route"},
		{"sourceLabels matching proxy", ratingsProxy(), 8080, "kitchen", "/only-for-ratings", nil, kitchen},
		{"gateway-only match dropped on sidecars", productpageProxy(), 8080, "kitchen", "/gw", nil, "404:no-route"},
		{"present header and destination port", productpageProxy(), 8080, "kitchen", "/users/1", map[string]string{"x-present": ""}, kitchenAd},
		{"missing header", productpageProxy(), 8080, "kitchen", "/users/1", nil, "404:no-route"},
		{"withoutHeaders", productpageProxy(), 8080, "kitchen", "/users/1", map[string]string{"x-present": "1", "x-canary": "true"}, "404:no-route"},
		{"zero-weight destination dropped", productpageProxy(), 8080, "kitchen", "/exp", nil, "outbound|8080|missing|kitchen.default.svc.cluster.local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			routes, _ := Routes(Input{Model: snap, Proxy: tc.proxy})
			m, ok := routes[HTTPRouteName(tc.port)]
			if !ok {
				t.Fatalf("no route configuration %q; have %v", HTTPRouteName(tc.port), routeKeysOf(routes))
			}
			if got := simulateRoute(m.(*routev3.RouteConfiguration), tc.authority, tc.path, tc.headers); got != tc.want {
				t.Errorf("%s %s%s: got %q, want %q", tc.proxy.Namespace, tc.authority, tc.path, got, tc.want)
			}
		})
	}
}

func routeKeysOf[V any](m map[string]V) []string { return sortedRouteKeys(m) }

// findRoute returns the route named name in route configuration rcName.
func findRoute(t *testing.T, routes map[string]proto.Message, rcName, name string) *routev3.Route {
	t.Helper()
	rc := routes[rcName].(*routev3.RouteConfiguration)
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == name {
				return r
			}
		}
	}
	t.Fatalf("route %q not found in %q", name, rcName)
	return nil
}

func TestRouteActions(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	routes, _ := Routes(Input{Model: snap, Proxy: productpageProxy()})

	t.Run("default retry policy and no timeout", func(t *testing.T) {
		r := findRoute(t, routes, "9080", "jason")
		rp := r.GetRoute().GetRetryPolicy()
		if rp.GetRetryOn() != defaultRetryOn || rp.GetNumRetries().GetValue() != 2 || len(rp.GetRetryHostPredicate()) != 1 ||
			rp.GetHostSelectionRetryMaxAttempts() != 5 || len(rp.GetRetriableStatusCodes()) != 1 || rp.GetRetriableStatusCodes()[0] != 503 {
			t.Errorf("default retry policy = %v", rp)
		}
		if d := r.GetRoute().GetTimeout(); d == nil || d.AsDuration() != 0 {
			t.Errorf("timeout = %v, want explicit 0s", d)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := findRoute(t, routes, "9080", "split")
		if got := r.GetRoute().GetTimeout().AsDuration(); got != 2*time.Second {
			t.Errorf("timeout = %v", got)
		}
	})
	t.Run("explicit retries", func(t *testing.T) {
		var r *routev3.Route
		for _, vh := range routes["9080"].(*routev3.RouteConfiguration).GetVirtualHosts() {
			if strings.HasPrefix(vh.GetName(), "ratings.") {
				r = vh.GetRoutes()[0]
			}
		}
		rp := r.GetRoute().GetRetryPolicy()
		if rp.GetRetryOn() != "gateway-error,connect-failure,retriable-status-codes" || rp.GetNumRetries().GetValue() != 3 ||
			len(rp.GetRetriableStatusCodes()) != 1 || rp.GetRetriableStatusCodes()[0] != 429 ||
			rp.GetPerTryTimeout().AsDuration() != time.Second || rp.GetRetryPriority().GetName() != "envoy.retry_priorities.previous_priorities" {
			t.Errorf("retry policy = %v", rp)
		}
		var f faultv3.HTTPFault
		if err := r.GetTypedPerFilterConfig()[wellknown.Fault].UnmarshalTo(&f); err != nil {
			t.Fatal(err)
		}
		if f.GetDelay().GetFixedDelay().AsDuration() != 7*time.Second || f.GetDelay().GetPercentage().GetNumerator() != 100000 ||
			f.GetAbort().GetHttpStatus() != 500 || f.GetAbort().GetPercentage().GetNumerator() != 5000 {
			t.Errorf("fault = %v", &f)
		}
	})
	t.Run("attempts 0 disables retries", func(t *testing.T) {
		if rp := findRoute(t, routes, "8080", "api").GetRoute().GetRetryPolicy(); rp != nil {
			t.Errorf("retry policy = %v, want none", rp)
		}
	})
	t.Run("headers rewrite mirror cors", func(t *testing.T) {
		r := findRoute(t, routes, "8080", "api")
		var got []string
		for _, h := range r.GetRequestHeadersToAdd() {
			got = append(got, h.GetHeader().GetKey()+"="+h.GetHeader().GetValue()+":"+h.GetAppendAction().String())
		}
		want := []string{"x-a=1:OVERWRITE_IF_EXISTS_OR_ADD", "x-b=2:OVERWRITE_IF_EXISTS_OR_ADD", "x-trace=on:APPEND_IF_EXISTS_OR_ADD"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("request headers = %v, want %v", got, want)
		}
		if strings.Join(r.GetRequestHeadersToRemove(), ",") != "x-secret" || strings.Join(r.GetResponseHeadersToRemove(), ",") != "server" {
			t.Errorf("removed headers = %v / %v", r.GetRequestHeadersToRemove(), r.GetResponseHeadersToRemove())
		}
		a := r.GetRoute()
		if a.GetPrefixRewrite() != "/v2/" || a.GetHostRewriteLiteral() != "kitchen-backend" {
			t.Errorf("rewrite = %q %q", a.GetPrefixRewrite(), a.GetHostRewriteLiteral())
		}
		if len(a.GetRequestMirrorPolicies()) != 1 || a.GetRequestMirrorPolicies()[0].GetCluster() != "outbound|9080||ratings.default.svc.cluster.local" ||
			a.GetRequestMirrorPolicies()[0].GetRuntimeFraction().GetDefaultValue().GetNumerator() != 250000 {
			t.Errorf("mirrors = %v", a.GetRequestMirrorPolicies())
		}
		var c corsv3.CorsPolicy
		if err := r.GetTypedPerFilterConfig()[wellknown.CORS].UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		if len(c.GetAllowOriginStringMatch()) != 2 || c.GetAllowOriginStringMatch()[1].GetSafeRegex().GetRegex() != `https://.*\.b\.example\.com` ||
			c.GetAllowMethods() != "GET,POST" || c.GetMaxAge() != "86400" || !c.GetAllowCredentials().GetValue() {
			t.Errorf("cors = %v", &c)
		}
	})
	t.Run("several match blocks share one action", func(t *testing.T) {
		rc := routes["8080"].(*routev3.RouteConfiguration)
		n := 0
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetName() == "api" {
					n++
					if r.GetRoute().GetPrefixRewrite() != "/v2/" {
						t.Errorf("match %d lost the action", n)
					}
				}
			}
		}
		// regex, ignoreUriCase; the port-8081, sourceLabels and gateway blocks do not apply here.
		if n != 2 {
			t.Errorf("api routes on 8080 = %d, want 2", n)
		}
	})
	t.Run("destination headers and regex rewrite", func(t *testing.T) {
		r := findRoute(t, routes, "8080", "regex-rewrite")
		if len(r.GetRequestHeadersToAdd()) != 1 || r.GetRequestHeadersToAdd()[0].GetHeader().GetKey() != "x-dest" {
			t.Errorf("destination headers = %v", r.GetRequestHeadersToAdd())
		}
		if rr := r.GetRoute().GetRegexRewrite(); rr.GetPattern().GetRegex() != "^/users/(.*)$" || rr.GetSubstitution() != `/u/\1` {
			t.Errorf("regex rewrite = %v", rr)
		}
		if m := r.GetRoute().GetRequestMirrorPolicies(); len(m) != 1 || m[0].GetCluster() != "outbound|9080|v1|reviews.default.svc.cluster.local" ||
			m[0].GetRuntimeFraction().GetDefaultValue().GetNumerator() != 1000000 {
			t.Errorf("mirror = %v", m)
		}
	})
	t.Run("redirect and direct response", func(t *testing.T) {
		r := findRoute(t, routes, "8080", "redirect.old")
		if r.GetRedirect().GetResponseCode() != routev3.RedirectAction_FOUND {
			t.Errorf("redirect = %v", r.GetRedirect())
		}
		d := findRoute(t, routes, "8080", "teapot").GetDirectResponse()
		if d.GetStatus() != 418 || d.GetBody().GetInlineString() != "short and stout" {
			t.Errorf("direct response = %v", d)
		}
	})
}

func TestRoutesDiagnostics(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	_, _, diags := rtGenerate(t, snap, productpageProxy())
	want := []struct{ name, field, substr string }{
		{"kitchen", "spec.http[5].delegate", "delegate"},
		{"kitchen", "spec.http[4].fault.delay.exponentialDelay", "exponential"},
		{"kitchen", "spec.http[4].route[1].destination.subset", `subset "missing"`},
		{"kitchen", "spec.http[3].match[0].headers[uri]", "reserved"},
		{"reviews-late", "spec.hosts[0]", "already routed by older VirtualService default/reviews"},
		{"ghost", "spec.hosts[0]", "matches no service"},
	}
	for _, w := range want {
		found := false
		for _, d := range diags {
			if d.Key.Name == w.name && d.Field == w.field && strings.Contains(d.Message, w.substr) && d.Severity == config.SeverityWarning {
				found = true
			}
		}
		if !found {
			t.Errorf("missing warning %s %s ~%q; got:\n%v", w.name, w.field, w.substr, diags)
		}
	}
	for _, d := range diags {
		if d.Key.Name == "reviews" || d.Key.Name == "mysql" {
			t.Errorf("unexpected warning for fully supported config: %v", d)
		}
	}
	// Every warning is reported once even though the VirtualService is translated per port.
	seen := map[string]bool{}
	for _, d := range diags {
		if seen[d.Error()] {
			t.Errorf("duplicate warning %v", d)
		}
		seen[d.Error()] = true
	}
}

func TestRouteDomainsUnique(t *testing.T) {
	objs := append(bookinfoObjects(),
		// Shares reviews' VIP: Envoy would reject a duplicate domain.
		rtObj(config.KindServiceEntry, "default", "reviews-twin", 0, &networkingv1.ServiceEntry{
			Hosts: []string{"twin.example.com"}, Addresses: []string{"10.0.0.10"},
			Ports: rtPorts(rtPort("http", 9080, "HTTP")), Resolution: networkingv1.ServiceEntry_DNS,
		}),
		rtObj(config.KindServiceEntry, "default", "wild", 0, &networkingv1.ServiceEntry{
			Hosts: []string{"*.wild.example.com"}, Ports: rtPorts(rtPort("http", 9080, "HTTP")),
			Resolution: networkingv1.ServiceEntry_NONE,
		}),
	)
	snap := rtModel(t, objs...)
	routes, diags := Routes(Input{Model: snap, Proxy: productpageProxy()})
	validateRouteResources(t, routes)
	for name, m := range routes {
		seen := map[string]string{}
		for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, d := range vh.GetDomains() {
				if prev, dup := seen[d]; dup {
					t.Errorf("route %s: domain %q in %s and %s", name, d, prev, vh.GetName())
				}
				seen[d] = vh.GetName()
			}
		}
	}
	rc := routes["9080"].(*routev3.RouteConfiguration)
	if got := simulateRoute(rc, "10.0.0.10:9080", "/", nil); !strings.HasPrefix(got, "weighted:outbound|9080|v1|reviews.") {
		t.Errorf("shared VIP goes to %q, want reviews (first by hostname)", got)
	}
	if got := simulateRoute(rc, "twin.example.com", "/", nil); got != "outbound|9080||twin.example.com" {
		t.Errorf("twin host goes to %q", got)
	}
	if got := simulateRoute(rc, "a.wild.example.com:9080", "/", nil); got != "outbound|9080||*.wild.example.com" {
		t.Errorf("wildcard host goes to %q", got)
	}
	found := false
	for _, d := range diags {
		found = found || strings.Contains(d.Message, `domain "10.0.0.10" on port 9080 is already served`)
	}
	if !found {
		t.Errorf("duplicate VIP not reported: %v", diags)
	}
}

func TestWildcardVirtualServiceApplies(t *testing.T) {
	objs := append(bookinfoObjects(),
		rtObj(config.KindServiceEntry, "default", "ext", 0, &networkingv1.ServiceEntry{
			Hosts: []string{"a.ext.example.com", "b.ext.example.com"}, Ports: rtPorts(rtPort("http", 80, "HTTP")),
			Resolution: networkingv1.ServiceEntry_DNS, Location: networkingv1.ServiceEntry_MESH_EXTERNAL,
		}),
		rtObj(config.KindVirtualService, "default", "ext-wild", 7, &networkingv1.VirtualService{
			Hosts: []string{"*.ext.example.com"},
			Http: []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{{
				Destination: &networkingv1.Destination{Host: "a.ext.example.com"}}}}},
		}),
		rtObj(config.KindVirtualService, "default", "ext-b", 8, &networkingv1.VirtualService{
			Hosts: []string{"b.ext.example.com"},
			Http:  []*networkingv1.HTTPRoute{{DirectResponse: &networkingv1.HTTPDirectResponse{Status: 503}}},
		}),
	)
	snap := rtModel(t, objs...)
	routes, _ := Routes(Input{Model: snap, Proxy: productpageProxy()})
	validateRouteResources(t, routes)
	rc := routes["80"].(*routev3.RouteConfiguration)
	// Both hosts are matched by the wildcard VirtualService; the exact one wins for b.
	if got := simulateRoute(rc, "a.ext.example.com", "/", nil); got != "outbound|80||a.ext.example.com" {
		t.Errorf("a: %q", got)
	}
	if got := simulateRoute(rc, "b.ext.example.com", "/", nil); got != "direct:503" {
		t.Errorf("b: %q", got)
	}
}

func TestRouterProxyNotTranslated(t *testing.T) {
	snap := rtModel(t, bookinfoObjects()...)
	p := &model.Proxy{ID: "router~10.0.9.9~gw.istio-system~istio-system.svc.cluster.local", Type: model.ProxyRouter, Namespace: "istio-system"}
	l, ld := Listeners(Input{Model: snap, Proxy: p})
	r, rd := Routes(Input{Model: snap, Proxy: p})
	if len(l) != 0 || len(r) != 0 {
		t.Errorf("router output: %d listeners, %d routes", len(l), len(r))
	}
	if len(ld) != 0 || len(rd) != 1 || !strings.Contains(rd[0].Message, "not generated yet") {
		t.Errorf("router proxy not reported: %v %v", ld, rd)
	}
}

func TestRouteKindMismatchReported(t *testing.T) {
	objs := append(bookinfoObjects(),
		rtObj(config.KindVirtualService, "default", "mysql-http", 9, &networkingv1.VirtualService{
			Hosts: []string{"mysql"},
			Http:  []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{rtDest("mysql", "", 0)}}},
		}),
		rtObj(config.KindVirtualService, "default", "ratings-tcp", 9, &networkingv1.VirtualService{
			Hosts: []string{"ratings.default.svc.cluster.local"},
			Tcp:   []*networkingv1.TCPRoute{{Route: []*networkingv1.RouteDestination{{Destination: &networkingv1.Destination{Host: "ratings"}}}}},
		}),
	)
	_, diags := Routes(Input{Model: rtModel(t, objs...), Proxy: productpageProxy()})
	for _, w := range []struct{ name, field string }{{"mysql-http", "spec.http"}, {"ratings-tcp", "spec.tcp"}} {
		found := false
		for _, d := range diags {
			found = found || (d.Key.Name == w.name && d.Field == w.field)
		}
		if !found {
			t.Errorf("no warning for %s %s: %v", w.name, w.field, diags)
		}
	}
}
