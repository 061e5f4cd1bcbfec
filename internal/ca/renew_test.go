package ca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
)

func TestRenewWithCurrentCert(t *testing.T) {
	e := newEnv(t)
	cert, _ := e.issue(id("shop", "cart"), e.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart"}), time.Hour)
	k, _ := caclient.GenerateKey()
	chain, err := caclient.Request(context.Background(), e.dial(cert), csrFor(t, k, id("shop", "cart")), time.Hour, "")
	if err != nil {
		t.Fatalf("renewal with current cert: %v", err)
	}
	if chain[0].URIs[0].String() != "spiffe://cluster.local/ns/shop/sa/cart" || chain[0].SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Errorf("renewed leaf: %v serial %v", chain[0].URIs, chain[0].SerialNumber)
	}
	if !strings.Contains(e.logs.String(), "auth=cert") {
		t.Error("issuance not logged as cert-authenticated")
	}
	// The current cert proves shop/cart, not another identity.
	_, err = caclient.Request(context.Background(), e.dial(cert), csrFor(t, k, id("shop", "admin")), time.Hour, "")
	if status.Code(errorsUnwrap(err)) != codes.PermissionDenied {
		t.Fatalf("renewal for another identity: %v, want PermissionDenied", err)
	}
}

func TestRenewRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cert func(e *env) *tls.Certificate
	}{
		{"expired cert", func(e *env) *tls.Certificate {
			c, _ := e.issue(id("shop", "cart"), e.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart"}), time.Hour)
			e.clock.Advance(2 * time.Hour)
			return c
		}},
		{"foreign CA cert", func(e *env) *tls.Certificate {
			other := newEnv(e.t)
			c, _ := other.issue(id("shop", "cart"), other.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart"}), time.Hour)
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cert := tc.cert(e)
			e.logs.Reset()
			before := metric(t, e.reg, "citadel_server_authentication_failure_count")
			k, _ := caclient.GenerateKey()
			_, err := caclient.Request(context.Background(), e.dial(cert), csrFor(t, k, id("shop", "cart")), 0, "")
			if code := status.Code(errorsUnwrap(err)); code != codes.Unavailable && code != codes.Unauthenticated {
				t.Fatalf("got %v, want the TLS handshake refused", err)
			}
			lines := e.logs.refusals()
			if len(lines) != 1 || !strings.Contains(lines[0], "reason=tls_client_cert") {
				t.Fatalf("audit lines: %q", lines)
			}
			if got := metric(t, e.reg, "citadel_server_authentication_failure_count") - before; got != 1 {
				t.Errorf("auth failures grew by %v", got)
			}
		})
	}
}

// TestCertAuthenticatorWithoutTLSVerification proves the application-level
// check holds even when the TLS layer did not verify the client cert.
func TestCertAuthenticatorWithoutTLSVerification(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	foreign, _ := other.issue(id("shop", "cart"), other.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart"}), time.Hour)

	sc, err := e.ca.ServingCertificate([]string{"weftd.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{GetCertificate: sc.GetCertificate, ClientAuth: tls.RequireAnyClientCert})))
	e.ca.Register(srv)
	go srv.Serve(lis)
	defer srv.Stop()
	e.addr = lis.Addr().String()

	k, _ := caclient.GenerateKey()
	_, err = caclient.Request(context.Background(), e.dial(foreign), csrFor(t, k, id("shop", "cart")), 0, "")
	if status.Code(errorsUnwrap(err)) != codes.Unauthenticated {
		t.Fatalf("got %v, want Unauthenticated", err)
	}
	if _, err := e.ca.VerifyClientCert([]*x509.Certificate{foreign.Leaf}); !errors.Is(err, ca.ErrNotAuthenticated) {
		t.Fatalf("VerifyClientCert: %v", err)
	}
}
