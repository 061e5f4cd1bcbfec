package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// 15090 serves the proxy's stats; 15020 merges them with the application's
// and keeps serving the proxy's when the application is down.
func TestStatsPorts(t *testing.T) {
	var appDown atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if appDown.Load() {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "# TYPE shop_orders_total counter\nshop_orders_total 7")
	}))
	defer app.Close()
	a, err := New(Config{XDSAddr: "127.0.0.1:1", AdminAddr: "127.0.0.1:0", StatsAddr: "127.0.0.1:0", MergedMetricsAddr: "127.0.0.1:0",
		AppMetricsURL: app.URL + "/metrics", DrainTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	a.metrics.Dest(0, "outbound|9080||reviews.default.svc.cluster.local").Request(200, 0, time.Millisecond, 1, 1)

	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	statsAddr, mergedAddr := a.stats.lns[0].Addr().String(), a.stats.lns[1].Addr().String()
	if code, body := get(statsAddr, "/stats/prometheus"); code != 200 || !strings.Contains(body, "istio_requests_total{") || strings.Contains(body, "shop_orders_total") {
		t.Fatalf("15090: %d %.300s", code, body)
	}
	code, body := get(mergedAddr, "/stats/prometheus")
	if code != 200 || !strings.Contains(body, "istio_requests_total{") || !strings.Contains(body, "\nshop_orders_total 7\n") ||
		!strings.Contains(body, "weft_app_metrics_scrape_ok 1") {
		t.Fatalf("15020 merged: %d %.2000s", code, body)
	}
	appDown.Store(true)
	code, body = get(mergedAddr, "/stats/prometheus")
	if code != 200 || !strings.Contains(body, "istio_requests_total{") || !strings.Contains(body, "weft_app_metrics_scrape_ok 0") || strings.Contains(body, "shop_orders_total") {
		t.Fatalf("15020 with the app down: %d %.2000s", code, body)
	}
	if code, _ := get(mergedAddr, "/healthz/ready"); code != 503 {
		t.Fatalf("readiness without xDS: %d, want 503", code)
	}
}
