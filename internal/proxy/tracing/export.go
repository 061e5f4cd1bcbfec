package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// Config configures a Tracer.
type Config struct {
	// Endpoint is the OTLP/HTTP traces URL, e.g.
	// http://127.0.0.1:4318/v1/traces. Required.
	Endpoint string
	// SampleRate is the share of new traces (and of traces whose caller did
	// not decide) that are recorded, 0..1 [1]. A caller's decision
	// (traceparent flags, x-b3-sampled) is always honoured.
	SampleRate float64
	// ServiceName is the resource's service.name (e.g. "reviews.default").
	ServiceName string
	// Attributes are extra resource attributes (workload, namespace, ...).
	Attributes map[string]string
	// QueueSize bounds spans waiting for export; more are dropped [4096].
	QueueSize int
	// BatchSize is the most spans per export request [512].
	BatchSize int
	// FlushInterval sends a partial batch after this long [2s].
	FlushInterval time.Duration
	// Timeout bounds one export request [5s].
	Timeout time.Duration
	Client  *http.Client
	Logger  *slog.Logger
}

// Tracer records spans and exports them in the background.
type Tracer struct {
	cfg      Config
	queue    chan Span
	done     chan struct{}
	stopOnce sync.Once
	stop     chan struct{}
	resource []byte // encoded once

	exported, dropped, failed atomic.Uint64
}

// New validates cfg and starts the exporter.
func New(cfg Config) (*Tracer, error) {
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("tracing: an OTLP/HTTP endpoint is required (e.g. http://127.0.0.1:4318/v1/traces)")
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("tracing: sample rate %v is outside 0..1", cfg.SampleRate)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	attrs := []attribute{{Key: "service.name", Value: anyValue{StringValue: &cfg.ServiceName}}}
	keys := make([]string, 0, len(cfg.Attributes))
	for k := range cfg.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := cfg.Attributes[k]
		attrs = append(attrs, attribute{Key: k, Value: anyValue{StringValue: &v}})
	}
	res, err := json.Marshal(resource{Attributes: attrs})
	if err != nil {
		return nil, fmt.Errorf("tracing: encode resource: %w", err)
	}
	t := &Tracer{cfg: cfg, queue: make(chan Span, cfg.QueueSize), done: make(chan struct{}), stop: make(chan struct{}), resource: res}
	go t.run()
	return t, nil
}

// Sample decides sampling for a trace whose caller did not.
func (t *Tracer) Sample() bool {
	return t.cfg.SampleRate >= 1 || (t.cfg.SampleRate > 0 && rand.Float64() < t.cfg.SampleRate)
}

// Record queues a finished span for export; it never blocks (a full queue
// drops the span and counts it).
func (t *Tracer) Record(s Span) {
	select {
	case t.queue <- s:
	default:
		t.dropped.Add(1)
	}
}

// Queued returns how many spans wait for the exporter.
func (t *Tracer) Queued() int { return len(t.queue) }

// Stats are the exporter's counters.
type Stats struct{ Exported, Dropped, Failed uint64 }

// Stats returns the counters.
func (t *Tracer) Stats() Stats {
	return Stats{Exported: t.exported.Load(), Dropped: t.dropped.Load(), Failed: t.failed.Load()}
}

// Collectors exports the counters as weft_tracing_spans_total{result}.
func (t *Tracer) Collectors() []prometheus.Collector {
	return telemetry.OutcomeCounters("weft_tracing_spans_total",
		"Spans by export outcome: exported, dropped (queue full), failed (collector unreachable or refused).",
		telemetry.Outcome{Result: "exported", N: &t.exported}, telemetry.Outcome{Result: "dropped", N: &t.dropped},
		telemetry.Outcome{Result: "failed", N: &t.failed})
}

// Close exports what is queued (bounded by the export timeout) and stops.
func (t *Tracer) Close() {
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.done
}

func (t *Tracer) run() {
	defer close(t.done)
	tick := time.NewTicker(t.cfg.FlushInterval)
	defer tick.Stop()
	batch := make([]Span, 0, t.cfg.BatchSize)
	flush := func() {
		if len(batch) > 0 {
			t.export(batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case s := <-t.queue:
			batch = append(batch, s)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-tick.C:
			flush()
		case <-t.stop:
			for {
				select {
				case s := <-t.queue:
					batch = append(batch, s)
					if len(batch) == cap(batch) {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

func (t *Tracer) export(batch []Span) {
	body := t.encode(batch)
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		t.fail(len(batch), err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.cfg.Client.Do(req)
	if err != nil {
		t.fail(len(batch), err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.fail(len(batch), fmt.Errorf("collector answered %s", resp.Status))
		return
	}
	t.exported.Add(uint64(len(batch)))
}

func (t *Tracer) fail(n int, err error) {
	t.failed.Add(uint64(n))
	t.cfg.Logger.Warn("tracing: span export failed; spans dropped", "component", "tracing",
		"endpoint", t.cfg.Endpoint, "spans", n, "err", err)
}

// OTLP/JSON (opentelemetry-proto's JSON mapping: ids as hex strings,
// 64-bit integers as decimal strings, enums as numbers).
type (
	anyValue struct {
		StringValue *string `json:"stringValue,omitempty"`
		IntValue    *string `json:"intValue,omitempty"`
	}
	attribute struct {
		Key   string   `json:"key"`
		Value anyValue `json:"value"`
	}
	resource struct {
		Attributes []attribute `json:"attributes"`
	}
	status struct {
		Code int `json:"code"`
	}
	span struct {
		TraceID      string      `json:"traceId"`
		SpanID       string      `json:"spanId"`
		ParentSpanID string      `json:"parentSpanId,omitempty"`
		Name         string      `json:"name"`
		Kind         int         `json:"kind"`
		Start        string      `json:"startTimeUnixNano"`
		End          string      `json:"endTimeUnixNano"`
		Attributes   []attribute `json:"attributes"`
		Status       status      `json:"status"`
	}
)

const (
	kindServer  = 2
	kindClient  = 3
	statusUnset = 0
	statusError = 2
)

func (t *Tracer) encode(batch []Span) []byte {
	spans := make([]span, len(batch))
	for i := range batch {
		s := &batch[i]
		o := span{
			TraceID: hex.EncodeToString(s.Trace[:]),
			SpanID:  hex.EncodeToString(s.ID[:]),
			Name:    s.Name,
			Kind:    kindClient,
			Start:   strconv.FormatInt(s.Start.UnixNano(), 10),
			End:     strconv.FormatInt(s.End.UnixNano(), 10),
		}
		if !s.Parent.IsZero() {
			o.ParentSpanID = hex.EncodeToString(s.Parent[:])
		}
		if s.Server {
			o.Kind = kindServer
		}
		str := func(k, v string) {
			if v != "" {
				o.Attributes = append(o.Attributes, attribute{Key: k, Value: anyValue{StringValue: &v}})
			}
		}
		str("http.request.method", s.Method)
		str("url.path", s.URL)
		str("server.address", s.Host)
		str("network.protocol.name", s.Protocol)
		str("upstream_cluster", s.Cluster)
		str("upstream_address", s.Upstream)
		str("downstream_address", s.Peer)
		str("response_flags", s.Flags)
		code := strconv.Itoa(s.Status)
		o.Attributes = append(o.Attributes, attribute{Key: "http.response.status_code", Value: anyValue{IntValue: &code}})
		if s.Error || s.Status >= 500 || s.Status == 0 {
			o.Status.Code = statusError
		} else {
			o.Status.Code = statusUnset
		}
		spans[i] = o
	}
	var b bytes.Buffer
	b.WriteString(`{"resourceSpans":[{"resource":`)
	b.Write(t.resource)
	b.WriteString(`,"scopeSpans":[{"scope":{"name":"weft-proxy"},"spans":`)
	enc, _ := json.Marshal(spans) // plain structs of strings: cannot fail
	b.Write(enc)
	b.WriteString(`}]}]}`)
	return b.Bytes()
}
