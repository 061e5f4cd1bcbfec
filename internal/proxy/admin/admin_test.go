package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

func fixture(t *testing.T) *runtime.Holder {
	t.Helper()
	c := &clusterv3.Cluster{
		Name:                 "outbound|9080|v1|reviews.default.svc.cluster.local",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9081}}}}}}}}}}}
	rc := &routev3.RouteConfiguration{Name: "9080"}
	s, err := runtime.Build(nil, c, cla, rc)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.NewHolder(s)
}

func TestEndpoints(t *testing.T) {
	var lv slog.LevelVar
	quit := make(chan struct{}, 1)
	s := &Server{cfg: Config{
		Holder: fixture(t), Level: &lv, Logger: slog.Default(),
		Quit:  func() { quit <- struct{}{} },
		Ready: func() (bool, string) { return false, "not ready: waiting for LDS" },
		Status: func() xdsclient.Status {
			return xdsclient.Status{Types: map[string]xdsclient.TypeStatus{
				xdsclient.ClusterType: {Version: "c1", LastACK: time.Unix(1700000000, 0)}}}
		},
	}}
	h := s.Handler()
	do := func(method, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, body := do("GET", "/ready"); code != 503 || !strings.Contains(body, "LDS") {
		t.Errorf("/ready: %d %q", code, body)
	}
	code, body := do("GET", "/config_dump")
	var dump map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &dump) != nil {
		t.Fatalf("/config_dump: %d %.300s", code, body)
	}
	// protojson's whitespace is deliberately unstable between builds: compare compacted JSON.
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(body)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"dynamic_active_clusters"`, `"version_info":"c1"`, `"last_updated":"2023-11-14T22:13:20Z"`,
		`"dynamic_route_configs"`, `"dynamic_endpoint_configs"`, "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"} {
		if !strings.Contains(compact.String(), want) {
			t.Errorf("/config_dump lacks %s", want)
		}
	}
	if _, body := do("GET", "/clusters"); !strings.Contains(body, "outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::health_flags::healthy") {
		t.Errorf("/clusters: %s", body)
	}
	if code, _ := do("GET", "/logging?level=debug"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /logging?level= changed state: %d", code)
	}
	if code, _ := do("POST", "/logging?level=debug"); code != 200 || lv.Level() != slog.LevelDebug {
		t.Errorf("POST /logging: %d level %v", code, lv.Level())
	}
	if code, _ := do("GET", "/quitquitquit"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit: %d", code)
	}
	if code, _ := do("POST", "/quitquitquit"); code != 200 {
		t.Errorf("POST /quitquitquit: %d", code)
	}
	select {
	case <-quit:
	case <-time.After(2 * time.Second):
		t.Error("quit not called")
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "10.1.2.3:15000", "localhost:15000"} {
		if s, err := Listen(Config{Addr: addr}); err == nil {
			s.ln.Close()
			t.Errorf("%s accepted", addr)
		}
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close()
}
