package upstream

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// OutlierConfig is the consecutive-error subset of Envoy outlier detection.
type OutlierConfig struct {
	Consecutive5xx                     uint32
	EnforcingConsecutive5xx            uint32 // percent
	ConsecutiveGatewayFailure          uint32
	EnforcingConsecutiveGatewayFailure uint32 // percent
	BaseEjectionTime                   time.Duration
	MaxEjectionTime                    time.Duration
	MaxEjectionPercent                 uint32
	Interval                           time.Duration
}

func outlierConfig(od *clusterv3.OutlierDetection) *OutlierConfig {
	c := &OutlierConfig{
		Consecutive5xx:                     5,
		EnforcingConsecutive5xx:            100,
		ConsecutiveGatewayFailure:          5,
		EnforcingConsecutiveGatewayFailure: 0,
		BaseEjectionTime:                   30 * time.Second,
		MaxEjectionTime:                    300 * time.Second,
		MaxEjectionPercent:                 10,
		Interval:                           10 * time.Second,
	}
	if v := od.GetConsecutive_5Xx(); v != nil {
		c.Consecutive5xx = v.GetValue()
	}
	if v := od.GetEnforcingConsecutive_5Xx(); v != nil {
		c.EnforcingConsecutive5xx = v.GetValue()
	}
	if v := od.GetConsecutiveGatewayFailure(); v != nil {
		c.ConsecutiveGatewayFailure = v.GetValue()
	}
	if v := od.GetEnforcingConsecutiveGatewayFailure(); v != nil {
		c.EnforcingConsecutiveGatewayFailure = v.GetValue()
	}
	if v := od.GetBaseEjectionTime(); v != nil {
		c.BaseEjectionTime = v.AsDuration()
	}
	if v := od.GetMaxEjectionTime(); v != nil {
		c.MaxEjectionTime = v.AsDuration()
	}
	if v := od.GetMaxEjectionPercent(); v != nil {
		c.MaxEjectionPercent = v.GetValue()
	}
	if v := od.GetInterval(); v != nil {
		c.Interval = v.AsDuration()
	}
	return c
}

// outlierState is per upstream address and survives EDS updates.
type outlierState struct {
	c5xx         atomic.Uint32
	cgw          atomic.Uint32
	ejections    atomic.Uint32
	ejectedUntil atomic.Int64 // unix nanos; 0 = not ejected
	// unejectedAt is when the last ejection ended (observed lazily); the
	// ejection multiplier decays by one per healthy interval since then.
	unejectedAt atomic.Int64
}

// outlierGroup is per endpoint set: config, clock and the ejected count used
// for max_ejection_percent.
type outlierGroup struct {
	cfg     *OutlierConfig
	now     func() int64
	ejected atomic.Int32
	total   int32
}

// ReportResult feeds outlier detection with the outcome of one request: an
// HTTP status, or err != nil for a local-origin failure (connect failure,
// reset, timeout), which Envoy maps to a gateway error. Consecutive 5xx or
// gateway errors over the threshold eject the host for base_ejection_time ×
// number of ejections (capped by max_ejection_time), unless that would exceed
// max_ejection_percent of the cluster (at least one host can always be ejected).
// Like Envoy, the multiplier drops by one for every interval the host spent
// un-ejected.
func (e *Endpoint) ReportResult(status int, err error) {
	st, g := e.od, e.group
	if st == nil || g == nil || g.cfg == nil {
		return
	}
	if err != nil {
		status = 503
	}
	if status < 500 {
		if st.c5xx.Load() != 0 {
			st.c5xx.Store(0)
		}
		if st.cgw.Load() != 0 {
			st.cgw.Store(0)
		}
		return
	}
	cfg := g.cfg
	n5 := st.c5xx.Add(1)
	gw := status == 502 || status == 503 || status == 504
	var ngw uint32
	if gw {
		ngw = st.cgw.Add(1)
	} else if st.cgw.Load() != 0 {
		st.cgw.Store(0)
	}
	switch {
	case cfg.Consecutive5xx > 0 && n5 >= cfg.Consecutive5xx && enforce(cfg.EnforcingConsecutive5xx):
	case gw && cfg.ConsecutiveGatewayFailure > 0 && ngw >= cfg.ConsecutiveGatewayFailure && enforce(cfg.EnforcingConsecutiveGatewayFailure):
	default:
		return
	}
	st.c5xx.Store(0)
	st.cgw.Store(0)
	g.eject(st)
}

// Ejected reports whether the endpoint is currently ejected.
func (e *Endpoint) Ejected() bool {
	if e.od == nil {
		return false
	}
	return !e.od.available(e.group)
}

func enforce(pct uint32) bool {
	return pct >= 100 || (pct > 0 && rand.Uint32N(100) < pct)
}

func (g *outlierGroup) eject(st *outlierState) {
	if st.ejectedUntil.Load() != 0 {
		return
	}
	ej := g.ejected.Load()
	if ej > 0 && g.total > 0 && uint32(int64(ej)*100/int64(g.total)) >= g.cfg.MaxEjectionPercent {
		return
	}
	now := g.now()
	if since := st.unejectedAt.Load(); since != 0 && g.cfg.Interval > 0 {
		if decay := (now - since) / int64(g.cfg.Interval); decay > 0 {
			if e := int64(st.ejections.Load()) - decay; e > 0 {
				st.ejections.Store(uint32(e))
			} else {
				st.ejections.Store(0)
			}
		}
	}
	n := st.ejections.Add(1)
	d := g.cfg.BaseEjectionTime * time.Duration(n)
	if limit := max(g.cfg.MaxEjectionTime, g.cfg.BaseEjectionTime); d > limit {
		d = limit
	}
	if st.ejectedUntil.CompareAndSwap(0, now+int64(d)) {
		g.ejected.Add(1)
	}
}

// available un-ejects lazily once the ejection time has passed, so no timer
// goroutine is needed; the clock is read only for ejected hosts.
func (st *outlierState) available(g *outlierGroup) bool {
	u := st.ejectedUntil.Load()
	if u == 0 {
		return true
	}
	if g == nil {
		return false
	}
	now := g.now()
	if now < u {
		return false
	}
	if st.ejectedUntil.CompareAndSwap(u, 0) {
		st.unejectedAt.Store(u) // the ejection ended at u, whenever we notice
		g.ejected.Add(-1)
	}
	return true
}
