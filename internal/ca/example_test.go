package ca_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/config"
)

// The embedded store is the CA's KV.
var _ ca.KV = (*config.Store)(nil)

// Example shows how weftd wires the CA onto its secure port (15012).
func Example() {
	dir, _ := os.MkdirTemp("", "weftd")
	defer os.RemoveAll(dir)
	store, err := config.OpenStore(config.StoreConfig{Path: filepath.Join(dir, "weft.db")})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// Plugged-in CA when <data-dir>/cacerts exists, else the self-signed root.
	var signer ca.Signer
	if _, err := os.Stat(filepath.Join(dir, "cacerts", ca.CACertFile)); err == nil {
		signer, err = ca.LoadCACerts(filepath.Join(dir, "cacerts"), nil)
		if err != nil {
			panic(err)
		}
	} else {
		signer, err = ca.NewSelfSigned(ca.SelfSignedConfig{KV: store, TrustDomain: "cluster.local"})
		if err != nil {
			panic(err)
		}
	}
	authority, err := ca.New(ca.Config{
		TrustDomain: "cluster.local", Signer: signer, KV: store,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer authority.Close()

	serving, err := authority.ServingCertificate([]string{"weftd.weft-system.svc", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	secure := grpc.NewServer(grpc.Creds(credentials.NewTLS(authority.ServerTLSConfig(serving))))
	authority.Register(secure) // xDS registers on the same server and calls authority.AuthenticateContext

	bundles, cancel := authority.WatchBundle() // feed SDS ROOTCA pushes
	defer cancel()
	roots := <-bundles
	_ = roots
	_ = authority.RotateRoot(context.Background())
	// Output:
}
