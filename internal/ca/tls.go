package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// ServingCert is weftd's own TLS certificate for the secure port (15012),
// issued by the CA and renewed on the first handshake after two thirds of
// its lifetime, or at once after a root was retired.
type ServingCert struct {
	ca  *CA
	dns []string
	ips []net.IP

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
	gen     uint64
}

// ServingCertificate issues weftd's serving certificate for dnsNames and
// ips (e.g. "weftd.weft-system.svc", 127.0.0.1) with the CA's default TTL.
func (c *CA) ServingCertificate(dnsNames []string, ips []net.IP) (*ServingCert, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("ca: serving certificate needs at least one DNS name or IP")
	}
	s := &ServingCert{ca: c, dns: append([]string(nil), dnsNames...), ips: append([]net.IP(nil), ips...)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.renewLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ServingCert) renewLocked() error {
	c := s.ca
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c.mu.Lock()
	gen := c.rootGen
	c.mu.Unlock()
	now := c.now()
	// The signer only needs the public key; a CSR-shaped request keeps one
	// Signer method for workloads and weftd alike.
	req := SignRequest{CSR: &x509.CertificateRequest{PublicKey: key.Public()}, DNSNames: s.dns, IPAddresses: s.ips, TTL: c.defTTL}
	chain, err := c.signer.Sign(context.Background(), req)
	if err != nil {
		return fmt.Errorf("ca: serving certificate: %w", err)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		tc.Certificate = append(tc.Certificate, cert.Raw)
	}
	s.cert, s.gen = tc, gen
	s.renewAt = now.Add(chain[0].NotAfter.Sub(now) * 2 / 3)
	return nil
}

// GetCertificate is a tls.Config.GetCertificate callback.
func (s *ServingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Certificate()
}

// Certificate returns the current certificate, renewing it when due. A
// failed renewal keeps serving the old certificate while it is valid.
func (s *ServingCert) Certificate() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.ca
	c.mu.Lock()
	gen := c.rootGen
	c.mu.Unlock()
	now := c.now()
	if now.Before(s.renewAt) && gen == s.gen {
		return s.cert, nil
	}
	if err := s.renewLocked(); err != nil {
		if now.Before(s.cert.Leaf.NotAfter) {
			c.log.Error("renew serving certificate; keeping the current one", "error", err)
			return s.cert, nil
		}
		return nil, err
	}
	return s.cert, nil
}

// ServerTLSConfig is the TLS config for the secure port: it serves sc,
// requests but does not require a client certificate (bootstrap-token
// callers have none yet) and rejects any presented certificate that does
// not verify against the current trust bundle as a workload certificate.
// Consumers that need an identity (xDS) then require either a verified
// client certificate or a token: see AuthenticateContext.
func (c *CA) ServerTLSConfig(sc *ServingCert) *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: sc.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"h2"},
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		remote := ""
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		per := base.Clone()
		// VerifyConnection, unlike VerifyPeerCertificate, also runs on
		// resumed sessions, so a resumed ticket cannot smuggle in a
		// certificate that has since expired or lost its root.
		per.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, err := c.VerifyClientCert(cs.PeerCertificates)
			if err != nil {
				a := audit{ca: c, remote: remote}
				_ = a.refuse(codes.Unauthenticated, reasonTLSClientCert, err) // logs and counts; the handshake fails with err
			}
			return err
		}
		return per, nil
	}
	return cfg
}

// VerifyClientCert verifies a workload chain (leaf first) against the trust
// bundle now and returns its SPIFFE ID.
func (c *CA) VerifyClientCert(chain []*x509.Certificate) (spiffe.ID, error) {
	return VerifyWorkloadCert(chain, c.TrustBundle(), c.td, c.now())
}

// AuthenticateContext authenticates the caller of a gRPC request (token or
// client certificate) the same way CreateCertificate does, for other
// services on the secure port such as xDS. It never consumes single-use
// tokens: Grant.Commit is left for the caller to ignore.
func (c *CA) AuthenticateContext(ctx context.Context) (*Grant, error) {
	return authenticate(ctx, c.auths, callerFrom(ctx))
}
