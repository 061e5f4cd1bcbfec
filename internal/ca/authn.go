package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// Typed authentication errors, in the style of Linkerd's identity.Validator.
// Authenticators wrap one of them; the gRPC service maps them to codes.
var (
	// ErrInvalidToken: a token was presented but is malformed, forged,
	// expired or already used (codes.Unauthenticated).
	ErrInvalidToken = errors.New("invalid token")
	// ErrNotAuthenticated: the caller's credential does not prove an
	// identity (codes.Unauthenticated).
	ErrNotAuthenticated = errors.New("not authenticated")
	// ErrNoCredential: the caller presented no credential of the kind an
	// Authenticator handles; the next one is tried. Wraps ErrNotAuthenticated.
	ErrNoCredential = fmt.Errorf("%w: no credential presented", ErrNotAuthenticated)
	// ErrPermissionDenied: the caller is authenticated but may not have the
	// identity it asks for (codes.PermissionDenied).
	ErrPermissionDenied = errors.New("permission denied")
)

// Caller is what a certificate request arrives with.
type Caller struct {
	// Token is the bearer token from "authorization: Bearer <token>", or "".
	Token string
	// PeerCertificates is the TLS client chain as presented (leaf first).
	PeerCertificates []*x509.Certificate
	// RemoteAddr is for audit logs only.
	RemoteAddr string
}

// Grant is a successful authentication.
type Grant struct {
	// ID is the identity the caller proved; the CSR must ask for exactly it.
	ID spiffe.ID
	// Method names the authenticator for logs and metrics ("token", "cert").
	Method string
	// CredentialID names the credential for audit logs (token ID,
	// certificate serial), never the secret itself.
	CredentialID string
	// WorkloadGroup is set by bootstrap tokens bound to a WorkloadGroup.
	WorkloadGroup string
	// Commit, when non-nil, runs after every other check passed and before
	// the certificate is signed; an error refuses the request. Single-use
	// tokens are consumed here so a refused request does not burn them.
	Commit func() error
}

// Authenticator proves who a caller is. Return ErrNoCredential (wrapped)
// when the caller carries nothing this authenticator understands.
type Authenticator interface {
	Authenticate(ctx context.Context, c Caller) (*Grant, error)
}

// authenticate tries each authenticator in order; the first success wins,
// otherwise the first error that is not ErrNoCredential.
func authenticate(ctx context.Context, auths []Authenticator, c Caller) (*Grant, error) {
	var firstErr error
	for _, a := range auths {
		g, err := a.Authenticate(ctx, c)
		if err == nil {
			return g, nil
		}
		if firstErr == nil && !errors.Is(err, ErrNoCredential) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, ErrNoCredential
}

// CertAuthenticator authenticates renewals by the caller's current workload
// certificate: it must chain to the trust bundle, be unexpired, be usable
// for client auth and carry one SPIFFE ID in the trust domain.
type CertAuthenticator struct {
	TrustDomain string
	Bundle      func() []*x509.Certificate
	Now         func() time.Time
}

var _ Authenticator = (*CertAuthenticator)(nil)

// Authenticate implements Authenticator.
func (a *CertAuthenticator) Authenticate(_ context.Context, c Caller) (*Grant, error) {
	if len(c.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w (no client certificate)", ErrNoCredential)
	}
	id, err := VerifyWorkloadCert(c.PeerCertificates, a.Bundle(), a.TrustDomain, a.Now())
	if err != nil {
		return nil, err
	}
	return &Grant{ID: id, Method: "cert", CredentialID: c.PeerCertificates[0].SerialNumber.Text(16)}, nil
}

// VerifyWorkloadCert checks chain (leaf first) against roots at now and
// returns the leaf's SPIFFE ID. Errors wrap ErrNotAuthenticated.
func VerifyWorkloadCert(chain, roots []*x509.Certificate, trustDomain string, now time.Time) (spiffe.ID, error) {
	if len(chain) == 0 {
		return spiffe.ID{}, fmt.Errorf("%w: empty certificate chain", ErrNotAuthenticated)
	}
	rootPool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: client certificate: %v", ErrNotAuthenticated, err)
	}
	if len(leaf.URIs) != 1 {
		return spiffe.ID{}, fmt.Errorf("%w: client certificate has %d URI SANs, want one SPIFFE ID", ErrNotAuthenticated, len(leaf.URIs))
	}
	id, err := spiffe.FromURL(leaf.URIs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: client certificate: %v", ErrNotAuthenticated, err)
	}
	if id.TrustDomain != trustDomain {
		return spiffe.ID{}, fmt.Errorf("%w: client certificate is for trust domain %q", ErrNotAuthenticated, id.TrustDomain)
	}
	return id, nil
}
