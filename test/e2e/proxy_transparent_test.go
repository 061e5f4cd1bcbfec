package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/proxy/capture"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/testenv"
)

const netnsChildEnv = "WEFT_E2E_NETNS_CHILD"

const dbConfig = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 3306, name: tcp, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: default}
spec: {address: 127.0.0.1, ports: {tcp: %d}, labels: {app: db}}
`

// TestProxyTransparent runs weftd, weft-proxy in transparent mode and the
// clients in a fresh network namespace with real iptables capture: a client
// calling a service VIP is redirected to 15001, dispatched by original
// destination to the HTTP route (reviews) or tcp_proxy (db).
//
// The test re-executes itself under "unshare --net" so that every socket of
// the process lives in the namespace; the service VIP range is routed over a
// veth so the loopback exemption of the capture rules does not apply.
func TestProxyTransparent(t *testing.T) {
	if os.Getenv(netnsChildEnv) != "1" {
		if runtime.GOOS != "linux" || os.Geteuid() != 0 {
			t.Skip("needs root on Linux (network namespace + iptables)")
		}
		if testing.Short() {
			t.Skip("netns test skipped in -short mode")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("unshare not installed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, unshare, "--net", "--", os.Args[0], "-test.run", "^TestProxyTransparent$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestProxyTransparent") {
			t.Fatalf("transparent test in netns failed: %v", err)
		}
		return
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "wv0", "type", "veth", "peer", "name", "wv1"},
		{"link", "set", "wv0", "up"},
		{"link", "set", "wv1", "up"},
		{"addr", "add", "10.9.9.1/24", "dev", "wv0"},
		{"route", "add", "240.240.0.0/16", "dev", "wv0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	db := startTCPEcho(t)
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"reviews.yaml": reviewsConfig(v1.port, v2.port),
		"vs.yaml":      reviewsVS,
		"db.yaml":      fmt.Sprintf(dbConfig, db),
	}})
	ctx := context.Background()
	rules, err := capture.Install(ctx, capture.Config{
		ProxyUID:             1337, // nobody: the proxy's upstreams go to 127.0.0.1, outside the captured CIDR
		DisableInbound:       true,
		IncludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("240.240.0.0/16")},
	})
	if err != nil {
		t.Fatalf("install capture: %v", err)
	}
	t.Cleanup(func() { _ = rules.Remove(context.Background()) })

	p := startProxy(t, wd.XDSAddr.String(), func(c *agent.Config) { c.Mode = listener.Transparent })
	if _, ok := p.ListenerAddrs()["virtualOutbound"]; !ok {
		t.Fatalf("virtualOutbound not bound: %v", p.ListenerAddrs())
	}

	// The VIPs weftd assigned, from the proxy's own snapshot.
	snap := p.Holder().Load()
	var reviewsVIP, dbVIP string
	for _, n := range snap.Listeners.Names() {
		if strings.HasPrefix(n, "240.240.") && strings.HasSuffix(n, "_3306") {
			dbVIP = strings.TrimSuffix(n, "_3306")
		}
	}
	if rt := snap.RouteTable("9080"); rt != nil {
		for _, vh := range rt.VirtualHosts {
			for _, d := range vh.Domains {
				if strings.HasPrefix(d, "240.240.") && !strings.Contains(d, ":") && strings.HasPrefix(vh.Name, reviewsHost) {
					reviewsVIP = d
				}
			}
		}
	}
	if reviewsVIP == "" || dbVIP == "" {
		t.Fatalf("VIPs not found (reviews %q, db %q); listeners %v", reviewsVIP, dbVIP, snap.Listeners.Names())
	}

	// HTTP to the VIP, no proxy configured in the client: captured.
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", "http://"+reviewsVIP+":9080/t", nil)
		req.Host = reviewsHost + ":9080"
		req.Header.Set("end-user", "jason")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("captured HTTP: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "v2 /t" {
			t.Fatalf("captured HTTP: %d %q", resp.StatusCode, body)
		}
	}
	// TCP to the db VIP: tcp_proxy to the echo backend.
	conn, err := net.DialTimeout("tcp", dbVIP+":3306", 5*time.Second)
	if err != nil {
		t.Fatalf("captured TCP: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("tcp echo via proxy: %q %v", buf, err)
	}
	conn.Close()
	// Telemetry saw both.
	testenv.Eventually(t, 3*time.Second, func() error {
		resp, err := http.Get("http://" + p.AdminAddr() + "/stats/prometheus")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`istio_tcp_connections_closed_total{`, `destination_service="db.default.svc.cluster.local"`, `istio_requests_total{`} {
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("stats lack %s", want)
			}
		}
		return nil
	})
}

// startTCPEcho echoes every connection; it returns the port.
func startTCPEcho(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
