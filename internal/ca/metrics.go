package ca

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics uses Istio's citadel_server_* names so existing dashboards work.
type metrics struct {
	csr, authFail, success, parseErr, signErr prometheus.Counter
	refusals                                  *prometheus.CounterVec
	rootExpiry                                prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		csr:      counter("citadel_server_csr_count", "The number of certificate signing requests received."),
		authFail: counter("citadel_server_authentication_failure_count", "The number of certificate requests refused because the caller could not be authenticated or authorized."),
		success:  counter("citadel_server_success_cert_issuance_count", "The number of certificates issued."),
		parseErr: counter("citadel_server_csr_parsing_err_count", "The number of certificate requests refused because the CSR was invalid."),
		signErr:  counter("citadel_server_csr_sign_err_count", "The number of certificate requests that failed in signing."),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_ca_refusals_total", Help: "Refused certificate requests by reason.",
		}, []string{"reason"}),
		rootExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "citadel_server_root_cert_expiry_timestamp", Help: "Unix time at which the earliest-expiring root in the trust bundle expires.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	// A second CA on the same registry (tests, a restarted component)
	// shares the counters already registered.
	reuse := func(c prometheus.Collector) (prometheus.Collector, error) {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			return already.ExistingCollector, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ca: register metrics: %w", err)
		}
		return c, nil
	}
	for _, p := range []*prometheus.Counter{&m.csr, &m.authFail, &m.success, &m.parseErr, &m.signErr} {
		c, err := reuse(*p)
		if err != nil {
			return nil, err
		}
		*p = c.(prometheus.Counter)
	}
	c, err := reuse(m.refusals)
	if err != nil {
		return nil, err
	}
	m.refusals = c.(*prometheus.CounterVec)
	if c, err = reuse(m.rootExpiry); err != nil {
		return nil, err
	}
	m.rootExpiry = c.(prometheus.Gauge)
	return m, nil
}

func (m *metrics) observeRoots(bundle []*x509.Certificate) {
	var earliest int64
	for _, r := range bundle {
		if t := r.NotAfter.Unix(); earliest == 0 || t < earliest {
			earliest = t
		}
	}
	m.rootExpiry.Set(float64(earliest))
}
