package xds

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics uses Istio's pilot_* names where Istio has the metric, so
// existing dashboards work, and weft_xds_* for the rest.
type metrics struct {
	connected   *prometheus.GaugeVec     // weft_xds_connected_proxies{type}
	pushes      *prometheus.CounterVec   // pilot_xds_pushes{type}
	pushTime    prometheus.Histogram     // pilot_xds_push_time_seconds
	pushDur     prometheus.Histogram     // weft_xds_push_duration_seconds
	convergence prometheus.Histogram     // pilot_proxy_convergence_time
	ackLatency  *prometheus.HistogramVec // weft_xds_ack_latency_seconds{type}
	rejects     *prometheus.CounterVec   // pilot_total_xds_rejects{type}
	events      prometheus.Counter       // weft_xds_push_events_total
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	buckets := []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_xds_connected_proxies", Help: "Proxies with at least one open xDS stream, by proxy type.",
		}, []string{"type"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes", Help: "xDS responses sent, by type (cds, eds, lds, rds).",
		}, []string{"type"}),
		pushTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pilot_xds_push_time_seconds", Help: "Time to generate and hand over one push to every connected proxy.", Buckets: buckets,
		}),
		pushDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_xds_push_duration_seconds", Help: "Generation plus cache update time of one push (same as pilot_xds_push_time_seconds).", Buckets: buckets,
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pilot_proxy_convergence_time", Help: "Time from the oldest model update in a push being received to the push being handed over.", Buckets: buckets,
		}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_xds_ack_latency_seconds", Help: "Time from sending an xDS response to the proxy ACKing it.", Buckets: buckets,
		}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects", Help: "xDS responses rejected (NACKed) by proxies, by type.",
		}, []string{"type"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_xds_push_events_total", Help: "Model updates received (before debouncing).",
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.connected, m.pushes, m.pushTime, m.pushDur, m.convergence, m.ackLatency, m.rejects, m.events} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}
