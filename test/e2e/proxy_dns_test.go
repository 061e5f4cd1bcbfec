package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/testenv"
)

const dnsServices = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.11.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mysql, namespace: db}
spec:
  hosts: [mysql.db.svc.cluster.local]
  addresses: [10.96.7.7]
  ports: [{number: 3306, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.20.1}]
`

// TestProxyDNS: weft-proxy's DNS proxy answers mesh names (FQDN, short
// forms, auto-allocated VIPs, TCP services) from the config weftd pushes,
// checked with the real dig client; a config change reaches DNS with the push.
func TestProxyDNS(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatalf("dig not installed (.ci/run installs dnsutils)")
	}
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"svc.yaml": dnsServices}})
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, wd.XDSAddr.String(), func(cfg *agent.Config) {
		cfg.DNSAddr = "127.0.0.1:0"
		cfg.DNSResolvConf = resolv
	})
	host, port, _ := net.SplitHostPort(p.DNSAddr())
	dig := func(args ...string) string {
		out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil {
			return "dig failed: " + err.Error() + ": " + string(out)
		}
		return strings.TrimSpace(string(out))
	}
	vip := wd.Model().Service("reviews.default.svc.cluster.local").Addresses[0]
	for _, name := range []string{"reviews.default.svc.cluster.local", "reviews", "reviews.default", "reviews.default.svc.cluster.local."} {
		testenv.Eventually(t, 5*time.Second, func() error {
			if got := dig(name, "A", "+short"); got != vip {
				return fmt.Errorf("dig %s: %q, want %s", name, got, vip)
			}
			return nil
		})
	}
	if got := dig("mysql.db.svc.cluster.local", "A", "+short", "+tcp"); got != "10.96.7.7" {
		t.Fatalf("dig mysql over TCP: %q", got)
	}
	if got := dig("mysql.db", "A", "+short"); got != "10.96.7.7" {
		t.Fatalf("dig mysql.db (other namespace, ns-qualified short name): %q", got)
	}
	if got := dig("reviews.default.svc.cluster.local", "AAAA"); !strings.Contains(got, "status: NOERROR") || strings.Contains(got, "ANSWER: 1") {
		t.Fatalf("AAAA for an IPv4-only mesh host must be NODATA:\n%s", got)
	}

	// A new ServiceEntry reaches DNS with the normal push.
	testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "ratings.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  addresses: [10.96.8.8]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.12.1}]
`)
	testenv.Eventually(t, 5*time.Second, func() error {
		if got := dig("ratings", "A", "+short"); got != "10.96.8.8" {
			return fmt.Errorf("dig ratings after the push: %q", got)
		}
		return nil
	})
}
