package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	status "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/testenv"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMonitoringEndpoints checks weftd's operability surface: /ready,
// /metrics with the metric names dashboards use, /debug/configz and the
// config API's refusal without a token.
func TestMonitoringEndpoints(t *testing.T) {
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"reviews.yaml": reviewsSE,
		"broken.yaml":  "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: []}\n",
	}})
	base := "http://" + wd.MonitoringAddr.String()

	if code, body := httpGet(t, base+"/ready"); code != 200 {
		t.Fatalf("/ready: %d %s", code, body)
	}

	// One real ADS stream, so the per-proxy metrics have something to count.
	stream, node := openADS(t, wd.XDSAddr.String())
	resp := adsRequest(t, stream, &discovery.DiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"})
	if len(resp.GetResources()) == 0 {
		t.Fatalf("ADS: no clusters for a sidecar")
	}
	// NACK it: weftd must count it and show the proxy's error detail.
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "cluster outbound|9080||reviews: unsupported field"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		_, body := httpGet(t, base+"/metrics")
		if !regexp.MustCompile(`(?m)^weft_config_errors [1-9]`).MatchString(body) {
			return fmt.Errorf("/metrics: weft_config_errors should count broken.yaml's errors")
		}
		for _, name := range []string{"weft_config_objects 1", `weft_xds_connected_proxies{type="sidecar"} 1`, `pilot_xds_pushes{type="cds"}`,
			"pilot_xds_push_time_seconds", "pilot_proxy_convergence_time", `pilot_total_xds_rejects{type="cds"} 1`, "go_goroutines", "process_resident_memory_bytes"} {
			if !strings.Contains(body, name) {
				return fmt.Errorf("/metrics lacks %q", name)
			}
		}
		return nil
	})

	code, body := httpGet(t, base+"/debug/configz")
	if code != 200 {
		t.Fatalf("/debug/configz: %d", code)
	}
	var cz struct {
		Objects []struct {
			Kind string          `json:"kind"`
			Name string          `json:"name"`
			Spec json.RawMessage `json:"spec"`
		} `json:"objects"`
		Diagnostics []struct {
			Message string `json:"message"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(body), &cz); err != nil {
		t.Fatalf("configz is not JSON: %v", err)
	}
	if len(cz.Objects) != 1 || cz.Objects[0].Kind != "ServiceEntry" || !strings.Contains(string(cz.Objects[0].Spec), "reviews.default.svc.cluster.local") {
		t.Fatalf("configz objects: %+v", cz.Objects)
	}
	if len(cz.Diagnostics) == 0 {
		t.Fatalf("configz shows no diagnostics for broken.yaml")
	}

	if code, body := httpGet(t, base+"/debug/syncz"); code != 200 || !strings.Contains(body, "NACKED") || !strings.Contains(body, "unsupported field") {
		t.Fatalf("/debug/syncz should show the NACK with its detail: %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/api/v1/objects"); code != http.StatusUnauthorized || !strings.Contains(body, "admin token") {
		t.Fatalf("config API without token: %d %s", code, body)
	}
}

// TestTranslationWarningsVisible: config weftd cannot translate for a proxy
// (here an HTTP/2 error abort) is reported by weftctl analyze, not
// silently dropped.
func TestTranslationWarningsVisible(t *testing.T) {
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - fault: {abort: {http2Error: CANCEL, percentage: {value: 10}}}
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
`
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"reviews.yaml": reviewsSE, "vs.yaml": vs}})
	// Warnings come from generation, which happens when a proxy connects.
	stream, node := openADS(t, wd.XDSAddr.String())
	adsRequest(t, stream, &discovery.DiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", ResourceNames: []string{"9080"}})
	testenv.Eventually(t, 5*time.Second, func() error {
		_, out, errOut := weftctl(t, wd, "", "analyze")
		if !strings.Contains(out, "http2Error") && !strings.Contains(out, "fault.abort") {
			return fmt.Errorf("analyze does not show the untranslatable fault abort:\n%s%s", out, errOut)
		}
		return nil
	})
}

// openADS opens a state-of-the-world ADS stream to a plaintext xDS address
// as a sidecar in namespace default; it is closed when the test ends.
func openADS(t *testing.T, addr string) (discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, *corev3.Node) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stream, &corev3.Node{Id: "sidecar~127.0.0.5~productpage-1.default~default.svc.cluster.local"}
}

// adsRequest sends req and returns the next response.
func adsRequest(t *testing.T, stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, req *discovery.DiscoveryRequest) *discovery.DiscoveryResponse {
	t.Helper()
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("ADS: %v", err)
	}
	return resp
}
