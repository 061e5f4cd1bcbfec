// Command weftd is Weft's control plane: it reads Istio-API config, keeps the
// service registry and serves Envoy-compatible xDS. main only turns flags
// into a controlplane.Config.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/controlplane"
	"github.com/weftmesh/weft/internal/model"
)

func main() {
	mesh := model.DefaultMeshConfig()
	cfg := controlplane.Config{}
	flag.StringVar(&cfg.ConfigDir, "config-dir", "", "directory of Istio YAML/JSON config to watch (optional)")
	flag.StringVar(&cfg.DataDir, "data-dir", api.DefaultDataDir(), "directory for the embedded store and the admin credential")
	flag.StringVar(&cfg.InsecureXDSAddr, "insecure-xds-addr", "", "serve plaintext xDS on this address (development and tests only; off unless given), e.g. 127.0.0.1:15010")
	flag.StringVar(&cfg.SecureAddr, "secure-addr", ":15012", "address for the CA and xDS over TLS with client authentication (empty: off)")
	flag.StringVar(&cfg.CACertsDir, "cacerts-dir", "", "plugged-in CA in Istio's cacerts layout (default <data-dir>/cacerts; absent: self-signed root)")
	flag.DurationVar(&cfg.CertTTL, "cert-ttl", 24*time.Hour, "default workload certificate lifetime")
	flag.DurationVar(&cfg.MaxCertTTL, "max-cert-ttl", 90*24*time.Hour, "longest certificate lifetime a workload may request")
	flag.StringVar(&cfg.MonitoringAddr, "monitoring-addr", "127.0.0.1:15014", "address for /metrics, /ready, /debug/* and the config API")
	flag.DurationVar(&cfg.AutoregistrationGrace, "autoregistration-grace", 30*time.Second, "keep an auto-registered WorkloadEntry this long after its proxy disconnected")
	flag.DurationVar(&cfg.Debounce, "push-debounce", 100*time.Millisecond, "wait this long for more config changes before pushing xDS")
	flag.StringVar(&mesh.TrustDomain, "trust-domain", mesh.TrustDomain, "SPIFFE trust domain")
	flag.StringVar(&mesh.DomainSuffix, "domain-suffix", mesh.DomainSuffix, "DNS suffix completing short hosts (<name>.<ns>.svc.<suffix>)")
	flag.StringVar(&mesh.RootNamespace, "root-namespace", mesh.RootNamespace, "namespace holding mesh-wide policy")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("weftd", controlplane.Version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "weftd: --log-level: %v\n", err)
		os.Exit(2)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Mesh = mesh

	srv, err := controlplane.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
