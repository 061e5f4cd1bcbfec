package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/xds"
)

// TestProxyBinarySIGTERM builds cmd/weft-proxy, runs it on its own loopback
// address with default ports, and sends SIGTERM while a slow request is in
// flight: the request completes with 200 and the process exits 0.
func TestProxyBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"reviews.yaml": reviewsConfig(v1.port, v2.port),
		"vs.yaml":      reviewsVS,
	}})
	// Each proxy on a host can take its own 127.x.y.z with the default ports.
	bind := fmt.Sprintf("127.0.%d.%d", 100+time.Now().Nanosecond()%100, 2+time.Now().Nanosecond()%200)
	var out strings.Builder
	cmd := exec.Command(bin, "--xds-addr", wd.XDSAddr.String(), "--bind-addr", bind,
		"--workload-name", "productpage-bin", "--namespace", "default", "--ip", bind,
		"--labels", "app=productpage,version=v1", "--service-account", "productpage", "--drain-time", "3s")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	admin := "http://" + bind + ":15000"
	testenv.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get(admin + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("ready %d", resp.StatusCode)
		}
		return nil
	})
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: bind + ":15080"})}, Timeout: 10 * time.Second}

	// The node metadata reached weftd: the proxy is listed under its id, in sync.
	testenv.Eventually(t, 5*time.Second, func() error {
		for _, ps := range wd.XDS().Status() {
			if ps.ID == "sidecar~"+bind+"~productpage-bin.default~default.svc.cluster.local" {
				for typ, ts := range ps.PerType {
					if ts.State != xds.StateSynced {
						return fmt.Errorf("%s %s", typ, ts.State)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("proxy not in weftd status")
	})

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, body, _, err := get(c, "http://"+reviewsHost+":9080/slow", map[string]string{"end-user": "jason"})
		res <- result{code, body, err}
	}()
	testenv.Eventually(t, 5*time.Second, func() error {
		if v2.hits.Load() == 0 {
			return fmt.Errorf("request not at the backend yet")
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "v2 /slow" {
		t.Fatalf("in-flight request during SIGTERM: %d %q %v\n%s", r.code, r.body, r.err, out.String())
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("weft-proxy exited with %v\n%s", err, out.String())
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("weft-proxy did not exit after SIGTERM\n%s", out.String())
	}
	if !strings.Contains(out.String(), "draining") {
		t.Errorf("no drain in the log:\n%s", out.String())
	}
}

// TestProxyNACK applies a VirtualService whose generated route uses a retry
// priority weft-proxy does not implement: the proxy NACKs RDS, weftd shows
// NACKED with the reason, and the previous routing keeps serving.
func TestProxyNACK(t *testing.T) {
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{
		"reviews.yaml": reviewsConfig(v1.port, v2.port),
		"vs.yaml":      reviewsVSAllV2,
	}})
	p := startProxy(t, wd.XDSAddr.String(), nil)
	c := p.client()
	bad := strings.Replace(reviewsVS, "  - name: split\n", "  - name: split\n    retries: {attempts: 2, retryRemoteLocalities: true}\n", 1)
	testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "vs.yaml"), bad)
	var detail string
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, ps := range wd.XDS().Status() {
			if !strings.HasPrefix(ps.ID, "sidecar~127.0.0.1~productpage-v1.default") {
				continue
			}
			for _, ts := range ps.PerType {
				if ts.State == xds.StateNacked {
					detail = ts.NackError
					return nil
				}
			}
		}
		return fmt.Errorf("no NACK yet")
	})
	t.Logf("NACK detail: %s", detail)
	if !strings.Contains(detail, "retry_priority") {
		t.Errorf("NACK detail does not name the field: %q", detail)
	}
	// Last good config (all traffic to v2) still serves.
	for i := 0; i < 20; i++ {
		code, body, _, err := get(c, "http://"+reviewsHost+":9080/n", nil)
		if err != nil || code != 200 || body != "v2 /n" {
			t.Fatalf("after NACK: %d %q %v", code, body, err)
		}
	}
	resp, err := http.Get("http://" + p.AdminAddr() + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "previous_priorities") {
		t.Errorf("rejected config shows in config_dump")
	}

	// /drain_listeners stops accepting (and /ready says so); /quitquitquit ends Run.
	for _, path := range []string{"/drain_listeners", "/quitquitquit"} {
		resp, err := http.Post("http://"+p.AdminAddr()+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup's stop
	case <-time.After(5 * time.Second):
		t.Fatal("/quitquitquit did not stop the proxy")
	}
}
