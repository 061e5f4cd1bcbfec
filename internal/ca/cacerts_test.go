package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/ca"
)

// mkCA creates a CA certificate signed by parent (self-signed when nil).
func mkCA(t *testing.T, name string, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{"test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func writePEM(t *testing.T, path string, blocks ...*pem.Block) {
	t.Helper()
	var b []byte
	for _, bl := range blocks {
		b = append(b, pem.EncodeToMemory(bl)...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func certBlock(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

func keyBlock(t *testing.T, k *ecdsa.PrivateKey) *pem.Block {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
}

type pki struct {
	dir          string
	root, inter1 *x509.Certificate
	signing      *x509.Certificate
}

// writeCACerts lays out root → inter1 → signing (ca-cert) in Istio's files.
func writeCACerts(t *testing.T) pki {
	dir := t.TempDir()
	root, rootKey := mkCA(t, "root", nil, nil)
	inter1, inter1Key := mkCA(t, "intermediate-1", root, rootKey)
	signing, signingKey := mkCA(t, "signing", inter1, inter1Key)
	writePEM(t, filepath.Join(dir, ca.CACertFile), certBlock(signing))
	writePEM(t, filepath.Join(dir, ca.CAKeyFile), keyBlock(t, signingKey))
	writePEM(t, filepath.Join(dir, ca.RootCertFile), certBlock(root))
	writePEM(t, filepath.Join(dir, ca.CertChainFile), certBlock(signing), certBlock(inter1), certBlock(root))
	return pki{dir: dir, root: root, inter1: inter1, signing: signing}
}

func TestPluggedInCA(t *testing.T) {
	p := writeCACerts(t)
	signer, err := ca.LoadCACerts(p.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *ca.Config) { c.Signer = signer })
	_, chain := e.issue(id("shop", "cart"), e.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart"}), time.Hour)
	if len(chain) != 4 || !chain[1].Equal(p.signing) || !chain[2].Equal(p.inter1) || !chain[3].Equal(p.root) {
		t.Fatalf("chain = %v, want leaf, signing, intermediate-1, root", subjects(chain))
	}
	if b := e.ca.TrustBundle(); len(b) != 1 || !b[0].Equal(p.root) {
		t.Fatalf("bundle = %v", subjects(b))
	}
	if err := verifies(chain[0], chain[1:3], []*x509.Certificate{p.root}, time.Now()); err != nil {
		t.Fatalf("leaf does not chain to the root: %v", err)
	}
	if err := e.ca.RotateRoot(t.Context()); !errors.Is(err, ca.ErrRotationUnsupported) {
		t.Errorf("RotateRoot on plugged-in CA: %v", err)
	}

	t.Run("openssl", func(t *testing.T) {
		openssl, err := exec.LookPath("openssl")
		if err != nil {
			t.Skip("openssl not installed")
		}
		dir := t.TempDir()
		writePEM(t, filepath.Join(dir, "leaf.pem"), certBlock(chain[0]))
		writePEM(t, filepath.Join(dir, "chain.pem"), certBlock(chain[1]), certBlock(chain[2]))
		writePEM(t, filepath.Join(dir, "root.pem"), certBlock(chain[3]))
		out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, "root.pem"),
			"-untrusted", filepath.Join(dir, "chain.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "leaf.pem: OK") {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
		out, err = exec.Command(openssl, "x509", "-noout", "-ext", "subjectAltName", "-in", filepath.Join(dir, "leaf.pem")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "URI:spiffe://cluster.local/ns/shop/sa/cart") {
			t.Fatalf("openssl x509 -ext subjectAltName: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "critical") {
			t.Errorf("SAN extension should be critical with an empty subject:\n%s", out)
		}
		// Without the intermediates the leaf must not verify.
		out, err = exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, "root.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
		if err == nil {
			t.Fatalf("openssl verified the leaf without its intermediates:\n%s", out)
		}
	})
}

func TestLoadCACertsErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, p pki)
		want   string
	}{
		{"missing key", func(t *testing.T, p pki) { os.Remove(filepath.Join(p.dir, ca.CAKeyFile)) }, "ca-key.pem"},
		{"key does not match", func(t *testing.T, p pki) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			writePEM(t, filepath.Join(p.dir, ca.CAKeyFile), keyBlock(t, k))
		}, "does not match"},
		{"chain missing intermediate", func(t *testing.T, p pki) {
			writePEM(t, filepath.Join(p.dir, ca.CertChainFile), certBlock(p.signing), certBlock(p.root))
		}, "does not chain"},
		{"foreign root", func(t *testing.T, p pki) {
			other, _ := mkCA(t, "other", nil, nil)
			writePEM(t, filepath.Join(p.dir, ca.RootCertFile), certBlock(other))
		}, "does not chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeCACerts(t)
			tc.mutate(t, p)
			_, err := ca.LoadCACerts(p.dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func subjects(cs []*x509.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Subject.String())
	}
	return out
}
