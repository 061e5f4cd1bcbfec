package listener

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// testCA issues certificates for the mTLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{name}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) issue(t *testing.T, uri string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// mtlsInbound builds virtualInbound with one HTTP chain set for port in
// mode (STRICT, PERMISSIVE or DISABLE, as translate generates them) and
// the inbound cluster to the app.
func mtlsInbound(t *testing.T, mode string, port, appPort uint32) *runtime.Snapshot {
	t.Helper()
	s, err := runtime.Build(nil, inboundAppCluster(appPort), mtlsInboundListener(t, map[uint32]string{port: mode}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const inboundAppClusterName = "inbound|9080||productpage.default.svc.cluster.local"

// inboundAppCluster is the inbound cluster of mtlsInboundListener's chains.
func inboundAppCluster(appPort uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 inboundAppClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: inboundAppClusterName, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: sockAddr("127.0.0.1", appPort)}}}}}}},
	}
}

// mtlsInboundListener is virtualInbound with, for every port, the HTTP
// chains of its mode as translate generates them; every chain routes to
// inboundAppCluster.
func mtlsInboundListener(t *testing.T, modes map[uint32]string) *listenerv3.Listener {
	t.Helper()
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
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	dtc, _ := anypb.New(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio", "h2", "http/1.1"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: ads}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ads}},
		},
	})
	chain := func(port uint32, name, transport string, withTLS bool, alpn ...string) *listenerv3.FilterChain {
		fc := &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transport, ApplicationProtocols: alpn},
			Filters:          []*listenerv3.Filter{{Name: runtime.FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}
		if withTLS {
			fc.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: dtc}}
		}
		return fc
	}
	vi := &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("0.0.0.0", 15006)}
	inspector, _ := anypb.New(&wrapperspb.StringValue{}) // config content is not read
	ports := make([]uint32, 0, len(modes))
	for p := range modes {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	for _, port := range ports {
		chain := func(name, transport string, withTLS bool, alpn ...string) *listenerv3.FilterChain {
			return chain(port, name, transport, withTLS, alpn...)
		}
		switch modes[port] {
		case "STRICT":
			vi.FilterChains = append(vi.FilterChains, chain(inbound, "", true))
		case "PERMISSIVE":
			if len(vi.ListenerFilters) == 0 {
				vi.ListenerFilters = []*listenerv3.ListenerFilter{{Name: runtime.FilterTLSInspector, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector}}}
			}
			vi.FilterChains = append(vi.FilterChains,
				chain(inbound+"|mtls", "tls", true, "istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"),
				chain(inbound+"|tls", "tls", false),
				chain(inbound, "", false),
			)
		case "DISABLE":
			vi.FilterChains = append(vi.FilterChains, chain(inbound, "", false))
		}
	}
	return vi
}

// startApp is the workload: it answers with the path.
func startApp(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app "+r.URL.Path) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// freePort returns a port free on addr.
func freePort(t *testing.T, addr string) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// get sends one HTTP/1.1 request over c (plaintext or TLS) and returns the
// status line and body.
func rawGet(c net.Conn, path string) (string, error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: productpage\r\nConnection: close\r\n\r\n", path); err != nil {
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

func TestInboundMTLS(t *testing.T) {
	mesh, other := newTestCA(t, "cluster.local"), newTestCA(t, "other")
	serving := mesh.issue(t, "spiffe://cluster.local/ns/default/sa/productpage")
	client := mesh.issue(t, "spiffe://cluster.local/ns/default/sa/reviews")
	foreign := other.issue(t, "spiffe://cluster.local/ns/default/sa/reviews")
	wrongTD := mesh.issue(t, "spiffe://evil.example/ns/default/sa/reviews")
	notSpiffe := mesh.issue(t, "https://example.com/reviews")
	roots := x509.NewCertPool()
	roots.AddCert(mesh.cert)
	appPort := startApp(t)
	bind := "127.0.0.1"

	dialTLS := func(addr string, cert *tls.Certificate) (net.Conn, error) {
		// A mesh client offers Istio's ALPN; the server's name is its SPIFFE ID.
		cfg := &tls.Config{RootCAs: roots, InsecureSkipVerify: true, NextProtos: []string{"istio-http/1.1", "istio"}}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		// TLS 1.3 reports a refused client certificate on the first read.
		if _, err := rawGet(c, "/probe"); err != nil {
			return nil, err
		}
		return tls.Dial("tcp", addr, cfg)
	}
	for _, mode := range []string{"STRICT", "PERMISSIVE", "DISABLE"} {
		t.Run(mode, func(t *testing.T) {
			port := freePort(t, bind)
			s := mtlsInbound(t, mode, port, appPort)
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
			addr := m.Addrs()[explicitInboundPrefix+fmt.Sprint(port)]
			if addr == "" {
				t.Fatalf("no explicit inbound socket: %v", m.Addrs())
			}
			plainOK := mode != "STRICT"
			tlsOK := mode != "DISABLE"

			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rawGet(c, "/plain")
			if plainOK != (err == nil && got == "200 app /plain") {
				t.Errorf("plaintext: %q %v (want success %v)", got, err, plainOK)
			}
			for name, tc := range map[string]struct {
				cert *tls.Certificate
				ok   bool
			}{
				"mesh cert":           {&client, tlsOK},
				"no client cert":      {nil, false},
				"another CA":          {&foreign, false},
				"other trust domain":  {&wrongTD, false},
				"URI is not a SPIFFE": {&notSpiffe, false},
			} {
				c, err := dialTLS(addr, tc.cert)
				if err != nil {
					if tc.ok {
						t.Errorf("%s: %v", name, err)
					}
					continue
				}
				pc := c.(*tls.Conn)
				got, err := rawGet(c, "/tls")
				ok := err == nil && got == "200 app /tls"
				if ok != tc.ok {
					t.Errorf("%s: %q %v (want success %v)", name, got, err, tc.ok)
				}
				if ok && pc.ConnectionState().NegotiatedProtocol == "h2" {
					t.Errorf("h2 negotiated; the engine is HTTP/1.1")
				}
			}
			// TLS without a mesh ALPN is the application's own: on
			// PERMISSIVE it is not terminated by the proxy (it reaches
			// the plaintext HTTP engine and fails there, as before).
			if mode == "PERMISSIVE" {
				c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client}, NextProtos: []string{"http/1.1"}})
				if err == nil {
					c.Close()
					t.Errorf("app TLS (ALPN http/1.1) was terminated with the mesh certificate")
				}
			}
		})
	}
}

func TestPeerSPIFFEID(t *testing.T) {
	ca := newTestCA(t, "cluster.local")
	leaf := ca.issue(t, "spiffe://cluster.local/ns/default/sa/reviews").Leaf
	if id, err := peerSPIFFEID(leaf, "cluster.local", []string{"spiffe://cluster.local/"}); err != nil || id.ServiceAccount != "reviews" {
		t.Fatalf("id %v err %v", id, err)
	}
	if _, err := peerSPIFFEID(leaf, "cluster.local", []string{"spiffe://cluster.local/ns/other/"}); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("prefix mismatch accepted: %v", err)
	}
}

// TestCapturedInboundMTLS goes through the transparent-mode path
// (serveCaptured): a STRICT chain refuses plaintext instead of passing it on.
func TestCapturedInboundMTLS(t *testing.T) {
	ca := newTestCA(t, "cluster.local")
	serving := ca.issue(t, "spiffe://cluster.local/ns/default/sa/productpage")
	client := ca.issue(t, "spiffe://cluster.local/ns/default/sa/reviews")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	s := mtlsInbound(t, "STRICT", 9080, startApp(t))
	m := New(Config{Holder: runtime.NewHolder(s), Mode: Transparent, BindAddr: netip.MustParseAddr("127.0.0.1"),
		PortOverrides: map[uint16]uint16{15006: 0},
		InboundTLS: &InboundTLS{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil },
			Roots:          func() *x509.CertPool { return roots },
			TrustDomain:    "cluster.local",
		}})
	m.origDst = func(net.Conn) (netip.AddrPort, error) { return netip.MustParseAddrPort("10.0.0.5:9080"), nil }
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.Update(s); err != nil {
		t.Fatal(err)
	}
	addr := m.Addrs()["virtualInbound"]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rawGet(c, "/plain"); err == nil {
		t.Fatalf("plaintext on STRICT got %q", got)
	}
	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rawGet(tc, "/tls"); err != nil || got != "200 app /tls" {
		t.Fatalf("mTLS: %q %v", got, err)
	}
}

// TestParseClientHello: the inspector gets ALPN and SNI from a real
// ClientHello (crypto/tls client, recorded from the wire).
func TestParseClientHello(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: "outbound_.9080_._.productpage", NextProtos: []string{"istio-http/1.1", "istio"}, InsecureSkipVerify: true})
		_ = c.Handshake()
	}()
	buf := make([]byte, maxClientHello)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(b, buf, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := 5 + (int(buf[3])<<8 | int(buf[4]))
	for n < want {
		m, err := b.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	b.Close()
	alpn, sni := parseClientHello(buf[:n])
	if strings.Join(alpn, ",") != "istio-http/1.1,istio" || sni != "outbound_.9080_._.productpage" {
		t.Fatalf("alpn %v sni %q", alpn, sni)
	}
	if alpn, _ := parseClientHello(buf[:n/2]); alpn != nil {
		t.Fatalf("partial hello parsed: %v", alpn)
	}
}
