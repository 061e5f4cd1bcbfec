package controlplane

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/config"
)

type metrics struct{}

// newMetrics registers config-side metrics; xDS metrics are registered by the xds package.
func newMetrics(reg prometheus.Registerer, agg *config.Aggregator) *metrics {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_config_errors",
			Help: "Config problems (error severity) currently reported across all sources; the objects concerned keep their last good version or are not in effect.",
		}, func() float64 { return float64(agg.ErrorCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_config_version",
			Help: "Version of the config snapshot in effect.",
		}, func() float64 {
			if s := agg.Current(); s != nil {
				return float64(s.Version)
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_config_objects",
			Help: "Config objects in effect.",
		}, func() float64 { return float64(agg.Current().Len()) }),
	)
	return &metrics{}
}

func (s *Server) registerMonitoring(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready: waiting for the first config snapshot", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /debug/syncz", s.xds.SynczHandler())
	mux.HandleFunc("GET /debug/configz", s.handleConfigz)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/heap", pprof.Index)

	api.NewServer(api.ServerConfig{
		Store:    s.store,
		Snapshot: s.agg.Current,
		Proxies:  func() any { return s.xds.Status() },
		Extra:    s.warnings.Warnings,
		Handlers: s.caHandlers(),
		Token:    s.token,
		Version:  s.version,
		Logger:   s.cfg.Logger,
	}).Register(mux)
}

// configzObject is one object in /debug/configz.
type configzObject struct {
	Kind      config.Kind     `json:"kind"`
	Namespace string          `json:"namespace,omitempty"`
	Name      string          `json:"name"`
	Origin    config.Origin   `json:"origin"`
	Spec      json.RawMessage `json:"spec"`
}

// handleConfigz dumps the config in effect. Like istiod's debug endpoints it
// is on the monitoring listener, which binds to loopback by default.
func (s *Server) handleConfigz(w http.ResponseWriter, r *http.Request) {
	snap := s.agg.Current()
	out := struct {
		Version     uint64             `json:"version"`
		Objects     []configzObject    `json:"objects"`
		Diagnostics config.Diagnostics `json:"diagnostics"`
	}{Objects: []configzObject{}, Diagnostics: config.Diagnostics{}}
	if snap != nil {
		out.Version = snap.Version
		out.Diagnostics = append(out.Diagnostics, snap.Diagnostics...)
		for _, o := range snap.All() {
			spec, err := config.SpecJSON(o)
			if err != nil {
				spec = []byte(`null`)
			}
			out.Objects = append(out.Objects, configzObject{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Origin: o.Origin, Spec: spec})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func (s *Server) version() api.Version {
	v := api.Version{Version: Version, TrustDomain: s.cfg.Mesh.TrustDomain, DomainSuffix: s.cfg.Mesh.DomainSuffix}
	select {
	case <-s.started:
		if s.SecureAddr != nil {
			v.SecureAddr = s.SecureAddr.String()
		}
		if s.XDSAddr != nil {
			v.XDSAddr = s.XDSAddr.String()
		}
	default:
	}
	return v
}
