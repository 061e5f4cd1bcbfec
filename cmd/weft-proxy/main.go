// Command weft-proxy is Weft's data-plane proxy: it connects to weftd over
// xDS and serves the workload's traffic (explicit HTTP proxy or transparent
// capture), with an Envoy-style admin endpoint on loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/vmbundle"
)

func main() {
	var (
		cfg          agent.Config
		labels       string
		mode         string
		bind         string
		proxyPort    uint
		logLevel     string
		id           agent.Identity
		rootCert     string
		tokenFile    string
		bundleDir    string
		healthPort   uint
		statsPort    int
		metricsPort  int
		readyTimeout time.Duration
		stopTimeout  time.Duration
	)
	fs := flag.NewFlagSet("weft-proxy", flag.ExitOnError)
	fs.StringVar(&cfg.XDSAddr, "xds-addr", "127.0.0.1:15010", "weftd's plaintext xDS address (used without --root-cert)")
	fs.StringVar(&id.CAAddr, "ca-addr", "", "weftd's secure address: CA and xDS over TLS [--xds-addr host, port 15012]")
	fs.StringVar(&rootCert, "root-cert", "", "mesh trust bundle PEM (weftctl ca bundle); enables identity, mTLS and xDS over TLS")
	fs.StringVar(&id.Token, "token", "", "bootstrap token (weftctl token create); prefer --token-file")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the bootstrap token")
	fs.StringVar(&id.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain")
	fs.DurationVar(&id.CertTTL, "cert-ttl", 0, "workload certificate validity to ask for [the CA's default]")
	fs.BoolVar(&cfg.ExplicitInbound, "explicit-inbound", false, "explicit mode: serve the workload's inbound ports on --bind-addr (the app listens on 127.0.0.1)")
	fs.BoolVar(&cfg.StateOfTheWorld, "xds-sotw", false, "use state-of-the-world ADS instead of delta")
	fs.StringVar(&cfg.NodeID, "node-id", "", `xDS node id [sidecar~IP~NAME.NS~NS.svc.cluster.local]`)
	fs.StringVar(&cfg.Namespace, "namespace", "default", "workload namespace")
	fs.StringVar(&cfg.ServiceAccount, "service-account", "", "workload service account")
	fs.StringVar(&labels, "labels", "", "workload labels k=v,k2=v2")
	fs.StringVar(&cfg.IP, "ip", "", "workload IP advertised in INSTANCE_IPS")
	fs.StringVar(&cfg.WorkloadName, "workload-name", "", "workload name [hostname]")
	fs.StringVar(&mode, "mode", "explicit", "explicit (HTTP proxy) or transparent (iptables capture)")
	fs.StringVar(&bind, "bind-addr", "", "address every listener binds [127.0.0.1 explicit, 0.0.0.0 transparent]")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "", "admin address, loopback only [<bind>:15000]")
	fs.UintVar(&proxyPort, "http-proxy-port", 15080, "explicit-mode HTTP proxy port")
	fs.DurationVar(&cfg.DrainTime, "drain-time", 5_000_000_000, "how long in-flight requests may take at shutdown")
	fs.StringVar(&cfg.Observability.AccessLog, "access-log", "", `JSON access log, one line per request: a file path or "-" for stdout (empty: off)`)
	fs.StringVar(&cfg.Observability.TracingEndpoint, "tracing-endpoint", "", "export request spans over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318/v1/traces (empty: off; trace headers pass through)")
	fs.Float64Var(&cfg.Observability.TracingSampling, "tracing-sampling", 0.01, "share of new traces recorded, 0..1 (a caller's sampling decision always wins)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.DNSAddr, "dns-addr", "", "DNS proxy address, UDP and TCP: mesh hosts answered from config, the rest forwarded to /etc/resolv.conf's resolvers [127.0.0.1:15053 in transparent mode (iptables send port 53 there), off in explicit mode; \"off\" disables]")
	fs.UintVar(&healthPort, "health-port", 15021, "serve the proxy's readiness at <bind>:PORT/healthz/ready (0: off)")
	fs.IntVar(&statsPort, "stats-port", -1, "serve the proxy's Prometheus stats at <bind>:PORT/stats/prometheus (0: off) [15090 transparent, off explicit]")
	fs.IntVar(&metricsPort, "metrics-port", -1, "serve merged proxy + --app-metrics-url metrics at <bind>:PORT/stats/prometheus (0: off) [15020 transparent, off explicit]")
	fs.StringVar(&cfg.AppMetricsURL, "app-metrics-url", "", "the application's Prometheus endpoint, merged into --metrics-port (e.g. http://127.0.0.1:9090/metrics)")
	fs.StringVar(&bundleDir, "bundle", "", "join from a bundle written by `weftctl vm bundle` (sets identity, CA address, namespace, group; other flags still apply)")
	fs.DurationVar(&readyTimeout, "ready-timeout", 60*time.Second, "run mode: how long to wait for the proxy to be ready before giving up without starting the app")
	fs.DurationVar(&stopTimeout, "stop-timeout", 10*time.Second, "run mode: when the proxy stops first (/quitquitquit), how long the app has after SIGTERM before SIGKILL")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: weft-proxy [flags]\n       weft-proxy run [flags] -- CMD ARGS...   (start the app once the proxy is ready; exit with its code)\n       weft-proxy capture install|plan|remove [flags]   (transparent mode's iptables rules, like istio-init)\n\nflags:\n")
		fs.PrintDefaults()
	}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "capture" {
		os.Exit(captureMain(args[1:]))
	}
	var appCmd []string
	runMode := len(args) > 0 && args[0] == "run"
	if runMode {
		args = args[1:]
		for i, a := range args {
			if a == "--" {
				appCmd, args = args[i+1:], args[:i]
				break
			}
		}
		if len(appCmd) == 0 {
			fmt.Fprintln(os.Stderr, "weft-proxy run: give the app after --, e.g. weft-proxy run --xds-addr 127.0.0.1:15010 -- ./my-app --port 8080")
			os.Exit(2)
		}
	}
	_ = fs.Parse(args)

	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "weft-proxy:", err)
		os.Exit(2)
	}
	var lv slog.LevelVar
	if err := lv.UnmarshalText([]byte(logLevel)); err != nil {
		fail(fmt.Errorf("--log-level: %w", err))
	}
	cfg.Level = &lv
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &lv}))
	var err error
	if cfg.Labels, err = agent.ParseLabels(labels); err != nil {
		fail(err)
	}
	switch mode {
	case "explicit":
		cfg.Mode = listener.Explicit
	case "transparent":
		cfg.Mode = listener.Transparent
	default:
		fail(fmt.Errorf("--mode %q: want explicit or transparent", mode))
	}
	if bind != "" {
		if cfg.BindAddr, err = netip.ParseAddr(bind); err != nil {
			fail(fmt.Errorf("--bind-addr: %w", err))
		}
	}
	if proxyPort > 65535 {
		fail(fmt.Errorf("--http-proxy-port %d out of range", proxyPort))
	}
	cfg.HTTPProxyPort = uint16(proxyPort)
	switch {
	case cfg.DNSAddr == "off":
		cfg.DNSAddr = ""
	case cfg.DNSAddr == "" && mode == "transparent":
		cfg.DNSAddr = "127.0.0.1:15053"
	}
	if healthPort > 65535 {
		fail(fmt.Errorf("--health-port %d out of range", healthPort))
	}
	host := bind
	if host == "" {
		host = "127.0.0.1"
		if mode == "transparent" {
			host = "0.0.0.0"
		}
	}
	if healthPort != 0 {
		cfg.HealthAddr = net.JoinHostPort(host, fmt.Sprint(healthPort))
	}
	// Explicit mode often runs many proxies on one machine's loopback, so
	// the extra metrics ports are opt-in there; transparent mode has a
	// sidecar's full port set.
	for _, p := range []struct {
		name string
		port int
		def  int
		dst  *string
	}{{"--stats-port", statsPort, 15090, &cfg.StatsAddr}, {"--metrics-port", metricsPort, 15020, &cfg.MergedMetricsAddr}} {
		port := p.port
		if port < 0 {
			port = 0
			if mode == "transparent" {
				port = p.def
			}
		}
		if port > 65535 {
			fail(fmt.Errorf("%s %d out of range", p.name, port))
		}
		if port != 0 {
			*p.dst = net.JoinHostPort(host, fmt.Sprint(port))
		}
	}
	if bundleDir != "" {
		b, err := vmbundle.Read(bundleDir)
		if err != nil {
			fail(err)
		}
		if err := agent.ApplyBundle(&cfg, &id, b); err != nil {
			fail(err)
		}
		rootCert = "" // the bundle's roots are in id
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			fail(fmt.Errorf("--token-file: %w", err))
		}
		id.Token = strings.TrimSpace(string(b))
	}
	if rootCert != "" {
		b, err := os.ReadFile(rootCert)
		if err != nil {
			fail(fmt.Errorf("--root-cert: %w", err))
		}
		if id.Roots, err = agent.ParseRoots(b); err != nil {
			fail(fmt.Errorf("--root-cert %s: %w", rootCert, err))
		}
		if id.CAAddr == "" {
			id.CAAddr = agent.DefaultCAAddr(cfg.XDSAddr)
		}
		cfg.Identity = &id
	} else if cfg.Identity == nil && (id.Token != "" || id.CAAddr != "") {
		fail(fmt.Errorf("--token/--ca-addr need --root-cert (the trust bundle that verifies weftd)"))
	}

	if runMode {
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGTERM, os.Interrupt, syscall.SIGHUP)
		code, err := agent.RunApp(context.Background(), cfg, agent.App{Command: appCmd, ReadyTimeout: readyTimeout, StopTimeout: stopTimeout,
			Signals: sigs, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
		if err != nil {
			cfg.Logger.Error("weft-proxy run", "err", err)
		}
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := agent.Run(ctx, cfg); err != nil {
		cfg.Logger.Error("weft-proxy failed", "err", err)
		os.Exit(1)
	}
}
