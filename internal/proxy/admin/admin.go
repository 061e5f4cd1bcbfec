// Package admin serves weft-proxy's Envoy-style admin endpoint on loopback
// (Istio's port 15000): /ready, /config_dump (envoy.admin.v3 protos as JSON,
// so Envoy tooling and jq recipes work), /stats/prometheus, /clusters,
// /logging, /drain_listeners and /quitquitquit.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	// Types that appear inside Any fields of the resources weftd sends;
	// protojson must resolve them to print a config dump.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// Config configures the admin server. Functions may be nil.
type Config struct {
	// Addr must be a loopback address (the admin API can stop the proxy).
	Addr    string
	Holder  *runtime.Holder
	Status  func() xdsclient.Status
	Ready   func() (bool, string)
	Metrics *telemetry.Metrics
	Level   *slog.LevelVar
	Drain   func()
	Quit    func()
	Logger  *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	cfg Config
	ln  net.Listener
	srv *http.Server
}

// Listen validates the address and binds it.
func Listen(cfg Config) (*Server, error) {
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: address %q: %w", cfg.Addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("admin: address %s is not loopback; the admin API must not be reachable from the network", cfg.Addr)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{cfg: cfg, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Handler returns the admin mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", s.ready)
	mux.HandleFunc("/config_dump", s.configDump)
	mux.HandleFunc("/clusters", s.clusters)
	mux.HandleFunc("/logging", s.logging)
	mux.HandleFunc("/drain_listeners", s.post(s.cfg.Drain, "OK\n"))
	mux.HandleFunc("/quitquitquit", s.post(s.cfg.Quit, "OK\n"))
	if s.cfg.Metrics != nil {
		mux.Handle("/stats/prometheus", s.cfg.Metrics.Handler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "weft-proxy admin: /ready /config_dump /clusters /stats/prometheus /logging /drain_listeners /quitquitquit")
	})
	return mux
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	ok, why := true, "LIVE"
	if s.cfg.Ready != nil {
		ok, why = s.cfg.Ready()
	}
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}

func (s *Server) post(f func(), body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST required", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprint(w, body)
		if f != nil {
			go f() // answer first: quitquitquit ends the process
		}
	}
}

func (s *Server) logging(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Level == nil {
		http.Error(w, "log level is not adjustable", http.StatusNotImplemented)
		return
	}
	if lv := r.URL.Query().Get("level"); lv != "" {
		if r.Method != http.MethodPost {
			http.Error(w, "POST required to change the level", http.StatusMethodNotAllowed)
			return
		}
		var l slog.Level
		if err := l.UnmarshalText([]byte(strings.Replace(lv, "warning", "warn", 1))); err != nil {
			http.Error(w, "unknown level "+lv+" (debug, info, warn, error)", http.StatusBadRequest)
			return
		}
		s.cfg.Level.Set(l)
		s.cfg.Logger.Info("log level changed", "component", "admin", "level", l.String())
	}
	fmt.Fprintf(w, "active loggers:\n  weft-proxy: %s\n", strings.ToLower(s.cfg.Level.Level().String()))
}

func (s *Server) clusters(w http.ResponseWriter, _ *http.Request) {
	snap := s.cfg.Holder.Load()
	names := snap.Clusters.Names()
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		c := snap.Cluster(n)
		fmt.Fprintf(&b, "%s::default_priority::max_connections::%d\n", n, c.Thresholds.MaxConnections)
		fmt.Fprintf(&b, "%s::default_priority::max_requests::%d\n", n, c.Thresholds.MaxRequests)
		for _, ep := range c.Endpoints() {
			flags := "healthy"
			if ep.Health != corev3.HealthStatus_UNKNOWN && ep.Health != corev3.HealthStatus_HEALTHY {
				flags = "/eds_health_" + strings.ToLower(ep.Health.String())
			}
			if ep.Ejected() {
				flags = "/failed_outlier_check"
			}
			fmt.Fprintf(&b, "%s::%s::health_flags::%s\n", n, ep.Addr, flags)
			fmt.Fprintf(&b, "%s::%s::weight::%d\n", n, ep.Addr, ep.Weight)
			fmt.Fprintf(&b, "%s::%s::priority::%d\n", n, ep.Addr, ep.Priority)
			fmt.Fprintf(&b, "%s::%s::rq_active::%d\n", n, ep.Addr, ep.Active())
			if ep.Locality != "" {
				fmt.Fprintf(&b, "%s::%s::locality::%s\n", n, ep.Addr, ep.Locality)
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) configDump(w http.ResponseWriter, _ *http.Request) {
	dump, err := ConfigDump(s.cfg.Holder.Load(), s.status())
	if err == nil {
		var out []byte
		out, err = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(dump)
		if err == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(out)
			return
		}
	}
	http.Error(w, "config dump: "+err.Error(), http.StatusInternalServerError)
}

func (s *Server) status() xdsclient.Status {
	if s.cfg.Status == nil {
		return xdsclient.Status{}
	}
	return s.cfg.Status()
}

// ConfigDump renders snap as Envoy's admin ConfigDump: listeners, clusters,
// route configurations and endpoints, each with the xDS version last
// accepted for its type.
func ConfigDump(snap *runtime.Snapshot, st xdsclient.Status) (*adminv3.ConfigDump, error) {
	ver := func(url string) (string, *timestamppb.Timestamp) {
		ts := st.Types[url]
		var t *timestamppb.Timestamp
		if !ts.LastACK.IsZero() {
			t = timestamppb.New(ts.LastACK)
		}
		return ts.Version, t
	}
	var errs []error
	pack := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			errs = append(errs, err)
		}
		return a
	}

	lv, lt := ver(xdsclient.ListenerType)
	lds := &adminv3.ListenersConfigDump{VersionInfo: lv}
	for _, n := range sorted(snap.Listeners.Names()) {
		l := snap.Listener(n)
		lds.DynamicListeners = append(lds.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name:        n,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: lv, Listener: pack(l.Source()), LastUpdated: lt},
		})
	}
	cv, ct := ver(xdsclient.ClusterType)
	cds := &adminv3.ClustersConfigDump{VersionInfo: cv}
	ev, et := ver(xdsclient.EndpointType)
	eds := &adminv3.EndpointsConfigDump{}
	for _, n := range sorted(snap.Clusters.Names()) {
		c := snap.Cluster(n)
		cds.DynamicActiveClusters = append(cds.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: cv, Cluster: pack(c.Source()), LastUpdated: ct,
		})
		if set := c.EndpointSet(); set != nil && set.Source() != nil && c.EDSServiceName != "" {
			eds.DynamicEndpointConfigs = append(eds.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
				VersionInfo: ev, EndpointConfig: pack(set.Source()), LastUpdated: et,
			})
		}
	}
	rv, rt := ver(xdsclient.RouteType)
	rds := &adminv3.RoutesConfigDump{}
	for _, n := range sorted(snap.RouteTables.Names()) {
		rds.DynamicRouteConfigs = append(rds.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: rv, RouteConfig: pack(snap.RouteTable(n).Source()), LastUpdated: rt,
		})
	}
	dump := &adminv3.ConfigDump{Configs: []*anypb.Any{pack(lds), pack(cds), pack(rds), pack(eds)}}
	return dump, errors.Join(errs...)
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}
