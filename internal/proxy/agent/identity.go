package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
	"github.com/weftmesh/weft/internal/proxy/tlsorigin"
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
	// until the first certificate arrives; from then on the bundle is the
	// one weftd sends with every certificate (root rotation, retirement).
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

// workloadID is the SPIFFE ID the proxy asks for (cfg.Identity is set).
func workloadID(cfg Config) spiffe.ID {
	td, ns, sa := cfg.Identity.TrustDomain, cfg.Namespace, cfg.ServiceAccount
	if td == "" {
		td = "cluster.local"
	}
	if ns == "" {
		ns = "default"
	}
	if sa == "" {
		sa = "default" // Kubernetes' default service account, as in Istio
	}
	return spiffe.ID{TrustDomain: td, Namespace: ns, ServiceAccount: sa}
}

// newRotator builds the certificate manager for cfg.Identity; firstCert is
// closed once the first certificate arrived.
func newRotator(cfg Config, firstCert chan struct{}) (*caclient.Rotator, error) {
	id := cfg.Identity
	if id.CAAddr == "" {
		id.CAAddr = DefaultCAAddr(cfg.XDSAddr)
	}
	var once bool
	return caclient.NewRotator(caclient.RotatorConfig{
		ID:     workloadID(cfg),
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
// current trust bundle and the workload certificate as client certificate
// (both read per connection, so a reconnect after a root rotation or a
// renewal uses the current ones), and the bootstrap token on streams while
// no valid certificate is held.
func xdsDialOptions(r *caclient.Rotator, token string) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(&rotatingTLS{rot: r}),
		grpc.WithPerRPCCredentials(bootstrapToken{rot: r, token: token}),
	}
}

// rotatingTLS is gRPC client transport credentials built from the
// rotator's bundle at each handshake (credentials.NewTLS freezes RootCAs:
// after weftd retires a root and reissues its serving certificate, a
// reconnect would otherwise fail).
type rotatingTLS struct {
	rot        *caclient.Rotator
	serverName string
}

var _ credentials.TransportCredentials = (*rotatingTLS)(nil)

func (c *rotatingTLS) current() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              c.rot.Roots(),
		ServerName:           c.serverName,
		GetClientCertificate: c.rot.GetClientCertificate,
	})
}

func (c *rotatingTLS) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.current().ClientHandshake(ctx, authority, conn)
}

func (c *rotatingTLS) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("agent: xDS credentials are client-only")
}

func (c *rotatingTLS) Info() credentials.ProtocolInfo { return c.current().Info() }

func (c *rotatingTLS) Clone() credentials.TransportCredentials {
	return &rotatingTLS{rot: c.rot, serverName: c.serverName}
}

// OverrideServerName implements the (deprecated) interface method.
func (c *rotatingTLS) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// newOrigin is the upstream TLS originator: mesh mTLS with the rotator's
// certificate and bundle (rot nil: the proxy has no identity).
func newOrigin(cfg Config, rot *caclient.Rotator, reg prometheus.Registerer) *tlsorigin.Origin {
	oc := tlsorigin.Config{Registerer: reg, Logger: cfg.Logger}
	if rot != nil {
		oc.Identity, oc.TrustDomain = rot, workloadID(cfg).TrustDomain
	}
	return tlsorigin.New(oc)
}

// syncUpstreamTLS makes the upstream TLS contexts of s dialable; it runs
// before s is published.
func syncUpstreamTLS(o *tlsorigin.Origin, s *runtime.Snapshot) {
	var contexts []*upstream.UpstreamTLS
	for _, name := range s.Clusters.Names() {
		contexts = append(contexts, s.Cluster(name).TLSContexts()...)
	}
	o.Sync(contexts)
}

var _ tlsorigin.Identity = (*caclient.Rotator)(nil)

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
