// Package agent wires weft-proxy together: the xDS client feeds the runtime
// snapshot (a build error NACKs the update and the last good snapshot keeps
// serving), the listener manager serves traffic from it, the admin server
// exposes it, and a cancelled context drains: stop accepting, let in-flight
// requests finish within the drain time, close, return.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/ca/caclient"
	"github.com/weftmesh/weft/internal/dnsproxy"
	"github.com/weftmesh/weft/internal/proxy/admin"
	"github.com/weftmesh/weft/internal/proxy/health"
	"github.com/weftmesh/weft/internal/proxy/jwtauthn"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tlsorigin"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// Config is everything weft-proxy needs; cmd/weft-proxy fills it from flags.
type Config struct {
	// XDSAddr is weftd's plaintext xDS address (e.g. 127.0.0.1:15010), used
	// when Identity is nil (development and tests).
	XDSAddr string
	// Identity, when set, gives the proxy a workload certificate (inbound
	// mTLS) and moves xDS to TLS on Identity.CAAddr (see identity.go).
	Identity *Identity
	// StateOfTheWorld uses SotW ADS instead of delta.
	StateOfTheWorld bool

	// NodeID overrides the Istio-style node id built from the fields below.
	NodeID         string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	// IP is the workload IP advertised in INSTANCE_IPS.
	IP           string
	WorkloadName string
	// AutoRegisterGroup asks weftd to register this host as a WorkloadEntry
	// of that WorkloadGroup (node metadata AUTO_REGISTER_GROUP, as Istio's agent).
	AutoRegisterGroup string
	// Network is the host's network (node metadata NETWORK).
	Network string

	Mode listener.Mode
	// BindAddr is the address every listener binds [127.0.0.1 explicit,
	// 0.0.0.0 transparent].
	BindAddr netip.Addr
	// AdminAddr must be loopback [<BindAddr>:15000, 127.0.0.1:15000 when
	// BindAddr is not loopback].
	AdminAddr string
	// HTTPProxyPort is the explicit-mode HTTP proxy port; 0 lets the kernel
	// choose (tests).
	HTTPProxyPort uint16
	// PortOverrides remaps xDS listener ports (tests).
	PortOverrides map[uint16]uint16
	// ExplicitInbound serves, in explicit mode, every inbound port of
	// virtualInbound on BindAddr (the workload's address; the application
	// listens on 127.0.0.1), so callers reach it without iptables.
	ExplicitInbound bool
	// DNSAddr runs the DNS proxy (UDP and TCP) on this address, answering
	// mesh hosts from the proxy's config and forwarding the rest to
	// DNSResolvConf's resolvers (Istio's 127.0.0.1:15053); empty: off.
	DNSAddr string
	// DNSResolvConf is the resolv.conf with upstream resolvers [/etc/resolv.conf].
	DNSResolvConf string
	// DomainSuffix completes short names in DNS ["cluster.local"].
	DomainSuffix string
	// HealthAddr serves the proxy's readiness at /healthz/ready (Istio's
	// 15021); empty: off.
	HealthAddr string
	// StatsAddr serves the proxy's Prometheus stats at /stats/prometheus
	// (Envoy's 15090); empty: off.
	StatsAddr string
	// MergedMetricsAddr serves the proxy's stats merged with the
	// application's (AppMetricsURL) at /stats/prometheus, and readiness at
	// /healthz/ready (Istio's 15020); empty: off.
	MergedMetricsAddr string
	// AppMetricsURL is the application's Prometheus endpoint merged into
	// MergedMetricsAddr (Istio's prometheus.io/port + path annotations).
	AppMetricsURL string
	// Probe is the workload's readiness probe (a WorkloadGroup's probe): its
	// results are reported to weftd, which marks the host's endpoint. Nil: none.
	Probe *health.Probe
	// DrainTime bounds how long in-flight requests may take at shutdown, and
	// how long a TCP connection whose filter chain an update changed goes on [5s].
	DrainTime time.Duration
	// Observability: access log and tracing (observe.go).
	Observability Observability

	Logger *slog.Logger
	// Level, when set, is what /logging changes.
	Level *slog.LevelVar
}

// Agent is a running weft-proxy.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	holder  *runtime.Holder
	metrics *telemetry.Metrics
	mgr     *listener.Manager
	admin   *admin.Server
	client  *xdsclient.Client
	rotator *caclient.Rotator
	origin  *tlsorigin.Origin // upstream TLS
	// firstCert is closed when the first workload certificate arrived.
	firstCert chan struct{}

	xdsAddr string

	ldsOK   atomic.Bool
	warming atomic.Pointer[string] // dependencies still missing after the last update
	cdsOK   atomic.Bool
	quit    chan struct{}
	quitOne sync.Once

	healthSrv *http.Server
	healthLn  net.Listener

	dns      *dnsproxy.Server
	dnsTable dnsTable
	stats    statsServers
	obs      *observers
}

// New validates cfg and binds the static listeners (explicit HTTP proxy,
// admin); Run starts serving.
func New(cfg Config) (*Agent, error) {
	if cfg.XDSAddr == "" && (cfg.Identity == nil || cfg.Identity.CAAddr == "") {
		return nil, errors.New("agent: the xDS address is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.BindAddr.IsValid() {
		if cfg.Mode == listener.Transparent {
			cfg.BindAddr = netip.IPv4Unspecified()
		} else {
			cfg.BindAddr = netip.MustParseAddr("127.0.0.1")
		}
	}
	if cfg.AdminAddr == "" {
		host := "127.0.0.1"
		if cfg.BindAddr.IsLoopback() {
			host = cfg.BindAddr.String()
		}
		cfg.AdminAddr = netip.AddrPortFrom(netip.MustParseAddr(host), 15000).String()
	}
	if cfg.DrainTime <= 0 {
		cfg.DrainTime = 5 * time.Second
	}
	if cfg.DomainSuffix == "" {
		cfg.DomainSuffix = "cluster.local"
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), quit: make(chan struct{})}
	a.holder = runtime.NewHolder(runtime.Empty(runtime.Options{JWKS: jwtauthn.NewKeyCache(jwtauthn.KeyCacheConfig{Logger: cfg.Logger})}))
	self := telemetry.Identity{Workload: cfg.WorkloadName, Namespace: cfg.Namespace, Labels: cfg.Labels}
	if cfg.Identity != nil {
		self.Principal = workloadID(cfg).String()
	}
	a.metrics = telemetry.New(self)
	node := Node(cfg)
	var err error
	xdsAddr, xdsOpts := cfg.XDSAddr, []grpc.DialOption(nil)
	var inTLS *listener.InboundTLS
	if cfg.Identity != nil {
		a.firstCert = make(chan struct{})
		if a.rotator, err = newRotator(cfg, a.firstCert); err != nil {
			return nil, fmt.Errorf("agent: identity: %w", err)
		}
		xdsAddr = cfg.Identity.CAAddr
		if xdsAddr == "" {
			xdsAddr = DefaultCAAddr(cfg.XDSAddr)
		}
		xdsOpts = xdsDialOptions(a.rotator, cfg.Identity.Token)
		inTLS = inboundTLS(a.rotator, cfg.Identity.TrustDomain)
	}
	a.origin = newOrigin(cfg, a.rotator, a.metrics.Registry())
	a.xdsAddr = xdsAddr
	a.client, err = xdsclient.New(xdsclient.Config{
		ServerAddr:      xdsAddr,
		DialOptions:     xdsOpts,
		Node:            node,
		StateOfTheWorld: cfg.StateOfTheWorld,
		Logger:          cfg.Logger,
		Apply:           a.apply,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if a.obs, err = startObservability(cfg, a.metrics); err != nil {
		return nil, err
	}
	a.mgr = listener.New(listener.Config{
		AccessLog:     a.obs.alog,
		Tracer:        a.obs.tracer,
		Holder:        a.holder,
		Mode:          cfg.Mode,
		BindAddr:      cfg.BindAddr,
		HTTPProxyPort: cfg.HTTPProxyPort,
		PortOverrides: cfg.PortOverrides,
		Metrics:       a.metrics,
		Logger:        cfg.Logger,
		InboundTLS:    inTLS,
		UpstreamDial:  a.origin.Dial,
		UpstreamPeer:  a.origin.Peer,
		DrainTime:     cfg.DrainTime,
	})
	a.admin, err = admin.Listen(admin.Config{
		Addr:    cfg.AdminAddr,
		Holder:  a.holder,
		Status:  a.client.Status,
		Ready:   a.ready,
		Metrics: a.metrics,
		Level:   cfg.Level,
		Drain:   a.mgr.Drain,
		Quit:    a.Quit,
		Logger:  cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if cfg.DNSAddr != "" {
		if a.dns, err = dnsproxy.New(dnsproxy.Config{Addr: cfg.DNSAddr, ResolvConf: cfg.DNSResolvConf, Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("agent: DNS proxy: %w", err)
		}
	}
	if err := a.listenHealth(); err != nil {
		a.admin.Shutdown(context.Background())
		return nil, err
	}
	if err := a.listenStats(); err != nil {
		a.admin.Shutdown(context.Background())
		if a.healthLn != nil {
			a.healthLn.Close()
		}
		return nil, err
	}
	if err := a.mgr.Start(); err != nil {
		a.admin.Shutdown(context.Background())
		a.stats.close()
		if a.healthLn != nil {
			a.healthLn.Close()
		}
		return nil, err
	}
	a.log.Info("weft-proxy starting", "node", node.GetId(), "mode", cfg.Mode.String(), "xds", xdsAddr, "identity", cfg.Identity != nil,
		"admin", a.admin.Addr(), "listeners", a.mgr.Addrs())
	return a, nil
}

// Run is New followed by (*Agent).Run.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// HTTPProxyAddr is the explicit HTTP proxy listener's address ("" if none).
func (a *Agent) HTTPProxyAddr() string { return a.mgr.Addrs()[listener.ExplicitListenerName] }

// ListenerAddrs returns every bound listener's address by name.
func (a *Agent) ListenerAddrs() map[string]string { return a.mgr.Addrs() }

// AdminAddr is the admin server's address.
func (a *Agent) AdminAddr() string { return a.admin.Addr() }

// Holder exposes the runtime snapshot (tests, embedding).
func (a *Agent) Holder() *runtime.Holder { return a.holder }

// Quit asks Run to drain and return (as /quitquitquit does).
func (a *Agent) Quit() { a.quitOne.Do(func() { close(a.quit) }) }

func (a *Agent) apply(u xdsclient.Update) error {
	s, err := runtime.Build(a.holder.Load(), u.Resources...)
	if err != nil {
		a.log.Warn("rejecting xDS update", "type", u.TypeURL, "version", u.Version, "err", err)
		return err
	}
	syncUpstreamTLS(a.origin, s)
	a.holder.Store(s)
	a.refreshDNS(u)
	if err := a.mgr.Update(s); err != nil {
		// The config is valid; a socket that cannot be bound is a local
		// problem, logged rather than NACKed (Envoy does the same).
		a.log.Error("listener update", "err", err)
	}
	if a.cfg.ExplicitInbound {
		if err := a.mgr.UpdateExplicitInbound(s); err != nil {
			a.log.Error("explicit inbound update", "err", err)
		}
	}
	var w []string
	for typ, names := range u.Warming {
		if len(names) > 0 {
			w = append(w, fmt.Sprintf("%s %v", typ[strings.LastIndexByte(typ, '.')+1:], names))
		}
	}
	ws := strings.Join(w, "; ")
	a.warming.Store(&ws)
	switch u.TypeURL {
	case xdsclient.ListenerType:
		a.ldsOK.Store(true)
	case xdsclient.ClusterType:
		a.cdsOK.Store(true)
	}
	a.log.Debug("applied xDS update", "type", u.TypeURL, "version", u.Version, "listeners", s.Listeners.Len(),
		"routes", s.RouteTables.Len(), "clusters", s.Clusters.Len())
	return nil
}

func (a *Agent) ready() (bool, string) {
	if a.mgr.Draining() {
		return false, "DRAINING"
	}
	var missing []string
	if a.rotator != nil && a.rotator.Certificate() == nil {
		missing = append(missing, "workload certificate")
	}
	if !a.cdsOK.Load() {
		missing = append(missing, "CDS")
	}
	if !a.ldsOK.Load() {
		missing = append(missing, "LDS")
	}
	if w := a.warming.Load(); w != nil && *w != "" {
		missing = append(missing, "warming "+*w)
	}
	if len(missing) > 0 {
		st := a.client.Status()
		why := "not ready: waiting for " + strings.Join(missing, ", ")
		if !st.Connected {
			why += " (not connected to " + a.xdsAddr + ")"
		}
		if st.LastError != "" {
			why += "; last error: " + st.LastError
		}
		return false, why
	}
	return true, "LIVE"
}

// Run serves until ctx is cancelled or Quit is called, then drains.
func (a *Agent) Run(ctx context.Context) error {
	xctx, xcancel := context.WithCancel(context.Background())
	defer xcancel()
	if err := a.startDNS(xctx); err != nil {
		return fmt.Errorf("agent: DNS proxy: %w", err)
	}
	xdone := make(chan error, 1)
	rdone := make(chan struct{})
	if a.rotator != nil {
		go func() {
			defer close(rdone)
			_ = a.rotator.Run(xctx) // retries on its own; returns when xctx ends
		}()
	} else {
		close(rdone)
	}
	go func() {
		if a.firstCert != nil {
			// xDS on the secure port authenticates with the certificate:
			// a single-use token is spent by the first certificate request,
			// so the stream waits for it (the token still goes along while
			// no valid certificate is held).
			select {
			case <-a.firstCert:
			case <-xctx.Done():
				xdone <- xctx.Err()
				return
			}
		}
		xdone <- a.client.Run(xctx)
	}()
	adone := make(chan error, 1)
	go func() { adone <- a.admin.Serve() }()
	a.runHealth(xctx)
	a.stats.serve()

	var runErr error
	select {
	case <-ctx.Done():
	case <-a.quit:
	case err := <-adone:
		runErr = fmt.Errorf("agent: admin server: %w", err)
	}
	a.log.Info("draining", "drain_time", a.cfg.DrainTime)
	dctx, dcancel := context.WithTimeout(context.Background(), a.cfg.DrainTime)
	defer dcancel()
	if err := a.mgr.Shutdown(dctx); err != nil {
		a.log.Warn("drain incomplete", "err", err)
	}
	// Keep xDS until traffic is gone so config keeps flowing during drain.
	xcancel()
	<-xdone
	<-rdone
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = a.admin.Shutdown(sctx)
	a.stats.close()
	a.obs.close()
	a.log.Info("stopped")
	return runErr
}

// Rotator is the workload certificate manager (nil without Identity).
func (a *Agent) Rotator() *caclient.Rotator { return a.rotator }
