package controlplane

import (
	"log/slog"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/translate"
	"github.com/weftmesh/weft/internal/xds"
)

// warningGenerator wraps translate.Generator so that config a proxy cannot
// get is never silently dropped: each distinct warning is logged once,
// counted, and listed by `weftctl analyze` until a push no longer produces it.
type warningGenerator struct {
	gen translate.Generator
	log *slog.Logger

	mu      sync.Mutex
	current map[string]config.Diagnostic // by Error() text
	gauge   prometheus.Gauge
}

func newWarningGenerator(log *slog.Logger, reg prometheus.Registerer) *warningGenerator {
	w := &warningGenerator{log: log.With("component", "translate"), current: map[string]config.Diagnostic{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_translation_warnings",
			Help: "Distinct config items weftd could not translate for at least one proxy (see weftctl analyze).",
		})}
	reg.MustRegister(w.gauge)
	return w
}

// Generate implements xds.Generator.
func (w *warningGenerator) Generate(in translate.Input) (*translate.Resources, error) {
	res, err := w.gen.Generate(in)
	if err != nil {
		return nil, err
	}
	w.record(res.Warnings)
	return res, nil
}

// GenerateOutbound implements xds.SplitGenerator.
func (w *warningGenerator) GenerateOutbound(in translate.Input) (*translate.Resources, error) {
	res, err := w.gen.GenerateOutbound(in)
	if err != nil {
		return nil, err
	}
	w.record(res.Warnings)
	return res, nil
}

// GenerateInbound implements xds.SplitGenerator.
func (w *warningGenerator) GenerateInbound(in translate.Input) (*translate.Resources, error) {
	res, err := w.gen.GenerateInbound(in)
	if err != nil {
		return nil, err
	}
	w.record(res.Warnings)
	return res, nil
}

// The wrapper must keep every optional fast path of the generator it wraps.
var (
	_ xds.Generator         = (*warningGenerator)(nil)
	_ xds.EndpointGenerator = (*warningGenerator)(nil)
	_ xds.SplitGenerator    = (*warningGenerator)(nil)
)

// GenerateEndpoints implements xds.EndpointGenerator.
func (w *warningGenerator) GenerateEndpoints(in translate.Input) (map[string]proto.Message, error) {
	return w.gen.GenerateEndpoints(in)
}

func (w *warningGenerator) record(ds config.Diagnostics) {
	if len(ds) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range ds {
		k := d.Error()
		if _, seen := w.current[k]; seen {
			continue
		}
		w.current[k] = d
		w.log.Warn("config not translatable for some proxies", "warning", k)
	}
	w.gauge.Set(float64(len(w.current)))
}

// reset forgets warnings; called when a new model arrives so fixed config
// stops being reported (the next push re-records what still applies).
func (w *warningGenerator) reset() {
	w.mu.Lock()
	w.current = map[string]config.Diagnostic{}
	w.mu.Unlock()
}

// Warnings returns the current distinct warnings, sorted.
func (w *warningGenerator) Warnings() config.Diagnostics {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(config.Diagnostics, 0, len(w.current))
	keys := make([]string, 0, len(w.current))
	for k := range w.current {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, w.current[k])
	}
	return out
}
