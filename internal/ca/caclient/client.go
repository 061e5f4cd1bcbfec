// Package caclient is the workload side of Weft's CA: key and CSR
// generation, the IstioCertificateService call, and a Rotator that keeps a
// certificate fresh for live TLS configs. weft-proxy links it, so it must
// not import the CA server, the store or anything Kubernetes.
package caclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/weftmesh/weft/internal/ca/certpem"
	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// GenerateKey returns a fresh ECDSA P-256 key; it never leaves the workload.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// BuildCSR returns a PEM CSR for id signed by key, with the SPIFFE ID as its
// only URI SAN, the way istio-agent builds it.
func BuildCSR(key crypto.Signer, id spiffe.ID) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("caclient: csr: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("caclient: csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Request sends csrPEM to weftd's IstioCertificateService over conn and
// returns the chain [leaf, intermediates..., root]. ttl 0 asks for the CA's
// default. token, when set, goes out as "authorization: Bearer <token>";
// without it the connection's client certificate must authenticate.
func Request(ctx context.Context, conn grpc.ClientConnInterface, csrPEM []byte, ttl time.Duration, token string) ([]*x509.Certificate, error) {
	chain, _, err := RequestBundle(ctx, conn, csrPEM, ttl, token)
	return chain, err
}

// RequestBundle is Request that also returns the CA's trust bundle. As in
// Istio, the response's last cert_chain element is the root certificate
// file: every root workloads must trust now (two during a root rotation's
// overlap). chain ends with the root of the bundle that issued it. bundle
// is nil when the response has a single element.
func RequestBundle(ctx context.Context, conn grpc.ClientConnInterface, csrPEM []byte, ttl time.Duration, token string) (chain, bundle []*x509.Certificate, err error) {
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr:              string(csrPEM),
		ValidityDuration: int64(ttl / time.Second),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("caclient: create certificate: %w", err)
	}
	elems := resp.GetCertChain()
	for i, p := range elems {
		certs, err := certpem.Parse([]byte(p))
		if err != nil {
			return nil, nil, fmt.Errorf("caclient: response cert_chain[%d]: %w", i, err)
		}
		if i == len(elems)-1 && i > 0 {
			bundle = certs
			break
		}
		chain = append(chain, certs...)
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("caclient: empty cert_chain in response")
	}
	if bundle != nil {
		// The chain's root is the bundle entry that issued its last
		// certificate; the other roots are trust, not chain.
		if last := chain[len(chain)-1]; last.CheckSignatureFrom(last) != nil {
			i := slices.IndexFunc(bundle, func(r *x509.Certificate) bool { return last.CheckSignatureFrom(r) == nil })
			if i < 0 {
				return nil, nil, errors.New("caclient: no root in the response's trust bundle issued the certificate")
			}
			chain = append(chain, bundle[i])
		}
	}
	return chain, bundle, nil
}
