package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

func pack(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// allowPeer allows only the reviews service account; denyPath denies a
// path prefix (HTTP) or an SNI (TCP).
func allowPeer() *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{"allow-reviews": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
			PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://cluster.local/ns/default/sa/reviews"}}}}}},
	}}}
}

func denyPolicy(perm *rbacv3.Permission) *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{"deny": {
		Permissions: []*rbacv3.Permission{perm},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
	}}}
}

// authzInbound: STRICT virtualInbound with an HTTP chain on httpPort (RBAC
// deny /admin*, allow reviews) and a TCP chain on tcpPort (network RBAC
// deny SNI blocked.example, allow reviews), as weftd generates them.
func authzInbound(t *testing.T, httpPort, appPort, tcpPort, echoPort uint32) *runtime.Snapshot {
	t.Helper()
	const httpCluster, tcpCluster = "inbound|9080||productpage", "inbound|3306||db"
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	socket := &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: pack(t, &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: ads}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ads}},
		},
	})}}
	hf := func(name string, m proto.Message) *hcmv3.HttpFilter {
		return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(t, m)}}
	}
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_9080",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound|9080||",
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: httpCluster}}},
			}}}}}},
		HttpFilters: []*hcmv3.HttpFilter{
			hf(runtime.FilterRBAC, &httprbacv3.RBAC{Rules: denyPolicy(&rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/admin"}}}}}})}),
			hf(runtime.FilterRBAC, &httprbacv3.RBAC{Rules: allowPeer()}),
			hf(runtime.FilterRouter, &routerv3.Router{}),
		}}
	sni := &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: &matcherv3.StringMatcher{
		MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "blocked.example"}}}}
	netFilter := func(cfg *netrbacv3.RBAC) *listenerv3.Filter {
		return &listenerv3.Filter{Name: runtime.FilterNetworkRBAC, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(t, cfg)}}
	}
	vi := &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("0.0.0.0", 15006), TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{
			{Name: httpCluster, FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(httpPort)}, TransportSocket: socket,
				Filters: []*listenerv3.Filter{{Name: runtime.FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(t, hcm)}}}},
			{Name: tcpCluster, FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(tcpPort)}, TransportSocket: socket,
				Filters: []*listenerv3.Filter{
					netFilter(&netrbacv3.RBAC{StatPrefix: "tcp.deny.", Rules: denyPolicy(sni)}),
					netFilter(&netrbacv3.RBAC{StatPrefix: "tcp.allow.", Rules: allowPeer()}),
					{Name: runtime.FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(t,
						&tcpv3.TcpProxy{StatPrefix: tcpCluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: tcpCluster}})}},
				}},
		}}
	static := func(name string, port uint32) *clusterv3.Cluster {
		return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: sockAddr("127.0.0.1", port)}}}}}}}}
	}
	s, err := runtime.Build(nil, static(httpCluster, appPort), static(tcpCluster, echoPort), vi)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startEcho is a TCP app that echoes what it reads.
func startEcho(t *testing.T) uint32 {
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
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// TestInboundAuthorizationOverMTLS: the caller's identity comes from the
// client certificate the listener verified (PeerConn), for HTTP requests
// (router) and TCP connections (network RBAC), and SNI feeds
// requested_server_name.
func TestInboundAuthorizationOverMTLS(t *testing.T) {
	ca := newTestCA(t, "cluster.local")
	serving := ca.issue(t, "spiffe://cluster.local/ns/default/sa/productpage")
	reviews := ca.issue(t, "spiffe://cluster.local/ns/default/sa/reviews")
	ratings := ca.issue(t, "spiffe://cluster.local/ns/default/sa/ratings")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	const bind = "127.0.0.1"
	httpPort, tcpPort := freePort(t, bind), freePort(t, bind)
	s := authzInbound(t, httpPort, startApp(t), tcpPort, startEcho(t))
	m := New(Config{Holder: runtime.NewHolder(s), Mode: Explicit, BindAddr: netip.MustParseAddr(bind),
		Metrics: telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default"}),
		InboundTLS: &InboundTLS{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil },
			Roots:          func() *x509.CertPool { return roots },
			TrustDomain:    "cluster.local",
		}})
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.UpdateExplicitInbound(s); err != nil {
		t.Fatal(err)
	}
	httpAddr := m.Addrs()[explicitInboundPrefix+fmt.Sprint(httpPort)]
	tcpAddr := m.Addrs()[explicitInboundPrefix+fmt.Sprint(tcpPort)]
	dial := func(addr string, cert tls.Certificate, sni string) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, ServerName: sni})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	for _, tc := range []struct {
		name string
		cert tls.Certificate
		path string
		want string
	}{
		{"allowed principal", reviews, "/books", "200 app /books"},
		{"DENY path beats ALLOW", reviews, "/admin", "403 RBAC: access denied"},
		{"other principal", ratings, "/books", "403 RBAC: access denied"},
	} {
		t.Run("http "+tc.name, func(t *testing.T) {
			got, err := rawGet(dial(httpAddr, tc.cert, "productpage"), tc.path)
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}

	echo := func(c *tls.Conn) (string, error) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			return "", err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return string(buf), err
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		sni  string
		ok   bool
	}{
		{"allowed principal", reviews, "db.example", true},
		{"other principal", ratings, "db.example", false},
		{"denied SNI", reviews, "blocked.example", false},
	} {
		t.Run("tcp "+tc.name, func(t *testing.T) {
			got, err := echo(dial(tcpAddr, tc.cert, tc.sni))
			if tc.ok != (err == nil && got == "ping") {
				t.Fatalf("echo %q %v, want success %v", got, err, tc.ok)
			}
			if !tc.ok && err != nil && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("denied connection: want it closed, got %v", err)
			}
		})
	}
}
