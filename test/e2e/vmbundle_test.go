package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/vmbundle"
)

const cartGroup = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: cart, namespace: shop}
spec:
  metadata: {labels: {app: cart}}
  template: {serviceAccount: cart-sa, ports: {http: 8080}}
`

// TestVMBundle: `weftctl vm bundle` writes a bundle whose root verifies
// weftd and whose token gets the group's identity from the CA.
func TestVMBundle(t *testing.T) {
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"cart.yaml": cartGroup}})
	dir := filepath.Join(t.TempDir(), "bundle")

	code, _, errOut := weftctl(t, wd, "", "vm", "bundle", "-n", "shop", "--workload-group", "nope", "-o", dir)
	if code != 1 || !strings.Contains(errOut, "WorkloadGroup shop/nope does not exist") {
		t.Fatalf("bundle for a missing group: want a clear refusal, got %d\n%s", code, errOut)
	}
	code, out, errOut := weftctl(t, wd, "", "vm", "bundle", "-n", "shop", "--workload-group", "cart", "-o", dir, "--ttl", "10m")
	if code != 0 || !strings.Contains(errOut, "token") || !strings.Contains(errOut, "spiffe://cluster.local/ns/shop/sa/cart-sa") {
		t.Fatalf("vm bundle: %d\n%s%s", code, out, errOut)
	}
	b, err := vmbundle.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Mesh.ServiceAccount != "cart-sa" || b.Mesh.CAAddr != wd.SecureAddr.String() || b.Mesh.TrustDomain != "cluster.local" {
		t.Fatalf("mesh settings: %+v", b.Mesh)
	}
	if st, err := os.Stat(filepath.Join(dir, vmbundle.TokenFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file must be 0600: %v %v", st.Mode(), err)
	}
	for _, f := range []string{vmbundle.EnvFile, vmbundle.UnitFile, vmbundle.ReadmeFile} {
		if data, err := os.ReadFile(filepath.Join(dir, f)); err != nil || !strings.Contains(string(data), "/etc/weft") {
			t.Fatalf("%s: %v %q", f, err, data)
		}
	}

	// The bundle is enough to get the group's identity, verifying weftd by the bundled root.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.Root)
	conn, err := grpc.NewClient(b.Mesh.CAAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: b.Mesh.ServerName})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, _ := caclient.GenerateKey()
	id := spiffe.ID{TrustDomain: b.Mesh.TrustDomain, Namespace: "shop", ServiceAccount: "cart-sa"}
	csr, _ := caclient.BuildCSR(key, id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chain, err := caclient.Request(ctx, conn, csr, time.Hour, b.Token)
	if err != nil {
		t.Fatalf("certificate with the bundle's token: %v", err)
	}
	if chain[0].URIs[0].String() != id.String() {
		t.Fatalf("identity %v, want %s", chain[0].URIs, id)
	}
}
