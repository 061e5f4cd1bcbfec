package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/proxy/health"
)

// startHealth serves 15021 /healthz/ready (the proxy's own readiness, as
// Istio's agent does) when cfg.HealthAddr is set; the listener is bound in New
// so a port conflict fails early.
func (a *Agent) listenHealth() error {
	if a.cfg.HealthAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("agent: health listener %s: %w", a.cfg.HealthAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz/ready", health.ReadyHandler(func() error {
		if ok, why := a.ready(); !ok {
			return errors.New(why)
		}
		return nil
	}))
	a.healthSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.healthLn = ln
	return nil
}

// runHealth serves the readiness port and runs the workload probe, reporting
// every change of the workload's health to weftd over the xDS stream.
func (a *Agent) runHealth(ctx context.Context) {
	if a.healthSrv != nil {
		go func() { _ = a.healthSrv.Serve(a.healthLn) }()
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = a.healthSrv.Shutdown(sctx)
		}()
	}
	if a.cfg.Probe == nil {
		return
	}
	p, err := health.New(health.Config{Probe: *a.cfg.Probe, Logger: a.cfg.Logger, OnChange: func(s health.Status) {
		a.client.ReportHealth(s.Healthy, s.LastError)
	}})
	if err != nil {
		a.log.Error("workload probe not started", "err", err)
		return
	}
	go func() { _ = p.Run(ctx) }()
}

// HealthAddr is the readiness listener's address ("" when off).
func (a *Agent) HealthAddr() string {
	if a.healthLn == nil {
		return ""
	}
	return a.healthLn.Addr().String()
}
