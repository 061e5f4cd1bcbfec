package tlsorigin

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

const (
	productpage = "spiffe://cluster.local/ns/default/sa/productpage"
	reviews     = "spiffe://cluster.local/ns/default/sa/reviews"
)

func dial(o *Origin, addr, key string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return o.Dial(ctx, "tcp", addr, key)
}

// TestMeshMTLS: weft-proxy's client side against a mesh workload's server
// side, both with certificates from weftd's CA.
func TestMeshMTLS(t *testing.T) {
	m := startMeshCA(t)
	client, server := m.rotator(t, "reviews", time.Hour), m.rotator(t, "productpage", time.Hour)
	srv := startServer(t, meshServerConfig(server))
	for _, tt := range []struct {
		name string
		sans []string
		want string // error substring, "" for success
	}{
		{"right SAN", []string{productpage}, ""},
		{"one of several SANs", []string{"spiffe://cluster.local/ns/default/sa/other", productpage}, ""},
		{"no SAN matchers: any identity of the trust domain", nil, ""},
		{"wrong SAN", []string{"spiffe://cluster.local/ns/default/sa/other"}, "no subject alternative name of the server ([" + productpage + "]) matches"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := mesh("tls:"+tt.name, tt.sans...)
			o := newOrigin(t, client, d)
			c, err := dial(o, srv.addr, d.Key)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				if got := count(o, resultVerifyFailed); got != 1 {
					t.Errorf("verify_failed = %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := roundTrip(c); err != nil {
				t.Fatal(err)
			}
			if p := c.(*Conn).PeerPrincipal(); p != productpage || o.Peer(srv.addr, d.Key) != productpage {
				t.Errorf("peer principal %q / %q", p, o.Peer(srv.addr, d.Key))
			}
			cs := srv.last()
			if got := cs.PeerCertificates[0].URIs[0].String(); got != reviews {
				t.Errorf("server saw client %s", got)
			}
			if cs.ServerName != d.SNI || cs.NegotiatedProtocol != "istio-peer-exchange" || cs.Version != tls.VersionTLS12 {
				t.Errorf("SNI %q ALPN %q version %x", cs.ServerName, cs.NegotiatedProtocol, cs.Version)
			}
		})
	}
}

// TestMeshPeerIdentityRules: a mesh peer must chain to the mesh roots and
// hold exactly one SPIFFE ID in our trust domain, whatever the SAN matchers.
func TestMeshPeerIdentityRules(t *testing.T) {
	root := newTestCA(t, "mesh root")
	me := root.issue(t, leafOpts{uris: []string{reviews}})
	id := &fixedIdentity{cert: &me, roots: pool(root.cert)}
	foreign := newTestCA(t, "foreign root")
	for _, tt := range []struct {
		name string
		cert tls.Certificate
		sans []string
		want string
	}{
		{"ok", root.issue(t, leafOpts{uris: []string{productpage}}), []string{productpage}, ""},
		{"wrong trust domain", root.issue(t, leafOpts{uris: []string{"spiffe://evil.local/ns/default/sa/productpage"}}), nil, `not in trust domain "cluster.local"`},
		{"wrong trust domain even when a SAN matcher allows it", root.issue(t, leafOpts{uris: []string{"spiffe://evil.local/ns/default/sa/productpage"}}),
			[]string{"spiffe://evil.local/ns/default/sa/productpage"}, `not in trust domain`},
		{"no SPIFFE ID", root.issue(t, leafOpts{dns: []string{"productpage"}}), nil, "0 URI SANs"},
		{"two URIs", root.issue(t, leafOpts{uris: []string{productpage, reviews}}), nil, "2 URI SANs"},
		{"not chained to the mesh roots", foreign.issue(t, leafOpts{uris: []string{productpage}}), nil, "certificate signed by unknown authority"},
		{"expired", root.issue(t, leafOpts{uris: []string{productpage}, notAfter: time.Now().Add(-time.Minute)}), nil, "expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cert := tt.cert
			srv := startServer(t, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert})
			d := mesh("tls:k", tt.sans...)
			o := newOrigin(t, id, d)
			c, err := dial(o, srv.addr, d.Key)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if n := id.refreshes.Load(); n != 1 {
		t.Errorf("unknown authority triggered %d bundle refreshes, want 1", n)
	}
}

// TestRotationNextHandshake: a renewed workload certificate is presented on
// the next connection (resumption does not carry the old one over), and an
// established connection keeps working.
func TestRotationNextHandshake(t *testing.T) {
	m := startMeshCA(t)
	client, server := m.rotator(t, "reviews", time.Hour), m.rotator(t, "productpage", time.Hour)
	srv := startServer(t, meshServerConfig(server))
	d := mesh("tls:rot", productpage)
	o := newOrigin(t, client, d)
	c1, err := dial(o, srv.addr, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := roundTrip(c1); err != nil {
		t.Fatal(err)
	}
	first := srv.last().PeerCertificates[0]
	// Same certificate: the second connection resumes.
	c2, err := dial(o, srv.addr, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c2); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if !c2.(*Conn).ConnectionState().DidResume {
		t.Error("second connection did not resume")
	}
	if err := client.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c3, err := dial(o, srv.addr, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3); err != nil {
		t.Fatal(err)
	}
	if c3.(*Conn).ConnectionState().DidResume {
		t.Error("resumed a session taken with the previous certificate")
	}
	if got := srv.last().PeerCertificates[0]; got.Equal(first) || got.URIs[0].String() != reviews {
		t.Errorf("server saw serial %s after rotation, the old one was %s", got.SerialNumber, first.SerialNumber)
	}
	if _, err := c1.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c1, make([]byte, 5)); err != nil {
		t.Fatalf("the connection opened before the rotation broke: %v", err)
	}
	if ok, res := count(o, resultOK), count(o, resultResumed); ok != 2 || res != 1 {
		t.Errorf("handshakes ok %v resumed %v, want 2 and 1", ok, res)
	}
}

// TestResumedSessionWithExpiredPeer: a session whose server certificate has
// expired since is not trusted; a full handshake follows at once.
func TestResumedSessionWithExpiredPeer(t *testing.T) {
	root := newTestCA(t, "mesh root")
	me := root.issue(t, leafOpts{uris: []string{reviews}})
	short := root.issue(t, leafOpts{uris: []string{productpage}, notAfter: time.Now().Add(time.Hour)})
	long := root.issue(t, leafOpts{uris: []string{productpage}, notAfter: time.Now().Add(3 * time.Hour)})
	srvCfg := func(c tls.Certificate) *tls.Config {
		// One ticket key: the server can resume sessions of its previous config.
		return &tls.Config{Certificates: []tls.Certificate{c}, ClientAuth: tls.RequireAnyClientCert, SessionTicketKey: [32]byte{1}}
	}
	srv := startServer(t, srvCfg(short))
	d := mesh("tls:exp", productpage)
	d.MinVersion, d.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	clock := time.Now()
	o := New(Config{Identity: &fixedIdentity{cert: &me, roots: pool(root.cert)}, Now: func() time.Time { return clock }})
	o.Sync([]*upstream.UpstreamTLS{d})
	c, err := dial(o, srv.addr, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c); err != nil { // the session ticket arrives with the first read
		t.Fatal(err)
	}
	c.Close()
	srv.setConfig(srvCfg(long))
	clock = clock.Add(2 * time.Hour)
	c, err = dial(o, srv.addr, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.(*Conn).ConnectionState().DidResume || !c.(*Conn).ConnectionState().PeerCertificates[0].Equal(long.Leaf) {
		t.Error("want a full handshake with the server's current certificate")
	}
	if got := count(o, resultVerifyFailed); got != 1 {
		t.Errorf("verify_failed %v, want 1 (the refused resumption)", got)
	}
}

// TestRootRotationPeerRenewedFirst: the server renewed under a new root the
// client has not learned yet; the client fetches the bundle and succeeds.
func TestRootRotationPeerRenewedFirst(t *testing.T) {
	m := startMeshCA(t)
	client, server := m.rotator(t, "reviews", time.Hour), m.rotator(t, "productpage", time.Hour)
	m.skew.Store(int64(2 * time.Second))
	if err := m.RotateRoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := server.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(client.Bundle()) != 1 || len(server.Bundle()) != 2 {
		t.Fatalf("bundles: client %d server %d", len(client.Bundle()), len(server.Bundle()))
	}
	srv := startServer(t, meshServerConfig(server))
	d := mesh("tls:rr", productpage)
	o := newOrigin(t, client, d)
	c, err := dial(o, srv.addr, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	if len(client.Bundle()) != 2 {
		t.Errorf("client bundle has %d roots after the refresh, want 2", len(client.Bundle()))
	}
}

// TestRejectedAfterHandshake: a server that refuses our certificate is a
// connect failure — in the handshake with TLS 1.2, on the first read with
// TLS 1.3 (the client finishes first).
func TestRejectedAfterHandshake(t *testing.T) {
	root, other := newTestCA(t, "mesh root"), newTestCA(t, "other root")
	me := root.issue(t, leafOpts{uris: []string{reviews}})
	srv := startServer(t, &tls.Config{Certificates: []tls.Certificate{root.issue(t, leafOpts{uris: []string{productpage}})},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool(other.cert)})
	id := &fixedIdentity{cert: &me, roots: pool(root.cert)}

	d12 := mesh("tls:12")
	o := newOrigin(t, id, d12)
	if _, err := dial(o, srv.addr, d12.Key); err == nil || !strings.Contains(err.Error(), "tls:") {
		t.Fatalf("TLS 1.2: err = %v, want the handshake refused", err)
	}

	d13 := mesh("tls:13")
	d13.MinVersion, d13.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	o = newOrigin(t, id, d13)
	c, err := dial(o, srv.addr, d13.Key)
	if err != nil {
		t.Fatalf("TLS 1.3 handshake: %v", err)
	}
	defer c.Close()
	err = roundTrip(c)
	if !errors.Is(err, h1.ErrConnectFailure) {
		t.Fatalf("first read: %v, want a connect failure", err)
	}
	if got := count(o, resultRejected); got != 1 {
		t.Errorf("rejected = %v", got)
	}
}

func TestWithoutIdentity(t *testing.T) {
	plain := startPlainServer(t)
	auto := mesh("tls:auto")
	auto.Match = "tlsMode-istio"
	mandatory := mesh("tls:mandatory")
	unavailable := &upstream.UpstreamTLS{Key: "tls:cred", Unavailable: `client certificate SDS secret "kubernetes://cred" has no source`}
	o := newOrigin(t, nil, auto, mandatory, unavailable)
	c, err := dial(o, plain, auto.Key)
	if err != nil {
		t.Fatalf("auto mTLS without identity: %v", err)
	}
	if _, ok := c.(*Conn); ok {
		t.Error("auto mTLS without identity dialled TLS, want plaintext")
	}
	c.Close()
	if _, err := dial(o, plain, mandatory.Key); err == nil || !strings.Contains(err.Error(), "no workload identity") {
		t.Errorf("ISTIO_MUTUAL without identity: %v", err)
	}
	if _, err := dial(o, plain, unavailable.Key); err == nil || !strings.Contains(err.Error(), "has no source") {
		t.Errorf("unavailable: %v", err)
	}
	if _, err := dial(o, plain, "tls:never-synced"); err == nil || !strings.Contains(err.Error(), "unknown TLS context") {
		t.Errorf("unknown key: %v", err)
	}
}

func startPlainServer(t *testing.T) string {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
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
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestFileContexts: SIMPLE and MUTUAL with files (DestinationRule
// caCertificates, clientCertificate, privateKey, caCrl), pins and DNS SANs.
func TestFileContexts(t *testing.T) {
	root := newTestCA(t, "ext root")
	serverCert := root.issue(t, leafOpts{dns: []string{"*.example.com"}})
	revoked := root.issue(t, leafOpts{dns: []string{"api.example.com"}})
	clientCert := root.issue(t, leafOpts{dns: []string{"client"}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, crlFile := write("ca.pem", root.pem), write("crl.pem", root.crl(t, revoked.Leaf))
	certFile, keyFile := write("cert.pem", chainPEM(clientCert)), write("key.pem", keyPEM(t, clientCert))
	srv := startServer(t, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool(root.cert)})
	srvRevoked := startServer(t, &tls.Config{Certificates: []tls.Certificate{revoked}})
	spki := sha256.Sum256(serverCert.Leaf.RawSubjectPublicKeyInfo)

	simple := func(key string, mut func(*upstream.UpstreamTLS)) *upstream.UpstreamTLS {
		d := &upstream.UpstreamTLS{Key: key, SNI: "api.example.com", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13, MaxSessionKeys: 1,
			Validation: upstream.Validation{Trust: upstream.TrustCA, CA: upstream.DataSource{Path: caFile},
				SANs: []upstream.SANMatcher{upstream.SANMatcherFor(upstream.SANDNS, "api.example.com")}}}
		if mut != nil {
			mut(d)
		}
		return d
	}
	for _, tt := range []struct {
		name string
		d    *upstream.UpstreamTLS
		addr string
		want string
	}{
		{"SIMPLE, wildcard certificate for the SAN", simple("tls:1", nil), srv.addr, ""},
		{"wrong DNS SAN", simple("tls:2", func(d *upstream.UpstreamTLS) {
			d.Validation.SANs = []upstream.SANMatcher{upstream.SANMatcherFor(upstream.SANDNS, "api.example.org")}
		}), srv.addr, "no subject alternative name"},
		{"MUTUAL with certificate files", simple("tls:3", func(d *upstream.UpstreamTLS) {
			d.Cert = upstream.CertSource{Kind: upstream.CertFiles, Chain: upstream.DataSource{Path: certFile}, Key: upstream.DataSource{Path: keyFile}}
		}), srv.addr, ""},
		{"CRL: not revoked", simple("tls:4", func(d *upstream.UpstreamTLS) { d.Validation.CRL = upstream.DataSource{Path: crlFile} }), srv.addr, ""},
		{"CRL: revoked", simple("tls:5", func(d *upstream.UpstreamTLS) { d.Validation.CRL = upstream.DataSource{Path: crlFile} }), srvRevoked.addr, "is revoked"},
		{"CRL from another CA", simple("tls:6", func(d *upstream.UpstreamTLS) {
			d.Validation.CRL = upstream.DataSource{Inline: newTestCA(t, "x").crl(t)}
		}), srv.addr, "no CRL from"},
		{"SPKI pin", simple("tls:7", func(d *upstream.UpstreamTLS) { d.Validation.SPKIHashes = [][]byte{spki[:]} }), srv.addr, ""},
		{"wrong pin", simple("tls:8", func(d *upstream.UpstreamTLS) { d.Validation.CertHashes = [][]byte{spki[:]} }), srv.addr, "no pinned hash"},
		{"untrusted CA file", simple("tls:9", func(d *upstream.UpstreamTLS) {
			d.Validation.CA = upstream.DataSource{Inline: newTestCA(t, "y").pem}
		}), srv.addr, "unknown authority"},
		{"insecureSkipVerify", &upstream.UpstreamTLS{Key: "tls:10", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}, srvRevoked.addr, ""},
		{"missing CA file", simple("tls:11", func(d *upstream.UpstreamTLS) {
			d.Validation.CA = upstream.DataSource{Path: filepath.Join(dir, "nope.pem")}
		}),
			srv.addr, "trusted_ca " + filepath.Join(dir, "nope.pem")},
		{"bad key file", simple("tls:12", func(d *upstream.UpstreamTLS) {
			d.Cert = upstream.CertSource{Kind: upstream.CertFiles, Chain: upstream.DataSource{Path: certFile}, Key: upstream.DataSource{Path: caFile}}
		}), srv.addr, "client certificate " + certFile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, nil, tt.d)
			c, err := dial(o, tt.addr, tt.d.Key)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := roundTrip(c); err != nil {
				t.Fatal(err)
			}
			if tt.d.Cert.Kind == upstream.CertFiles {
				if pc := srv.last().PeerCertificates; len(pc) == 0 || !pc[0].Equal(clientCert.Leaf) {
					t.Error("the server did not see the client certificate from the files")
				}
			}
		})
	}
}

// TestSyncKeepsOneGeneration: a context is dialable until two Syncs in a
// row did not mention it (requests routed on the previous snapshot).
func TestSyncKeepsOneGeneration(t *testing.T) {
	d := &upstream.UpstreamTLS{Key: "tls:gone", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}
	o := newOrigin(t, nil, d)
	o.Sync(nil)
	if _, err := o.Config(d.Key); err != nil {
		t.Fatalf("dropped after one Sync: %v", err)
	}
	o.Sync(nil)
	if _, err := o.Config(d.Key); err == nil {
		t.Fatal("kept after two Syncs without it")
	}
}

// BenchmarkHandshake measures a full mesh mTLS handshake (ECDSA P-256,
// TLS 1.2 as Envoy's client default, and 1.3) and a resumed one, client and
// server in this process over loopback.
func BenchmarkHandshake(b *testing.B) {
	m := startMeshCA(b)
	client, server := m.rotator(b, "reviews", time.Hour), m.rotator(b, "productpage", time.Hour)
	srv := startServer(b, meshServerConfig(server))
	for _, bc := range []struct {
		name    string
		version uint16
		resume  bool
	}{{"full/TLS1.2", tls.VersionTLS12, false}, {"full/TLS1.3", tls.VersionTLS13, false}, {"resumed/TLS1.2", tls.VersionTLS12, true}, {"resumed/TLS1.3", tls.VersionTLS13, true}} {
		b.Run(bc.name, func(b *testing.B) {
			d := mesh("tls:bench"+bc.name, productpage)
			d.MinVersion, d.MaxVersion = bc.version, bc.version
			if !bc.resume {
				d.MaxSessionKeys = 0
			}
			o := newOrigin(b, client, d)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c, err := dial(o, srv.addr, d.Key)
				if err != nil {
					b.Fatal(err)
				}
				if err := roundTrip(c); err != nil { // TLS 1.3 tickets arrive with the first read
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func count(o *Origin, result string) float64 {
	var m dto.Metric
	if err := o.stats.WithLabelValues(result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
