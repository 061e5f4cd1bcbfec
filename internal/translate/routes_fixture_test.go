package translate

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// routesEpoch makes creation timestamps, and so VirtualService order, explicit.
var routesEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rtObj(kind config.Kind, ns, name string, age int, spec proto.Message) *config.Object {
	return &config.Object{
		Kind:       kind,
		APIVersion: "networking.istio.io/v1",
		Meta:       config.Meta{Name: name, Namespace: ns, CreationTimestamp: routesEpoch.Add(time.Duration(age) * time.Second)},
		Spec:       spec,
	}
}

func rtModel(t testing.TB, objs ...*config.Object) *model.Snapshot {
	t.Helper()
	vips, err := model.NewVIPTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := model.Build(config.NewSnapshot(1, objs, nil), model.BuildOptions{VIPs: vips})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func rtPorts(ps ...*networkingv1.ServicePort) []*networkingv1.ServicePort { return ps }

func rtPort(name string, n uint32, proto string) *networkingv1.ServicePort {
	return &networkingv1.ServicePort{Name: name, Number: n, Protocol: proto}
}

func rtExact(s string) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Exact{Exact: s}}
}

func rtPrefix(s string) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: s}}
}

func rtRegex(s string) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Regex{Regex: s}}
}

func rtDest(host, subset string, weight int32) *networkingv1.HTTPRouteDestination {
	return &networkingv1.HTTPRouteDestination{Destination: &networkingv1.Destination{Host: host, Subset: subset}, Weight: weight}
}

// bookinfoObjects is the shared fixture: a bookinfo-like mesh in "default",
// a service in "other", a TCP database, an external TLS API, a gRPC service,
// and a "kitchen" service whose VirtualService uses every HTTP feature.
func bookinfoObjects() []*config.Object {
	wl := func(ns, name, addr string, labels map[string]string) *config.Object {
		return rtObj(config.KindWorkloadEntry, ns, name, 0, &networkingv1.WorkloadEntry{Address: addr, Labels: labels})
	}
	se := func(ns, name string, hosts, addrs []string, ports []*networkingv1.ServicePort, app string) *config.Object {
		return rtObj(config.KindServiceEntry, ns, name, 0, &networkingv1.ServiceEntry{
			Hosts: hosts, Addresses: addrs, Ports: ports, Location: networkingv1.ServiceEntry_MESH_INTERNAL,
			Resolution:       networkingv1.ServiceEntry_STATIC,
			WorkloadSelector: &networkingv1.WorkloadSelector{Labels: map[string]string{"app": app}},
		})
	}
	objs := []*config.Object{
		se("default", "productpage", []string{"productpage.default.svc.cluster.local"}, []string{"10.0.0.9"},
			rtPorts(rtPort("http", 9080, "HTTP")), "productpage"),
		se("default", "reviews", []string{"reviews.default.svc.cluster.local"}, []string{"10.0.0.10"},
			rtPorts(rtPort("http", 9080, "HTTP")), "reviews"),
		se("default", "ratings", []string{"ratings.default.svc.cluster.local"}, []string{"10.0.0.11"},
			rtPorts(rtPort("http", 9080, "HTTP")), "ratings"),
		se("default", "kitchen", []string{"kitchen.default.svc.cluster.local"}, []string{"10.0.0.12"},
			rtPorts(rtPort("http", 8080, "HTTP"), rtPort("http-admin", 8081, "HTTP")), "kitchen"),
		se("default", "mysql", []string{"mysql.default.svc.cluster.local"}, []string{"10.0.0.20"},
			rtPorts(rtPort("tcp", 3306, "TCP")), "mysql"),
		se("default", "echo", []string{"echo.default.svc.cluster.local"}, []string{"10.0.0.30"},
			rtPorts(rtPort("grpc", 7070, "GRPC")), "echo"),
		se("other", "details", []string{"details.other.svc.cluster.local"}, []string{"10.0.1.10"},
			rtPorts(rtPort("http", 9080, "HTTP")), "details"),
		rtObj(config.KindServiceEntry, "default", "api", 0, &networkingv1.ServiceEntry{
			Hosts: []string{"api.example.com"}, Ports: rtPorts(rtPort("https", 443, "TLS")),
			Location: networkingv1.ServiceEntry_MESH_EXTERNAL, Resolution: networkingv1.ServiceEntry_DNS,
		}),

		wl("default", "productpage-v1", "10.1.2.1", map[string]string{"app": "productpage", "version": "v1"}),
		wl("default", "reviews-v1", "10.1.0.1", map[string]string{"app": "reviews", "version": "v1"}),
		wl("default", "reviews-v2", "10.1.0.2", map[string]string{"app": "reviews", "version": "v2"}),
		wl("default", "reviews-v3", "10.1.0.3", map[string]string{"app": "reviews", "version": "v3"}),
		wl("default", "ratings-v1", "10.1.1.1", map[string]string{"app": "ratings", "version": "v1"}),
		wl("default", "kitchen-v1", "10.1.3.1", map[string]string{"app": "kitchen", "version": "v1"}),
		wl("default", "mysql-v1", "10.1.4.1", map[string]string{"app": "mysql", "version": "v1"}),
		wl("default", "mysql-v2", "10.1.4.2", map[string]string{"app": "mysql", "version": "v2"}),
		wl("default", "echo-v1", "10.1.5.1", map[string]string{"app": "echo", "version": "v1"}),
		wl("other", "details-v1", "10.1.6.1", map[string]string{"app": "details"}),

		rtObj(config.KindDestinationRule, "default", "reviews", 0, &networkingv1.DestinationRule{
			Host: "reviews",
			Subsets: []*networkingv1.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
				{Name: "v3", Labels: map[string]string{"version": "v3"}},
			},
		}),
		rtObj(config.KindDestinationRule, "default", "mysql", 0, &networkingv1.DestinationRule{
			Host: "mysql",
			Subsets: []*networkingv1.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		}),

		// reviews: jason gets v2, everyone else 90/10 between v1 and v3.
		rtObj(config.KindVirtualService, "default", "reviews", 1, &networkingv1.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networkingv1.HTTPRoute{
				{
					Name:  "jason",
					Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{"end-user": rtExact("jason")}}},
					Route: []*networkingv1.HTTPRouteDestination{rtDest("reviews", "v2", 0)},
				},
				{
					Name:    "split",
					Route:   []*networkingv1.HTTPRouteDestination{rtDest("reviews", "v1", 90), rtDest("reviews", "v3", 10)},
					Timeout: durationpb.New(2 * time.Second),
				},
			},
		}),
		// A later VirtualService for the same host is ignored (and reported).
		rtObj(config.KindVirtualService, "default", "reviews-late", 5, &networkingv1.VirtualService{
			Hosts: []string{"reviews.default.svc.cluster.local"},
			Http:  []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{rtDest("reviews", "v3", 0)}}},
		}),
		// ratings: faults and explicit retries.
		rtObj(config.KindVirtualService, "default", "ratings", 2, &networkingv1.VirtualService{
			Hosts: []string{"ratings"},
			Http: []*networkingv1.HTTPRoute{{
				Fault: &networkingv1.HTTPFaultInjection{
					Delay: &networkingv1.HTTPFaultInjection_Delay{
						HttpDelayType: &networkingv1.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(7 * time.Second)},
						Percentage:    &networkingv1.Percent{Value: 10},
					},
					Abort: &networkingv1.HTTPFaultInjection_Abort{
						ErrorType:  &networkingv1.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 500},
						Percentage: &networkingv1.Percent{Value: 0.5},
					},
				},
				Retries: &networkingv1.HTTPRetry{
					Attempts: 3, PerTryTimeout: durationpb.New(time.Second), RetryOn: "gateway-error,connect-failure,429",
					RetryRemoteLocalities: wrapperspb.Bool(true),
				},
				Route: []*networkingv1.HTTPRouteDestination{rtDest("ratings", "", 0)},
			}},
		}),
		rtObj(config.KindVirtualService, "default", "kitchen", 3, &networkingv1.VirtualService{
			Hosts: []string{"kitchen"},
			Http: []*networkingv1.HTTPRoute{
				{
					Name: "redirect",
					Match: []*networkingv1.HTTPMatchRequest{{
						Uri: rtExact("/old"), Method: rtExact("GET"), Name: "old",
					}},
					Redirect: &networkingv1.HTTPRedirect{Uri: "/new", Authority: "new.example.com", Scheme: "https", RedirectCode: 302,
						RedirectPort: &networkingv1.HTTPRedirect_Port{Port: 8443}},
				},
				{
					Name:           "teapot",
					Match:          []*networkingv1.HTTPMatchRequest{{Uri: rtPrefix("/teapot")}},
					DirectResponse: &networkingv1.HTTPDirectResponse{Status: 418, Body: &networkingv1.HTTPBody{Specifier: &networkingv1.HTTPBody_String_{String_: "short and stout"}}},
				},
				{
					Name: "api",
					Match: []*networkingv1.HTTPMatchRequest{
						{Uri: rtRegex("/api/v[0-9]+/.*"), QueryParams: map[string]*networkingv1.StringMatch{"debug": rtExact("1")}},
						{Uri: rtPrefix("/API"), IgnoreUriCase: true, Authority: rtPrefix("kitchen"), Scheme: rtExact("http")},
						{Uri: rtPrefix("/only-on-admin"), Port: 8081},
						{Uri: rtPrefix("/only-for-ratings"), SourceLabels: map[string]string{"app": "ratings"}},
						{Uri: rtPrefix("/gw"), Gateways: []string{"istio-system/ingress"}},
					},
					Rewrite: &networkingv1.HTTPRewrite{Uri: "/v2/", Authority: "kitchen-backend"},
					Headers: &networkingv1.Headers{
						Request:  &networkingv1.Headers_HeaderOperations{Set: map[string]string{"x-b": "2", "x-a": "1"}, Add: map[string]string{"x-trace": "on"}, Remove: []string{"x-secret"}},
						Response: &networkingv1.Headers_HeaderOperations{Set: map[string]string{"cache-control": "no-store"}, Remove: []string{"server"}},
					},
					Mirrors: []*networkingv1.HTTPMirrorPolicy{{Destination: &networkingv1.Destination{Host: "ratings"}, Percentage: &networkingv1.Percent{Value: 25}}},
					CorsPolicy: &networkingv1.CorsPolicy{
						AllowOrigins:     []*networkingv1.StringMatch{rtExact("https://a.example.com"), rtRegex(`https://.*\.b\.example\.com`)},
						AllowMethods:     []string{"GET", "POST"},
						AllowHeaders:     []string{"x-a"},
						ExposeHeaders:    []string{"x-b"},
						MaxAge:           durationpb.New(24 * time.Hour),
						AllowCredentials: wrapperspb.Bool(true),
					},
					Retries: &networkingv1.HTTPRetry{Attempts: 0},
					Route:   []*networkingv1.HTTPRouteDestination{rtDest("kitchen", "", 0)},
				},
				{
					Name: "regex-rewrite",
					Match: []*networkingv1.HTTPMatchRequest{{
						Uri:            rtPrefix("/users"),
						Headers:        map[string]*networkingv1.StringMatch{"x-present": {}, "uri": rtExact("ignored")},
						WithoutHeaders: map[string]*networkingv1.StringMatch{"x-canary": rtExact("true")},
					}},
					Rewrite: &networkingv1.HTTPRewrite{UriRegexRewrite: &networkingv1.RegexRewrite{Match: "^/users/(.*)$", Rewrite: `/u/\1`}},
					Mirror:  &networkingv1.Destination{Host: "reviews", Subset: "v1"},
					Route: []*networkingv1.HTTPRouteDestination{{
						Destination: &networkingv1.Destination{Host: "kitchen", Port: &networkingv1.PortSelector{Number: 8081}},
						Headers:     &networkingv1.Headers{Request: &networkingv1.Headers_HeaderOperations{Set: map[string]string{"x-dest": "admin"}}},
					}},
				},
				{
					Name:  "unsupported",
					Match: []*networkingv1.HTTPMatchRequest{{Uri: rtPrefix("/exp")}},
					Fault: &networkingv1.HTTPFaultInjection{Delay: &networkingv1.HTTPFaultInjection_Delay{
						HttpDelayType: &networkingv1.HTTPFaultInjection_Delay_ExponentialDelay{ExponentialDelay: durationpb.New(time.Second)}}},
					Route: []*networkingv1.HTTPRouteDestination{
						rtDest("kitchen", "", 0), rtDest("kitchen", "missing", 100),
					},
				},
				{
					Name:     "delegated",
					Delegate: &networkingv1.Delegate{Name: "other", Namespace: "default"},
				},
			},
		}),
		rtObj(config.KindVirtualService, "default", "mysql", 4, &networkingv1.VirtualService{
			Hosts: []string{"mysql"},
			Tcp: []*networkingv1.TCPRoute{{
				Match: []*networkingv1.L4MatchAttributes{{Port: 3306}},
				Route: []*networkingv1.RouteDestination{
					{Destination: &networkingv1.Destination{Host: "mysql", Subset: "v1"}, Weight: 80},
					{Destination: &networkingv1.Destination{Host: "mysql", Subset: "v2"}, Weight: 20},
				},
			}},
		}),
		rtObj(config.KindVirtualService, "default", "api", 4, &networkingv1.VirtualService{
			Hosts: []string{"api.example.com"},
			Tls: []*networkingv1.TLSRoute{{
				Match: []*networkingv1.TLSMatchAttributes{{SniHosts: []string{"api.example.com"}, Port: 443}},
				Route: []*networkingv1.RouteDestination{{Destination: &networkingv1.Destination{Host: "api.example.com", Port: &networkingv1.PortSelector{Number: 443}}}},
			}},
		}),
		rtObj(config.KindVirtualService, "default", "echo", 4, &networkingv1.VirtualService{
			Hosts: []string{"echo"},
			Http: []*networkingv1.HTTPRoute{
				{
					Match: []*networkingv1.HTTPMatchRequest{{Uri: rtPrefix("/echo.Echo/Slow")}},
					Fault: &networkingv1.HTTPFaultInjection{Abort: &networkingv1.HTTPFaultInjection_Abort{
						ErrorType: &networkingv1.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "UNAVAILABLE"}}},
					Route: []*networkingv1.HTTPRouteDestination{rtDest("echo", "", 0)},
				},
				{
					Timeout: durationpb.New(3 * time.Second),
					Retries: &networkingv1.HTTPRetry{Attempts: 4, RetryOn: "unavailable,5xx"},
					Route:   []*networkingv1.HTTPRouteDestination{rtDest("echo", "", 0)},
				},
			},
		}),
		// A host nothing defines: reported, not routed.
		rtObj(config.KindVirtualService, "default", "ghost", 6, &networkingv1.VirtualService{
			Hosts: []string{"ghost.example.org"},
			Http:  []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{rtDest("ghost.example.org", "", 0)}}},
		}),
	}
	return objs
}

func productpageProxy() *model.Proxy {
	return &model.Proxy{
		ID: "sidecar~10.1.2.1~productpage-v1.default~default.svc.cluster.local", Type: model.ProxySidecar,
		Namespace: "default", Labels: map[string]string{"app": "productpage", "version": "v1"},
		IPs:      []string{"10.1.2.1"},
		Workload: config.Key{Kind: config.KindWorkloadEntry, Namespace: "default", Name: "productpage-v1"},
	}
}

func detailsProxy() *model.Proxy {
	return &model.Proxy{
		ID: "sidecar~10.1.6.1~details-v1.other~other.svc.cluster.local", Type: model.ProxySidecar,
		Namespace: "other", Labels: map[string]string{"app": "details"}, IPs: []string{"10.1.6.1"},
	}
}

func ratingsProxy() *model.Proxy {
	return &model.Proxy{
		ID: "sidecar~10.1.1.1~ratings-v1.default~default.svc.cluster.local", Type: model.ProxySidecar,
		Namespace: "default", Labels: map[string]string{"app": "ratings", "version": "v1"}, IPs: []string{"10.1.1.1"},
	}
}

func grpcProxy() *model.Proxy {
	return &model.Proxy{ID: "grpc-client", Type: model.ProxyGRPC, Namespace: "default", Labels: map[string]string{"app": "client"}}
}
