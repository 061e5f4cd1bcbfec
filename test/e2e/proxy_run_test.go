package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/testenv"
)

// buildProxy builds cmd/weft-proxy once per test into a temp dir.
func buildProxy(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "weft-proxy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/weft-proxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build weft-proxy: %v\n%s", err, out)
	}
	return bin
}

// TestProxyRunWrapper: `weft-proxy run -- app` starts the app only once the
// proxy is ready, gives it HTTP_PROXY, exits with the app's code after
// draining, and never starts the app when the mesh is not reachable.
func TestProxyRunWrapper(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not installed (.ci/run installs it)")
	}
	bin := buildProxy(t)
	be := startBackend(t, "v1")
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"reviews.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: %d}}]
`, be.port)}})
	common := []string{"--xds-addr", wd.XDSAddr.String(), "--bind-addr", "127.0.10.51", "--health-port", "0", "--drain-time", "1s"}

	// A batch job: it calls the mesh through the proxy, then exits 7.
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, append(append([]string{"run"}, common...), "--", "sh", "-c",
		`curl -s --max-time 5 http://reviews.default.svc.cluster.local:9080/hello; echo; exit 7`)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("weft-proxy run: want the app's exit code 7, got %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "v1 /hello") {
		t.Fatalf("the app did not reach the mesh through HTTP_PROXY: stdout %q\nstderr: %s", out.String(), errb.String())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("run took %s", d)
	}

	// SIGTERM to weft-proxy reaches the app; its exit code comes back.
	out.Reset()
	errb.Reset()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd = exec.Command(bin, append(append([]string{"run"}, common...), "--", "sh", "-c",
		`trap 'echo got-term; exit 9' TERM; touch `+ready+`; while :; do sleep 0.05; done`)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() error {
		_, err := os.Stat(ready)
		return err
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if !errors.As(err, &ee) || ee.ExitCode() != 9 || !strings.Contains(out.String(), "got-term") {
		t.Fatalf("SIGTERM forwarding: want the app's exit code 9, got %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}

	// weftd unreachable: the app is never started and the error says why.
	marker := filepath.Join(t.TempDir(), "started")
	out.Reset()
	errb.Reset()
	cmd = exec.Command(bin, "run", "--xds-addr", "127.0.0.1:1", "--bind-addr", "127.0.10.52", "--health-port", "0",
		"--ready-timeout", "1s", "--", "touch", marker)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "not ready after 1s") {
		t.Fatalf("unreachable weftd: want exit 1 and a readiness error, got %v\n%s", err, errb.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the app was started although the proxy never became ready")
	}
}
