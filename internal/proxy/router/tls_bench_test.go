package router_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tlsorigin"
)

// benchPKI is a mesh root with two workload certificates.
type benchPKI struct {
	roots          *x509.CertPool
	client, server tls.Certificate
}

func newBenchPKI(tb testing.TB) *benchPKI {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	leaf := func(serial int64, id string) tls.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		u, _ := url.Parse(id)
		d, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial), URIs: []*url.URL{u},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, root, &k.PublicKey, key)
		if err != nil {
			tb.Fatal(err)
		}
		l, _ := x509.ParseCertificate(d)
		return tls.Certificate{Certificate: [][]byte{d, der}, PrivateKey: k, Leaf: l}
	}
	p := &benchPKI{roots: x509.NewCertPool(), client: leaf(2, "spiffe://cluster.local/ns/default/sa/productpage"),
		server: leaf(3, "spiffe://cluster.local/ns/default/sa/reviews")}
	p.roots.AddCert(root)
	return p
}

func (p *benchPKI) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &p.client, nil
}
func (p *benchPKI) Certificate() *tls.Certificate          { return &p.client }
func (p *benchPKI) Roots() *x509.CertPool                  { return p.roots }
func (p *benchPKI) RefreshRoots(ctx context.Context) error { return nil }

// BenchmarkRoundTripMTLS is BenchmarkRoundTrip with auto mTLS to the
// upstream (a Go TLS server requiring client certificates): the per-request
// cost on an established mesh connection, through tlsorigin's Conn.
func BenchmarkRoundTripMTLS(b *testing.B) {
	pki := newBenchPKI(b)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.roots})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go rawServe(ln) // like rawUpstream: allocation-free answers, so only the proxy's allocations count

	c := edsCluster(v1Name, 1024)
	autoMTLS(c)
	h := tlsHolder(b, c, tlsModeCLA(v1Name, []string{ln.Addr().String()}, 0), nil)
	o := tlsorigin.New(tlsorigin.Config{Identity: pki})
	cl := h.Load().Cluster(v1Name)
	o.Sync(cl.TLSContexts())
	m := telemetry.New(telemetry.Identity{Workload: "productpage-v1", Namespace: "default", Principal: "spiffe://cluster.local/ns/default/sa/productpage"})
	rt := router.New(router.Config{Holder: h, Source: portSource{}, Metrics: m, Reporter: telemetry.Source, UpstreamPeer: o.Peer})
	s, err := h1.NewServer(h1.Config{Router: rt, Observer: rt, Pool: h1.NewPool(h1.PoolConfig{Dial: o.Dial})})
	if err != nil {
		b.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(pl)
	b.Cleanup(func() { s.Close() })
	rc := newRawClient(b, pl.Addr().String(), "/reviews/1")
	for i := 0; i < 200; i++ {
		rc.roundTrip(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc.roundTrip(b)
	}
}

// rawServe answers every request head on ln's connections with a fixed
// response without allocating.
func rawServe(ln net.Listener) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 16<<10)
			n := 0
			for {
				m, err := c.Read(buf[n:])
				if err != nil {
					return
				}
				n += m
				for {
					i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
					if i < 0 {
						break
					}
					copy(buf, buf[i+4:n])
					n -= i + 4
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}
		}()
	}
}
