package agent

import (
	"fmt"
	"io"
	"os"

	"github.com/weftmesh/weft/internal/proxy/accesslog"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tracing"
)

// Observability configures the optional access log and tracing.
type Observability struct {
	// AccessLog is where JSON access log lines go: a file path (appended),
	// "-" or "/dev/stdout" for standard output; empty: off.
	AccessLog string
	// TracingEndpoint is an OTLP/HTTP traces URL
	// (http://collector:4318/v1/traces); empty: no spans are recorded and
	// trace headers pass through untouched.
	TracingEndpoint string
	// TracingSampling is the share of new traces recorded, 0..1 (Istio's
	// default is 1%); a caller's sampling decision is always honoured.
	TracingSampling float64
}

// observers holds what startObservability opened.
type observers struct {
	alog   *accesslog.Logger
	tracer *tracing.Tracer
	file   io.Closer
}

func (o *observers) close() {
	if o.tracer != nil {
		o.tracer.Close()
	}
	if o.alog != nil {
		o.alog.Close()
	}
	if o.file != nil {
		o.file.Close()
	}
}

func startObservability(cfg Config, m *telemetry.Metrics) (*observers, error) {
	o := &observers{}
	if p := cfg.Observability.AccessLog; p != "" {
		var w io.Writer = os.Stdout
		if p != "-" && p != "/dev/stdout" {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				return nil, fmt.Errorf("agent: access log: %w (check the directory exists and is writable, or use --access-log=-)", err)
			}
			w, o.file = f, f
		}
		o.alog = accesslog.New(w, 0)
		for _, c := range o.alog.Collectors() {
			_ = m.Registry().Register(c)
		}
	}
	if ep := cfg.Observability.TracingEndpoint; ep != "" {
		t, err := tracing.New(tracing.Config{
			Endpoint:    ep,
			SampleRate:  cfg.Observability.TracingSampling,
			ServiceName: cfg.WorkloadName + "." + cfg.Namespace,
			Attributes:  map[string]string{"k8s.namespace.name": cfg.Namespace, "service.instance.id": cfg.WorkloadName},
			Logger:      cfg.Logger,
		})
		if err != nil {
			o.close()
			return nil, fmt.Errorf("agent: %w", err)
		}
		o.tracer = t
		for _, c := range t.Collectors() {
			_ = m.Registry().Register(c)
		}
	}
	return o, nil
}
