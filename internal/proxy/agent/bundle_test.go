package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/ca/certpem"
	"github.com/weftmesh/weft/internal/vmbundle"
)

func testBundle(t *testing.T, caAddr, address string) *vmbundle.Bundle {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &vmbundle.Bundle{Mesh: vmbundle.Mesh{CAAddr: caAddr, TrustDomain: "cluster.local", Namespace: "shop",
		WorkloadGroup: "cart", ServiceAccount: "cart-sa", Address: address, TokenExpires: time.Now().Add(time.Hour)},
		Root: certpem.Encode([]*x509.Certificate{cert}), Token: "weft1.x.y"}
}

// TestApplyBundleAddress: the address a host advertises (INSTANCE_IPS and
// the node id) is --ip, else the bundle's --address, else the local
// address the host reaches weftd from, so two hosts with one hostname never
// share a node id.
func TestApplyBundleAddress(t *testing.T) {
	tests := []struct {
		name, flagIP, caAddr, bundleAddr, want string
	}{
		{"flag wins", "10.0.0.9", "127.0.0.1:15012", "203.0.113.7", "10.0.0.9"},
		{"bundle address", "", "127.0.0.1:15012", "203.0.113.7", "203.0.113.7"},
		{"route to weftd", "", "127.0.0.1:15012", "", "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{IP: tc.flagIP}
			var id Identity
			if err := ApplyBundle(&cfg, &id, testBundle(t, tc.caAddr, tc.bundleAddr)); err != nil {
				t.Fatal(err)
			}
			if cfg.IP != tc.want {
				t.Fatalf("IP = %q, want %q", cfg.IP, tc.want)
			}
			if n := Node(cfg); n.GetId() != "sidecar~"+tc.want+"~"+n.GetCluster()+"~shop.svc.cluster.local" {
				t.Errorf("node id %q", n.GetId())
			}
			if cfg.AutoRegisterGroup != "cart" || cfg.Namespace != "shop" || cfg.ServiceAccount != "cart-sa" || id.Token != "weft1.x.y" || len(id.Roots) != 1 {
				t.Errorf("bundle not applied: %+v %+v", cfg, id)
			}
		})
	}
}
