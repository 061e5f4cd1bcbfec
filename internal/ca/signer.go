package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// SignRequest is what a Signer certifies. The CA has already authenticated
// the caller and validated the CSR; a Signer only issues.
type SignRequest struct {
	// CSR carries the public key to certify; its signature has been checked.
	CSR *x509.CertificateRequest
	// ID becomes the only URI SAN. The zero ID means none (weftd's own
	// serving certificate, which is named by DNS names and IPs).
	ID spiffe.ID
	// DNSNames and IPAddresses are only set for weftd's serving certificate;
	// workload CSRs never get theirs copied.
	DNSNames    []string
	IPAddresses []net.IP
	// TTL is the requested validity; a signer may shorten it to fit its
	// own certificate's lifetime.
	TTL time.Duration
}

// Signer issues leaf certificates. Implementations: *SelfSigned, *FileSigner;
// an external registration-authority signer (Kubernetes CSR API) later.
type Signer interface {
	// Sign returns [leaf, intermediates..., root].
	Sign(ctx context.Context, req SignRequest) ([]*x509.Certificate, error)
	// TrustBundle returns the roots workloads must trust right now.
	TrustBundle() []*x509.Certificate
}

// RootRotator is implemented by signers whose root Weft manages itself.
type RootRotator interface {
	RotateRoot(ctx context.Context) error
	RetireRoot(ctx context.Context) error
	// NextRetirement is when the next old root leaves the bundle on its
	// own; zero when none is pending.
	NextRetirement() time.Time
}

// clockSkew backdates NotBefore so a peer whose clock runs a little behind
// still accepts a fresh certificate.
const clockSkew = time.Minute

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// issueLeaf signs req with issuer/key at now, capping the validity at the
// issuer's own expiry.
func issueLeaf(issuer *x509.Certificate, key crypto.Signer, req SignRequest, now time.Time) (*x509.Certificate, error) {
	if req.CSR == nil {
		return nil, fmt.Errorf("sign: no CSR")
	}
	if req.TTL <= 0 {
		return nil, fmt.Errorf("sign: non-positive TTL %s", req.TTL)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(req.TTL)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("sign: issuing certificate %q expired at %s", issuer.Subject, issuer.NotAfter)
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := req.CSR.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{}, // identity lives in the SAN; Go marks the SAN critical
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
	}
	if req.ID != (spiffe.ID{}) {
		tmpl.URIs = append(tmpl.URIs, req.ID.URL())
	}
	if len(tmpl.URIs) == 0 && len(tmpl.DNSNames) == 0 && len(tmpl.IPAddresses) == 0 {
		return nil, fmt.Errorf("sign: certificate would have no subject alternative name")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, req.CSR.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return x509.ParseCertificate(der)
}
