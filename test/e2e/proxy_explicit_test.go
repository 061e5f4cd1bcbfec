package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/xds"
)

const reviewsHost = "reviews.default.svc.cluster.local"

func reviewsConfig(v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: %d}, labels: {app: reviews, version: v1}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.0.0.1, ports: {http: %d}, labels: {app: reviews, version: v2}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, v1, v2)
}

const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: split
    route:
    - {destination: {host: reviews.default.svc.cluster.local, subset: v1}, weight: 80}
    - {destination: {host: reviews.default.svc.cluster.local, subset: v2}, weight: 20}
`

const reviewsVSAllV2 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - name: all-v2
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
`

func get(c *http.Client, rawURL string, hdr map[string]string) (int, string, http.Header, error) {
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		return 0, "", nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header, err
}

// TestProxyExplicit runs weftd and weft-proxy (explicit mode) in-process with
// two real backends and drives traffic through the proxy with Go's HTTP
// client and the real curl.
func TestProxyExplicit(t *testing.T) {
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"reviews.yaml": reviewsConfig(v1.port, v2.port),
		"vs.yaml":      reviewsVS,
	}})
	p := startProxy(t, wd.XDSAddr.String(), nil)
	c := p.client()
	base := "http://" + reviewsHost + ":9080"

	t.Run("jason always v2", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			code, body, _, err := get(c, base+"/reviews/1", map[string]string{"end-user": "jason"})
			if err != nil || code != 200 || !strings.HasPrefix(body, "v2 ") {
				t.Fatalf("request %d: %d %q %v", i, code, body, err)
			}
		}
	})

	t.Run("80/20 split", func(t *testing.T) {
		const n = 500
		got := map[string]int{}
		for i := 0; i < n; i++ {
			code, body, _, err := get(c, base+"/reviews/1", nil)
			if err != nil || code != 200 {
				t.Fatalf("request %d: %d %q %v", i, code, body, err)
			}
			got[strings.Fields(body)[0]]++
		}
		// 20% of 500 = 100, sd ~ 9: accept 60..140.
		if got["v2"] < 60 || got["v2"] > 140 || got["v1"]+got["v2"] != n {
			t.Fatalf("split over %d requests: %v, want about 400/100", n, got)
		}
		t.Logf("split: %v", got)
	})

	t.Run("curl -x", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed")
		}
		for i := 0; i < 5; i++ {
			out, err := exec.Command(curl, "-sS", "--max-time", "5", "-x", "http://"+p.HTTPProxyAddr(),
				"-H", "end-user: jason", base+"/reviews/2").CombinedOutput()
			if err != nil || string(out) != "v2 /reviews/2" {
				t.Fatalf("curl: %v %q", err, out)
			}
		}
		// CONNECT through the proxy (curl -p tunnels HTTP over CONNECT).
		out, err := exec.Command(curl, "-sS", "--max-time", "5", "-p", "-x", "http://"+p.HTTPProxyAddr(),
			"-H", "end-user: jason", base+"/tunnel").CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), " /tunnel") {
			t.Fatalf("curl CONNECT: %v %q", err, out)
		}
	})

	t.Run("unknown hosts", func(t *testing.T) {
		// Port 9080 has a route table; an unknown name under it goes to the
		// allow_any virtual host (passthrough: dial the name itself), which
		// fails for a name that does not resolve -> 5xx with a reason, not a hang.
		code, _, h, err := get(c, "http://nope.default.svc.cluster.local:9080/", nil)
		if err != nil || code < 400 || h.Get("x-weft-reason") == "" {
			t.Fatalf("unknown mesh host on a mesh port: %d %v reason=%q", code, err, h.Get("x-weft-reason"))
		}
		// A request for the proxy itself is not passed through (no loop).
		code, _, h, err = get(c, "http://"+p.HTTPProxyAddr()+"/self", nil)
		if err != nil || code != 503 {
			t.Fatalf("request to the proxy itself: %d %v reason=%q", code, err, h.Get("x-weft-reason"))
		}
		// A plain non-mesh host:port (no route table for the port) is
		// passed through: virtualOutbound's default chain is
		// PassthroughCluster (outboundTrafficPolicy ALLOW_ANY).
		code, body, _, err := get(c, fmt.Sprintf("http://127.0.0.1:%d/direct", v1.port), nil)
		if err != nil || code != 200 || body != "v1 /direct" {
			t.Fatalf("passthrough to a non-mesh port: %d %q %v", code, body, err)
		}
	})

	t.Run("admin", func(t *testing.T) {
		resp, err := http.Get("http://" + p.AdminAddr() + "/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var dump struct {
			Configs []map[string]any `json:"configs"`
		}
		if err := json.Unmarshal(body, &dump); err != nil || len(dump.Configs) < 3 {
			t.Fatalf("config_dump: %v\n%.500s", err, body)
		}
		if dump.Configs[0]["@type"] != "type.googleapis.com/envoy.admin.v3.ListenersConfigDump" {
			t.Errorf("first config is %v", dump.Configs[0]["@type"])
		}
		for _, want := range []string{`"virtualOutbound"`, `"0.0.0.0_9080"`, "outbound|9080|v1|" + reviewsHost, "dynamic_active_clusters", "dynamic_route_configs", "last_updated"} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("config_dump lacks %s", want)
			}
		}
		if jq, err := exec.LookPath("jq"); err == nil {
			cmd := exec.Command(jq, "-r", `.configs[0].dynamic_listeners[].name`)
			cmd.Stdin = bytes.NewReader(body)
			out, err := cmd.Output()
			if err != nil || !strings.Contains(string(out), "virtualOutbound") {
				t.Errorf("jq over config_dump: %v %q", err, out)
			}
		}

		resp, err = http.Get("http://" + p.AdminAddr() + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `destination_service="`+reviewsHost+`"`) &&
				strings.Contains(line, `response_code="200"`) && strings.Contains(line, `reporter="source"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no istio_requests_total for reviews/200 in:\n%.3000s", body)
		}
		// jason's requests went to the v2 subset: the source reporter names
		// the answering workload from weftd's EDS metadata.
		v2 := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `reporter="source"`) &&
				strings.Contains(line, `destination_version="v2"`) && strings.Contains(line, `destination_workload="reviews-v2"`) &&
				strings.Contains(line, `destination_canonical_revision="v2"`) && strings.Contains(line, `destination_app="reviews"`) &&
				strings.Contains(line, `destination_canonical_service="reviews"`) && strings.Contains(line, `response_code="200"`) {
				v2 = true
			}
		}
		if !v2 {
			t.Errorf("no source-reporter series with destination_version=\"v2\" in:\n%.3000s", body)
		}
		if !strings.Contains(string(body), "istio_request_duration_milliseconds_bucket{") {
			t.Errorf("no duration histogram")
		}

		resp, err = http.Get("http://" + p.AdminAddr() + "/clusters")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("outbound|9080|v1|%s::127.0.0.1:%d::health_flags::healthy", reviewsHost, v1.port); !strings.Contains(string(body), want) {
			t.Errorf("/clusters lacks %q:\n%.1500s", want, body)
		}

		resp, err = http.Post("http://"+p.AdminAddr()+"/logging?level=debug", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("/logging: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("weftd sees the proxy SYNCED", func(t *testing.T) {
		testenv.Eventually(t, 5*time.Second, func() error {
			for _, ps := range wd.XDS().Status() {
				if !strings.HasPrefix(ps.ID, "sidecar~127.0.0.1~productpage-v1.default") {
					continue
				}
				for typ, ts := range ps.PerType {
					if ts.State != xds.StateSynced {
						return fmt.Errorf("%s: %s %s", typ, ts.State, ts.NackError)
					}
				}
				if len(ps.PerType) < 4 {
					return fmt.Errorf("only %d types", len(ps.PerType))
				}
				return nil
			}
			return fmt.Errorf("proxy not in weftd's status")
		})
	})

	t.Run("VirtualService change applies", func(t *testing.T) {
		testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "vs.yaml"), reviewsVSAllV2)
		start := time.Now()
		testenv.Eventually(t, 10*time.Second, func() error {
			for i := 0; i < 20; i++ {
				code, body, _, err := get(c, base+"/x", nil)
				if err != nil || code != 200 || !strings.HasPrefix(body, "v2 ") {
					return fmt.Errorf("got %d %q %v", code, body, err)
				}
			}
			return nil
		})
		t.Logf("new routing in effect after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("backend killed", func(t *testing.T) {
		v2.stop()
		for i := 0; i < 3; i++ {
			start := time.Now()
			code, body, h, err := get(c, base+"/x", nil)
			if err != nil {
				t.Fatalf("request failed instead of a 5xx: %v", err)
			}
			if code < 500 || h.Get("x-weft-reason") == "" {
				t.Fatalf("got %d %q reason=%q, want 5xx with a reason", code, body, h.Get("x-weft-reason"))
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
			t.Logf("dead backend: %d %s", code, h.Get("x-weft-reason"))
		}
	})
}

// TestProxyGracefulShutdown cancels the proxy while a slow request is in
// flight: the request completes with 200 and the proxy stops.
func TestProxyGracefulShutdown(t *testing.T) {
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"reviews.yaml": reviewsConfig(v1.port, v2.port),
		"vs.yaml":      reviewsVS,
	}})
	p := startProxy(t, wd.XDSAddr.String(), nil)
	c := p.client()
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, body, _, err := get(c, "http://"+reviewsHost+":9080/slow", nil)
		res <- result{code, body, err}
	}()
	// Wait until the backend has the request, then stop the proxy.
	testenv.Eventually(t, 5*time.Second, func() error {
		if v1.hits.Load()+v2.hits.Load() == 0 {
			return fmt.Errorf("not arrived yet")
		}
		return nil
	})
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop(t) }()
	select {
	case r := <-res:
		if r.err != nil || r.code != 200 || !strings.HasSuffix(r.body, "/slow") {
			t.Fatalf("in-flight request: %d %q %v", r.code, r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("proxy stop: %v", err)
	}
	// New connections are refused once drained.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+reviewsHost+":9080/", nil)
	if resp, err := p.client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("proxy still serving after shutdown: %d", resp.StatusCode)
	}
}
