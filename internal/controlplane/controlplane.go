// Package controlplane wires weftd together: config sources -> aggregator ->
// registry model -> xDS server, plus the monitoring/API listener. It holds no
// logic of its own beyond the wiring and the model-rebuild loop.
package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/autoreg"
	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/xds"
)

// Version is weftd's version, set at build time with -ldflags.
var Version = "dev"

// Config is everything weftd needs; cmd/weftd fills it from flags.
type Config struct {
	// ConfigDir is a directory of Istio YAML to watch (optional).
	ConfigDir string
	// DataDir holds the embedded store and the admin credential (required).
	DataDir string
	// InsecureXDSAddr serves plaintext xDS when non-empty (development and tests only).
	InsecureXDSAddr string
	// MonitoringAddr serves /metrics, /ready, /debug/* and the config API.
	MonitoringAddr string
	// SecureAddr serves the CA and xDS over TLS (Istio's 15012); empty disables it.
	SecureAddr string
	// CACertsDir holds a plugged-in CA in Istio's cacerts layout (default <data-dir>/cacerts);
	// without it weftd generates a self-signed root kept in the store.
	CACertsDir string
	// CertTTL is the default workload certificate lifetime; MaxCertTTL the longest a client may ask for.
	CertTTL, MaxCertTTL time.Duration
	// Debounce is the xDS push debounce window.
	Debounce time.Duration
	Mesh     model.MeshConfig
	Logger   *slog.Logger
	// AutoregistrationGrace is how long an auto-registered WorkloadEntry
	// outlives its proxy's connection (default 30s).
	AutoregistrationGrace time.Duration
	// AllowInsecureAutoregistration lets proxies on the plaintext xDS port
	// auto-register without an identity (development and tests only).
	AllowInsecureAutoregistration bool
}

// Server is a running weftd.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *config.Store
	agg      *config.Aggregator
	autoreg  *autoreg.Registry
	xds      *xds.Server
	registry *prometheus.Registry
	model    atomic.Pointer[model.Snapshot]
	ready    atomic.Bool
	token    string

	// Bound addresses, known after Start.
	XDSAddr        net.Addr
	MonitoringAddr net.Addr
	SecureAddr     net.Addr

	ca           *ca.CA
	secureServer *grpc.Server

	grpcServer *grpc.Server
	httpServer *http.Server
	listeners  []net.Listener
	metrics    *metrics
	started    chan struct{}
	warnings   *warningGenerator
}

// New opens the store and prepares every component; Start serves.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("weftd: --data-dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Mesh.DomainSuffix == "" {
		cfg.Mesh = model.DefaultMeshConfig()
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("weftd: create data dir: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "weftd"), registry: prometheus.NewRegistry(), started: make(chan struct{})}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tok, err := loadOrCreateToken(filepath.Join(cfg.DataDir, api.TokenFile))
	if err != nil {
		return nil, err
	}
	s.token = tok
	s.store, err = config.OpenStore(config.StoreConfig{Path: filepath.Join(cfg.DataDir, "weft.db"), Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("weftd: open embedded store (is another weftd using %s?): %w", cfg.DataDir, err)
	}
	sources := []config.Source{s.store}
	if cfg.ConfigDir != "" {
		if st, err := os.Stat(cfg.ConfigDir); err != nil || !st.IsDir() {
			s.store.Close()
			return nil, fmt.Errorf("weftd: --config-dir %s is not a readable directory", cfg.ConfigDir)
		}
		sources = append(sources, config.NewDirSource(config.DirConfig{Dir: cfg.ConfigDir, Logger: cfg.Logger}))
	}
	if s.ca, err = s.newCA(); err != nil {
		s.store.Close()
		return nil, err
	}
	s.autoreg, err = autoreg.New(autoreg.Config{KV: s.store, Snapshot: func() *config.Snapshot { return s.agg.Current() },
		GracePeriod: cfg.AutoregistrationGrace, AllowInsecure: cfg.AllowInsecureAutoregistration, Logger: cfg.Logger})
	if err != nil {
		s.store.Close()
		return nil, fmt.Errorf("weftd: auto-registration: %w", err)
	}
	sources = append(sources, s.autoreg)
	s.agg = config.NewAggregator(config.AggregatorConfig{Sources: sources, Logger: cfg.Logger})
	s.warnings = newWarningGenerator(cfg.Logger, s.registry)
	s.xds = xds.New(xds.Config{
		Generator:    s.warnings,
		Debounce:     cfg.Debounce,
		Logger:       cfg.Logger,
		Registerer:   s.registry,
		OnConnect:    s.onConnect,
		OnDisconnect: s.onDisconnect,
		OnHealth:     s.onHealth,
	})
	s.metrics = newMetrics(s.registry, s.agg)
	return s, nil
}

// Started is closed once the listeners are bound (XDSAddr and MonitoringAddr are set).
func (s *Server) Started() <-chan struct{} { return s.started }

// Ready reports whether the first config snapshot is in effect.
func (s *Server) Ready() bool { return s.ready.Load() }

// Token returns the admin credential (tests use it; users read the file).
func (s *Server) Token() string { return s.token }

// Start binds the listeners and runs until ctx is done, then shuts down.
func (s *Server) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	mux := http.NewServeMux()
	s.registerMonitoring(mux)
	ln, err := net.Listen("tcp", s.cfg.MonitoringAddr)
	if err != nil {
		return fmt.Errorf("weftd: monitoring listener %s: %w", s.cfg.MonitoringAddr, err)
	}
	s.MonitoringAddr = ln.Addr()
	s.listeners = append(s.listeners, ln)
	s.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 4)
	go func() { errc <- ignoreClosed(s.httpServer.Serve(ln)) }()

	if s.cfg.InsecureXDSAddr != "" {
		xln, err := net.Listen("tcp", s.cfg.InsecureXDSAddr)
		if err != nil {
			return fmt.Errorf("weftd: xDS listener %s: %w", s.cfg.InsecureXDSAddr, err)
		}
		s.XDSAddr = xln.Addr()
		s.grpcServer = grpc.NewServer(grpcServerOptions()...)
		s.xds.Register(s.grpcServer)
		go func() { errc <- s.grpcServer.Serve(xln) }()
		s.log.Warn("serving plaintext xDS: for development and tests only", "addr", s.XDSAddr.String())
	}

	if s.cfg.SecureAddr != "" {
		if err := s.startSecure(errc); err != nil {
			return err
		}
	}
	close(s.started) // every address is set
	go func() { errc <- ignoreCanceled(s.agg.Run(ctx)) }()
	go func() { errc <- ignoreCanceled(s.xds.Run(ctx)) }()
	go s.modelLoop(ctx)

	s.log.Info("weftd started", "version", Version, "monitoring", s.MonitoringAddr.String(),
		"configDir", s.cfg.ConfigDir, "dataDir", s.cfg.DataDir)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.shutdown()
	return runErr
}

// modelLoop rebuilds the registry model on every config snapshot and hands it to xDS.
func (s *Server) modelLoop(ctx context.Context) {
	vips, err := model.NewVIPTable(s.store)
	if err != nil {
		s.log.Error("VIP table unavailable; services without addresses get none", "err", err)
		vips = nil
	}
	updates := s.agg.Subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-updates:
			start := time.Now()
			opts := model.BuildOptions{Mesh: s.cfg.Mesh, Health: s.autoreg.Health}
			if vips != nil {
				opts.VIPs = vips
			}
			m, err := model.Build(snap, opts)
			if err != nil {
				// The previous model keeps serving.
				s.log.Error("model build failed; last good model keeps serving", "configVersion", snap.Version, "err", err)
				continue
			}
			if prev := s.model.Swap(m); !xds.EndpointOnlyChange(prev, m) {
				s.warnings.reset()
			}
			s.xds.Update(m)
			s.ready.Store(true)
			s.log.Info("config in effect", "configVersion", snap.Version, "objects", snap.Len(),
				"services", len(m.Services()), "errors", len(snap.Diagnostics.Errors()),
				"build", time.Since(start).Round(time.Microsecond).String())
		}
	}
}

func (s *Server) shutdown() {
	if s.secureServer != nil {
		stopGRPC(s.secureServer)
	}
	if s.grpcServer != nil {
		stopGRPC(s.grpcServer)
	}
	if s.httpServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = s.httpServer.Shutdown(ctx)
		cancel()
	}
	s.ca.Close()
	if err := s.store.Close(); err != nil {
		s.log.Error("close store", "err", err)
	}
	s.log.Info("weftd stopped")
}

// Model returns the model in effect (nil before the first config snapshot).
func (s *Server) Model() *model.Snapshot { return s.model.Load() }

// Store returns the embedded store.
func (s *Server) Store() *config.Store { return s.store }

// XDS returns the xDS server.
func (s *Server) XDS() *xds.Server { return s.xds }

// CA returns the certificate authority.
func (s *Server) CA() *ca.CA { return s.ca }

func grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(100000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// stopGRPC lets streams end for a moment, then closes them (xDS streams
// never end by themselves; proxies reconnect to the next weftd).
func stopGRPC(g *grpc.Server) {
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		g.Stop()
	}
}

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("weftd: admin token in %s is too short; delete the file to generate a new one", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("weftd: read admin token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("weftd: generate admin token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("weftd: write admin token: %w", err)
	}
	return tok, nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
