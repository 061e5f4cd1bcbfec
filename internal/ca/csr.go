package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// ErrInvalidCSR marks a certificate request the CA will not sign whoever
// sends it; the gRPC service answers codes.InvalidArgument.
var ErrInvalidCSR = errors.New("invalid CSR")

// Key and size limits for workload CSRs.
const (
	minRSABits = 2048
	maxRSABits = 8192
	maxCSRSize = 64 << 10
)

// ParseCSR decodes and checks a PEM CSR from a workload: valid signature, an
// acceptable key (ECDSA P-256/P-384 or RSA 2048–8192 bits) and exactly one URI
// SAN that is a SPIFFE ID in trustDomain. It returns the requested ID.
// Every error wraps ErrInvalidCSR. DNS/IP/email SANs in the CSR are ignored:
// workload certificates carry only the SPIFFE ID.
func ParseCSR(csrPEM []byte, trustDomain string) (*x509.CertificateRequest, spiffe.ID, error) {
	csr, err := decodeCSR(csrPEM)
	if err != nil {
		return nil, spiffe.ID{}, err
	}
	id, err := csrID(csr)
	if err != nil {
		return csr, spiffe.ID{}, err
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return csr, id, fmt.Errorf("%w: ECDSA curve %s not allowed (use P-256 or P-384)", ErrInvalidCSR, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return csr, id, fmt.Errorf("%w: RSA key of %d bits is too small (minimum %d)", ErrInvalidCSR, k.N.BitLen(), minRSABits)
		}
		if k.N.BitLen() > maxRSABits {
			return csr, id, fmt.Errorf("%w: RSA key of %d bits is too large (maximum %d)", ErrInvalidCSR, k.N.BitLen(), maxRSABits)
		}
	default:
		return csr, id, fmt.Errorf("%w: key type %T not allowed (use ECDSA P-256/P-384 or RSA ≥ %d bits)", ErrInvalidCSR, csr.PublicKey, minRSABits)
	}
	if err := csr.CheckSignature(); err != nil {
		return csr, id, fmt.Errorf("%w: signature does not verify: %v", ErrInvalidCSR, err)
	}
	if id.TrustDomain != trustDomain {
		return csr, id, fmt.Errorf("%w: trust domain %q is not this CA's %q", ErrInvalidCSR, id.TrustDomain, trustDomain)
	}
	return csr, id, nil
}

// peekCSRID returns the identity a CSR asks for without checking anything
// else, for audit lines; the zero ID when it cannot tell.
func peekCSRID(csrPEM []byte) spiffe.ID {
	csr, err := decodeCSR(csrPEM)
	if err != nil {
		return spiffe.ID{}
	}
	id, _ := csrID(csr)
	return id
}

func decodeCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	if len(csrPEM) > maxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes is larger than %d", ErrInvalidCSR, len(csrPEM), maxCSRSize)
	}
	b, _ := pem.Decode(csrPEM)
	if b == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrInvalidCSR)
	}
	if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrInvalidCSR, b.Type)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	return csr, nil
}

func csrID(csr *x509.CertificateRequest) (spiffe.ID, error) {
	switch len(csr.URIs) {
	case 0:
		return spiffe.ID{}, fmt.Errorf("%w: no URI SAN; put the SPIFFE ID spiffe://<trust-domain>/ns/<ns>/sa/<sa> in it", ErrInvalidCSR)
	case 1:
	default:
		return spiffe.ID{}, fmt.Errorf("%w: %d URI SANs; exactly one SPIFFE ID is allowed", ErrInvalidCSR, len(csr.URIs))
	}
	id, err := spiffe.FromURL(csr.URIs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	return id, nil
}
