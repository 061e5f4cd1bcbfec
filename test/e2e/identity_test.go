package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestIdentityOnSecurePort walks a workload's first steps: an operator mints
// a bootstrap token with weftctl, the workload gets a SPIFFE certificate from
// weftd's CA on the secure port with it, then uses that certificate for xDS.
func TestIdentityOnSecurePort(t *testing.T) {
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"reviews.yaml": reviewsSE}})
	secure := wd.SecureAddr.String()

	code, bundlePEM, errOut := weftctl(t, wd, "", "ca", "bundle")
	if code != 0 || !strings.Contains(bundlePEM, "BEGIN CERTIFICATE") {
		t.Fatalf("weftctl ca bundle: %d %s", code, errOut)
	}
	bundleFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(bundleFile, []byte(bundlePEM), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(bundlePEM))

	// A real TLS client (openssl) verifies weftd's serving certificate against the bundle.
	if _, err := exec.LookPath("openssl"); err == nil {
		cmd := exec.Command("openssl", "s_client", "-connect", secure, "-CAfile", bundleFile, "-verify_return_error", "-brief")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl s_client against the secure port: %v\n%s", err, out)
		}
	} else {
		t.Fatalf("openssl not installed (.ci/run installs it)")
	}

	code, token, errOut := weftctl(t, wd, "", "token", "create", "-n", "default", "--service-account", "reviews", "--ttl", "10m", "--single-use")
	if code != 0 {
		t.Fatalf("weftctl token create: %d %s", code, errOut)
	}
	token = strings.TrimSpace(token)

	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	conn, err := grpc.NewClient(secure, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	key, err := caclient.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// Asking for another identity than the token's is refused.
	otherCSR, _ := caclient.BuildCSR(key, spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "ratings"})
	if _, err := caclient.Request(ctx, conn, otherCSR, time.Hour, token); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("CSR for another identity: want PermissionDenied, got %v", err)
	}
	id := spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "reviews"}
	csr, err := caclient.BuildCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := caclient.Request(ctx, conn, csr, time.Hour, token)
	if err != nil {
		t.Fatalf("certificate with a valid token: %v", err)
	}
	if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != id.String() {
		t.Fatalf("leaf identity %v, want %s", chain[0].URIs, id)
	}
	if _, err := caclient.Request(ctx, conn, csr, time.Hour, token); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("single-use token replayed: want Unauthenticated, got %v", err)
	}

	// xDS over TLS: with the workload certificate it is served; without any credential it is refused.
	var raw [][]byte
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}
	withCert := tlsCfg.Clone()
	withCert.Certificates = []tls.Certificate{{Certificate: raw, PrivateKey: key, Leaf: chain[0]}}
	node := &corev3.Node{Id: "sidecar~127.0.0.9~reviews-1.default~default.svc.cluster.local"}
	cdsReq := &discovery.DiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}

	mtls, err := grpc.NewClient(secure, grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer mtls.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(mtls).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(cdsReq); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || len(resp.GetResources()) == 0 {
		t.Fatalf("xDS with a mesh certificate: %v (%d resources)", err, len(resp.GetResources()))
	}

	anon, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = anon.Send(cdsReq)
	if _, err := anon.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("xDS without credentials on the secure port: want Unauthenticated, got %v", err)
	}
}
