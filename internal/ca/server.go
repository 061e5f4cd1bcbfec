package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// Register adds istio.v1.auth.IstioCertificateService to s. Serve s with
// ServerTLSConfig so renewals can authenticate by client certificate.
func (c *CA) Register(s grpc.ServiceRegistrar) {
	pb.RegisterIstioCertificateServiceServer(s, &service{ca: c})
}

type service struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca *CA
}

// Audit reasons, also the "reason" label of weft_ca_refusals_total.
const (
	reasonUnauthenticated = "unauthenticated"
	reasonInvalidToken    = "invalid_token"
	reasonDenied          = "permission_denied"
	reasonInvalidCSR      = "invalid_csr"
	reasonInvalidTTL      = "invalid_ttl"
	reasonSignError       = "sign_error"
	reasonTLSClientCert   = "tls_client_cert"
)

// CreateCertificate authenticates the caller, checks the CSR asks for the
// caller's own identity and signs it. Metadata (Istio's
// ImpersonatedIdentity for istiod-internal calls) is ignored.
func (s *service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	c := s.ca
	c.metrics.csr.Inc()
	caller := callerFrom(ctx)

	// Peek at the requested identity only to name it in audit lines; the
	// expensive checks (signature) wait until the caller is authenticated,
	// and an unauthenticated caller gets Unauthenticated, not CSR feedback.
	a := audit{ca: c, remote: caller.RemoteAddr, claimed: peekCSRID([]byte(req.GetCsr()))}

	grant, err := authenticate(ctx, c.auths, caller)
	if err != nil {
		switch {
		case errors.Is(err, ErrInvalidToken):
			return nil, a.refuse(codes.Unauthenticated, reasonInvalidToken, err)
		case errors.Is(err, ErrPermissionDenied):
			return nil, a.refuse(codes.PermissionDenied, reasonDenied, err)
		case errors.Is(err, ErrNotAuthenticated):
			return nil, a.refuse(codes.Unauthenticated, reasonUnauthenticated, err)
		default: // e.g. the KV store failed
			return nil, a.refuse(codes.Internal, reasonUnauthenticated, err)
		}
	}
	a.method, a.authID, a.credID = grant.Method, grant.ID, grant.CredentialID
	csr, claimed, err := ParseCSR([]byte(req.GetCsr()), c.td)
	if err != nil {
		return nil, a.refuse(codes.InvalidArgument, reasonInvalidCSR, err)
	}
	if claimed != grant.ID {
		return nil, a.refuse(codes.PermissionDenied, reasonDenied,
			fmt.Errorf("%w: authenticated as %s but the CSR asks for %s", ErrPermissionDenied, grant.ID, claimed))
	}
	ttl := time.Duration(req.GetValidityDuration()) * time.Second
	switch {
	case req.GetValidityDuration() < 0:
		return nil, a.refuse(codes.InvalidArgument, reasonInvalidTTL, fmt.Errorf("negative validity_duration %d", req.GetValidityDuration()))
	case req.GetValidityDuration() == 0:
		ttl = c.defTTL
	case req.GetValidityDuration() > int64(c.maxTTL/time.Second):
		return nil, a.refuse(codes.InvalidArgument, reasonInvalidTTL, fmt.Errorf("requested TTL %ds is greater than the max allowed TTL %s", req.GetValidityDuration(), c.maxTTL))
	}
	if grant.Commit != nil {
		if err := grant.Commit(); err != nil {
			code := codes.Internal
			if errors.Is(err, ErrInvalidToken) {
				code = codes.Unauthenticated
			}
			return nil, a.refuse(code, reasonInvalidToken, err)
		}
	}
	chain, err := c.signer.Sign(ctx, SignRequest{CSR: csr, ID: grant.ID, TTL: ttl})
	if err != nil {
		return nil, a.refuse(codes.Internal, reasonSignError, fmt.Errorf("ca: sign %s: %w", grant.ID, err))
	}
	c.metrics.success.Inc()
	if c.log.Enabled(ctx, slog.LevelInfo) {
		c.log.Info("certificate issued", "identity", grant.ID.String(), "auth", grant.Method, "credential_id", grant.CredentialID, "remote", caller.RemoteAddr,
			"serial", chain[0].SerialNumber.Text(16), "not_after", chain[0].NotAfter.UTC().Format(time.RFC3339))
	}
	// As in Istio, the last element is the root certificate file: the whole
	// trust bundle, so a workload learns a rotated (or retired) root with
	// every certificate it gets.
	bundle := c.TrustBundle()
	if n := len(chain); n > 1 && slices.ContainsFunc(bundle, chain[n-1].Equal) {
		chain = chain[:n-1]
	}
	resp := &pb.IstioCertificateResponse{}
	for _, cert := range chain {
		resp.CertChain = append(resp.CertChain, string(EncodeCerts([]*x509.Certificate{cert})))
	}
	resp.CertChain = append(resp.CertChain, string(EncodeCerts(bundle)))
	return resp, nil
}

// audit writes the one log line and metric increment per refusal.
type audit struct {
	ca      *CA
	remote  string
	claimed spiffe.ID
	method  string
	authID  spiffe.ID
	credID  string
}

func (a audit) refuse(code codes.Code, reason string, err error) error {
	m := a.ca.metrics
	switch reason {
	case reasonInvalidToken, reasonUnauthenticated, reasonDenied, reasonTLSClientCert:
		m.authFail.Inc()
	case reasonInvalidCSR, reasonInvalidTTL:
		m.parseErr.Inc()
	case reasonSignError:
		m.signErr.Inc()
	}
	m.refusals.WithLabelValues(reason).Inc()
	attrs := []any{"reason", reason, "code", code.String(), "remote", a.remote, "claimed_identity", idOrEmpty(a.claimed), "error", err.Error()}
	if a.method != "" {
		attrs = append(attrs, "auth", a.method, "credential_id", a.credID, "authenticated_identity", a.authID.String())
	}
	a.ca.log.Warn("certificate request refused", attrs...)
	if code == codes.Internal {
		return status.Error(code, "ca: internal error")
	}
	return status.Error(code, err.Error())
}

func idOrEmpty(id spiffe.ID) string {
	if id == (spiffe.ID{}) {
		return ""
	}
	return id.String()
}

func callerFrom(ctx context.Context) Caller {
	var c Caller
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			c.RemoteAddr = p.Addr.String()
		}
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			c.PeerCertificates = ti.State.PeerCertificates
		}
	}
	c.Token = BearerToken(ctx)
	return c
}

// BearerToken returns the token of an incoming "authorization: Bearer <t>"
// header, or "".
func BearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " "); ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return ""
}
