package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/vmbundle"
)

// Identity configures the proxy's workload identity. With it the proxy gets
// its certificate from weftd's CA (bootstrap token first, then renewals
// authenticated by the current certificate), terminates inbound mTLS with
// it, and talks xDS over TLS on weftd's secure port.
type Identity struct {
	// CAAddr is weftd's secure address (CA and xDS over TLS, Istio's 15012).
	CAAddr string
	// Roots is the mesh trust bundle (`weftctl ca bundle`): it verifies weftd
	// and peers. Roots of issued chains are added as they arrive.
	Roots []*x509.Certificate
	// Token is the bootstrap token (`weftctl token create`), used while the
	// proxy holds no valid certificate.
	Token string
	// TrustDomain of the SPIFFE ID [cluster.local].
	TrustDomain string
	// CertTTL is the validity to ask for (0: the CA's default).
	CertTTL time.Duration
}

// ParseRoots reads PEM certificates (a trust bundle file's content).
func ParseRoots(data []byte) ([]*x509.Certificate, error) {
	roots, err := vmbundle.ParseRoots(data)
	if err != nil {
		return nil, fmt.Errorf("agent: trust bundle: %w", err)
	}
	return roots, nil
}

// DefaultCAAddr is the xDS address's host with Istio's secure port 15012.
func DefaultCAAddr(xdsAddr string) string {
	host, _, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		host = xdsAddr
	}
	return net.JoinHostPort(host, "15012")
}

// newRotator builds the certificate manager for cfg.Identity; firstCert is
// closed once the first certificate arrived.
func newRotator(cfg Config, firstCert chan struct{}) (*caclient.Rotator, error) {
	id := cfg.Identity
	if id.TrustDomain == "" {
		id.TrustDomain = "cluster.local"
	}
	if id.CAAddr == "" {
		id.CAAddr = DefaultCAAddr(cfg.XDSAddr)
	}
	ns, sa := cfg.Namespace, cfg.ServiceAccount
	if ns == "" {
		ns = "default"
	}
	if sa == "" {
		sa = "default" // Kubernetes' default service account, as in Istio
	}
	var once bool
	return caclient.NewRotator(caclient.RotatorConfig{
		ID:     spiffe.ID{TrustDomain: id.TrustDomain, Namespace: ns, ServiceAccount: sa},
		Target: id.CAAddr,
		Roots:  id.Roots,
		Token:  id.Token,
		TTL:    id.CertTTL,
		Logger: cfg.Logger,
		OnRotate: func(*tls.Certificate, []*x509.Certificate) {
			if !once { // OnRotate runs on the Rotator's goroutine only
				once = true
				close(firstCert)
			}
		},
	})
}

// inboundTLS is what the listener needs from the rotator.
func inboundTLS(r *caclient.Rotator, trustDomain string) *listener.InboundTLS {
	if trustDomain == "" {
		trustDomain = "cluster.local"
	}
	return &listener.InboundTLS{GetCertificate: r.GetCertificate, Roots: r.Roots, TrustDomain: trustDomain}
}

// xdsDialOptions connect to weftd's secure port: TLS verified against the
// mesh roots, the workload certificate as client certificate (picked per
// handshake, so reconnects use the current one), and the bootstrap token
// on streams while no valid certificate is held.
func xdsDialOptions(r *caclient.Rotator, token string) []grpc.DialOption {
	tc := &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              r.Roots(),
		GetClientCertificate: r.GetClientCertificate,
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithPerRPCCredentials(bootstrapToken{rot: r, token: token}),
	}
}

// bootstrapToken sends "authorization: Bearer <token>" (Istio's form) on
// xDS streams while the rotator holds no valid certificate.
type bootstrapToken struct {
	rot   *caclient.Rotator
	token string
}

func (b bootstrapToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.token == "" {
		return nil, nil
	}
	if c, _ := b.rot.GetCertificate(nil); c != nil {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (bootstrapToken) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = bootstrapToken{}
