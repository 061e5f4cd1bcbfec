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
	for _, c := range []prometheus.Collector{m.csr, m.authFail, m.success, m.parseErr, m.signErr, m.refusals, m.rootExpiry} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				continue // a second CA on the same registry shares the counters
			}
			return nil, fmt.Errorf("ca: register metrics: %w", err)
		}
	}
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
