package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/vmbundle"
)

const cartService = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart.shop.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: cart}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: cart, namespace: shop}
spec:
  template: {serviceAccount: cart-sa, labels: {app: cart}, ports: {http: 8080}}
  probe: {periodSeconds: 1, failureThreshold: 1, successThreshold: 1, httpGet: {path: /ready, port: %d}}
`

// TestVMJoinsWithBundle: a host joins in one step from `weftctl vm bundle`:
// the proxy gets its identity with the bundle's token, connects over TLS,
// weftd registers it from the WorkloadGroup, and removes it after the grace
// period once the proxy is gone.
func TestVMJoinsWithBundle(t *testing.T) {
	// The host's app: its readiness endpoint is what the group's probe checks.
	var failing atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "warming caches", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer app.Close()
	appPort := app.Listener.Addr().(*net.TCPAddr).Port
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{
		ConfigFiles:           map[string]string{"cart.yaml": fmt.Sprintf(cartService, appPort)},
		AutoregistrationGrace: 500 * time.Millisecond,
	})
	dir := filepath.Join(t.TempDir(), "bundle")
	if code, out, errOut := weftctl(t, wd, "", "vm", "bundle", "-n", "shop", "--workload-group", "cart", "-o", dir, "--address", "127.0.0.77"); code != 0 {
		t.Fatalf("vm bundle: %d\n%s%s", code, out, errOut)
	}
	b, err := vmbundle.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "", func(cfg *agent.Config) {
		var id agent.Identity
		cfg.IP = ""
		cfg.Labels = nil
		cfg.WorkloadName = "cart-vm-1"
		cfg.HealthAddr = "127.0.0.1:0"
		if err := agent.ApplyBundle(cfg, &id, b); err != nil {
			t.Fatal(err)
		}
	})
	const entry = "cart-127-0-0-77"
	testenv.Eventually(t, 10*time.Second, func() error {
		code, out, errOut := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
		if code != 0 || !strings.Contains(out, entry) || !strings.Contains(out, "127.0.0.77") {
			return fmt.Errorf("host not registered:\n%s%s", out, errOut)
		}
		return nil
	})
	if eps := wd.Model().Endpoints("cart.shop.svc.cluster.local"); len(eps) != 1 || eps[0].Address != "127.0.0.77" || eps[0].ServiceAccount != "cart-sa" {
		t.Fatalf("cart endpoints: %+v", eps)
	}
	// The proxy's own readiness (Istio's 15021).
	if code, body := httpGet(t, "http://"+p.HealthAddr()+"/healthz/ready"); code != 200 {
		t.Fatalf("/healthz/ready: %d %s", code, body)
	}
	// The group's probe runs on the host; its results decide the endpoint's health.
	endpointHealth := func(want model.Health, wantText string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() error {
			eps := wd.Model().Endpoints("cart.shop.svc.cluster.local")
			if len(eps) != 1 || eps[0].Health != want {
				return fmt.Errorf("endpoint health %+v, want %v", eps, want)
			}
			_, out, _ := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
			unhealthy := strings.Contains(out, "unhealthy: ")
			if !strings.Contains(out, "healthy") || unhealthy != (want == model.Unhealthy) {
				return fmt.Errorf("weftctl does not show the host %s:\n%s", wantText, out)
			}
			return nil
		})
	}
	endpointHealth(model.Healthy, "healthy")
	failing.Store(true)
	endpointHealth(model.Unhealthy, "unhealthy with the probe error")
	failing.Store(false)
	endpointHealth(model.Healthy, "healthy again")
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		_, out, _ := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
		if strings.Contains(out, entry) {
			return fmt.Errorf("entry still there after the proxy left:\n%s", out)
		}
		return nil
	})
}
