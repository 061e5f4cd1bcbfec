package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
`

// TestVMJoinsWithBundle: a host joins in one step from `weftctl vm bundle`:
// the proxy gets its identity with the bundle's token, connects over TLS,
// weftd registers it from the WorkloadGroup, and removes it after the grace
// period once the proxy is gone.
func TestVMJoinsWithBundle(t *testing.T) {
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{
		ConfigFiles:           map[string]string{"cart.yaml": cartService},
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
