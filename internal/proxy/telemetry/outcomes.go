package telemetry

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is one value of a "result" label and the counter behind it.
type Outcome struct {
	Result string
	N      *atomic.Uint64
}

// OutcomeCounters exports counters a component keeps itself (mirroring,
// access log, tracing) as one counter family name{result="..."}, read at
// scrape time.
func OutcomeCounters(name, help string, outcomes ...Outcome) []prometheus.Collector {
	out := make([]prometheus.Collector, len(outcomes))
	for i, o := range outcomes {
		n := o.N
		out[i] = prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: prometheus.Labels{"result": o.Result},
		}, func() float64 { return float64(n.Load()) })
	}
	return out
}
