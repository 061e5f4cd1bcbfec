package agent

// Istio's two metrics ports, for Prometheus to scrape from outside the host
// (the admin port stays on loopback): 15090 serves the proxy's own stats,
// 15020 merges the proxy's stats with the application's metrics (what
// Istio's "metrics merging" does for prometheus.io/* annotations), plus the
// readiness endpoint like istio-agent's 15020.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/proxy/health"
)

// maxAppMetrics bounds what is read from the application's metrics endpoint.
const maxAppMetrics = 16 << 20

// statsServers are the 15090 / 15020 listeners (either may be absent).
type statsServers struct {
	srvs []*http.Server
	lns  []net.Listener
}

func (a *Agent) listenStats() error {
	add := func(addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			a.stats.close()
			return fmt.Errorf("agent: metrics listener %s: %w", addr, err)
		}
		a.stats.lns = append(a.stats.lns, ln)
		a.stats.srvs = append(a.stats.srvs, &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second})
		return nil
	}
	if a.cfg.StatsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/stats/prometheus", a.metrics.Handler())
		if err := add(a.cfg.StatsAddr, mux); err != nil {
			return err
		}
	}
	if a.cfg.MergedMetricsAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/stats/prometheus", a.serveMerged)
		mux.Handle("/healthz/ready", health.ReadyHandler(func() error {
			if ok, why := a.ready(); !ok {
				return errors.New(why)
			}
			return nil
		}))
		if err := add(a.cfg.MergedMetricsAddr, mux); err != nil {
			return err
		}
	}
	return nil
}

func (s *statsServers) serve() {
	for i, srv := range s.srvs {
		go func() { _ = srv.Serve(s.lns[i]) }()
	}
}

func (s *statsServers) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, srv := range s.srvs {
		_ = srv.Shutdown(ctx)
	}
	for _, ln := range s.lns {
		ln.Close()
	}
	s.srvs, s.lns = nil, nil
}

// serveMerged writes the proxy's metrics, then the application's (text
// exposition format). An application that cannot be scraped does not fail
// the scrape: its part is replaced by a comment and
// weft_app_metrics_scrape_ok 0, so the proxy's own series keep flowing.
func (a *Agent) serveMerged(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	rec := &bufferWriter{h: http.Header{}, b: &buf}
	req := r.Clone(r.Context())
	req.Header.Set("Accept", "text/plain") // text format: concatenable
	req.Header.Del("Accept-Encoding")
	a.metrics.Handler().ServeHTTP(rec, req)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
	if a.cfg.AppMetricsURL == "" {
		return
	}
	ok := 1
	body, err := a.scrapeApp(r.Context())
	if err != nil {
		ok = 0
		fmt.Fprintf(w, "# weft-proxy: application metrics at %s not scraped: %s\n", a.cfg.AppMetricsURL, oneLine(err.Error()))
	}
	fmt.Fprintf(w, "# HELP weft_app_metrics_scrape_ok Whether the application's metrics endpoint answered the last merged scrape.\n# TYPE weft_app_metrics_scrape_ok gauge\nweft_app_metrics_scrape_ok %d\n", ok)
	if err == nil {
		_, _ = w.Write(body)
		if len(body) > 0 && body[len(body)-1] != '\n' {
			_, _ = w.Write([]byte{'\n'})
		}
	}
}

func (a *Agent) scrapeApp(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.AppMetricsURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAppMetrics+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAppMetrics {
		return nil, fmt.Errorf("more than %d bytes", maxAppMetrics)
	}
	return b, nil
}

func oneLine(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("\n"), []byte(" ")))
}

// bufferWriter captures a handler's response body.
type bufferWriter struct {
	h    http.Header
	b    *bytes.Buffer
	code int
}

func (w *bufferWriter) Header() http.Header         { return w.h }
func (w *bufferWriter) Write(p []byte) (int, error) { return w.b.Write(p) }
func (w *bufferWriter) WriteHeader(code int)        { w.code = code }
