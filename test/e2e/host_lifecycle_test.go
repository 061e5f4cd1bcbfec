package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/vmbundle"
)

// bgProxy is a weft-proxy binary running in the background, killed at the end of the test.
type bgProxy struct {
	cmd      *exec.Cmd
	out      syncBuffer
	done     chan struct{}
	err      error
	exitedAt time.Time
}

func startBinary(t *testing.T, bin string, args ...string) *bgProxy {
	t.Helper()
	p := &bgProxy{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.exitedAt = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// exitCode waits at most d for the process and returns its exit code.
func (p *bgProxy) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("still running after %s:\n%s", d, p.out.String())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

// randLoopback is an address of its own on lo for a proxy with default
// ports, random so parallel runs (other worktrees, -count) do not collide.
func randLoopback() string {
	return fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(64), rand.IntN(256), 2+rand.IntN(250))
}

// pidAlive reports whether a process exists (and is not a zombie).
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitPIDFile waits for an app to write its pid into file.
func waitPIDFile(t *testing.T, file string) int {
	t.Helper()
	var pid int
	testenv.Eventually(t, 15*time.Second, func() error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return pid
}

// TestRunQuitQuitQuit: in `weft-proxy run` mode, POST /quitquitquit on the
// admin port drains the proxy and stops the app; weft-proxy exits with the
// app's code — 0 for an app that exits cleanly on SIGTERM, 137 for one that
// ignores SIGTERM and is killed after --stop-timeout. And if weft-proxy
// itself is SIGKILLed, the app gets SIGTERM instead of running on alone.
func TestRunQuitQuitQuit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"reviews.yaml": reviewsSE}})
	dir := t.TempDir()
	run := func(bind, stopTimeout, script string) *bgProxy {
		return startBinary(t, bin, "run", "--xds-addr", wd.XDSAddr.String(), "--bind-addr", bind, "--health-port", "0",
			"--drain-time", "500ms", "--stop-timeout", stopTimeout, "--", "sh", "-c", script)
	}
	quit := func(bind string) {
		t.Helper()
		resp, err := http.Post("http://"+bind+":15000/quitquitquit", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/quitquitquit: %d", resp.StatusCode)
		}
	}

	t.Run("app exits on SIGTERM", func(t *testing.T) {
		pidFile, termFile := filepath.Join(dir, "a.pid"), filepath.Join(dir, "a.term")
		bind := randLoopback()
		p := run(bind, "5s", `trap 'touch `+termFile+`; exit 0' TERM; echo $$ > `+pidFile+`; while :; do sleep 0.05; done`)
		pid := waitPIDFile(t, pidFile)
		start := time.Now()
		quit(bind)
		if code := p.exitCode(t, 10*time.Second); code != 0 {
			t.Fatalf("exit code %d, want the app's 0\n%s", code, p.out.String())
		}
		took := time.Since(start)
		if _, err := os.Stat(termFile); err != nil || pidAlive(pid) {
			t.Fatalf("the app did not get SIGTERM and exit (alive=%v): %v", pidAlive(pid), err)
		}
		if !strings.Contains(p.out.String(), "proxy stopped; terminating the app") {
			t.Errorf("log does not say why the app was stopped:\n%s", p.out.String())
		}
		t.Logf("/quitquitquit to exit: %s", took.Round(time.Millisecond))
	})

	t.Run("app ignores SIGTERM", func(t *testing.T) {
		pidFile := filepath.Join(dir, "b.pid")
		bind := randLoopback()
		p := run(bind, "1s", `trap '' TERM; echo $$ > `+pidFile+`; while :; do sleep 0.05; done`)
		pid := waitPIDFile(t, pidFile)
		start := time.Now()
		quit(bind)
		if code := p.exitCode(t, 10*time.Second); code != 137 {
			t.Fatalf("exit code %d, want 137 (SIGKILL after --stop-timeout)\n%s", code, p.out.String())
		}
		took := time.Since(start)
		if took < time.Second || took > 5*time.Second {
			t.Errorf("stopped after %s; want the 1s stop timeout (plus the 500ms drain)", took)
		}
		if pidAlive(pid) {
			t.Errorf("app %d still running", pid)
		}
		if !strings.Contains(p.out.String(), "app still running after SIGTERM; killing it") {
			t.Errorf("no kill in the log:\n%s", p.out.String())
		}
	})

	t.Run("weft-proxy killed", func(t *testing.T) {
		pidFile, termFile := filepath.Join(dir, "c.pid"), filepath.Join(dir, "c.term")
		p := run(randLoopback(), "5s", `trap 'touch `+termFile+`; exit 0' TERM; echo $$ > `+pidFile+`; while :; do sleep 0.05; done`)
		pid := waitPIDFile(t, pidFile)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		p.exitCode(t, 5*time.Second)
		testenv.Eventually(t, 5*time.Second, func() error {
			if _, err := os.Stat(termFile); err != nil {
				return fmt.Errorf("app did not get SIGTERM when weft-proxy died: %v", err)
			}
			if pidAlive(pid) {
				return fmt.Errorf("app %d still running", pid)
			}
			return nil
		})
	})
}

// TestBundleRefused: a host whose bundle cannot work — the token expired,
// the token comes from another weftd, the WorkloadGroup was deleted — gets
// a clear error naming the cause and the fix from weft-proxy, which keeps
// retrying with a growing, bounded back-off (no crash, no retry storm) and
// stops cleanly on SIGTERM.
func TestBundleRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	group := func(name string) string {
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: %s, namespace: shop}
spec:
  template: {serviceAccount: cart-sa, labels: {app: cart}}
`, name)
	}
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"cart.yaml": group("cart"), "gone.yaml": group("gone")}})
	other := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"cart.yaml": group("cart")}})
	bundle := func(wd *testenv.Weftd, grp, ttl string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), grp)
		if code, out, errOut := weftctl(t, wd, "", "vm", "bundle", "-n", "shop", "--workload-group", grp, "-o", dir, "--ttl", ttl, "--address", "127.0.0.1"); code != 0 {
			t.Fatalf("vm bundle: %d %s%s", code, out, errOut)
		}
		return dir
	}

	expired := bundle(wd, "cart", "1s")
	foreign := bundle(wd, "cart", "1h")
	// The same bundle, but with a token minted by another weftd.
	code, tok, errOut := weftctl(t, other, "", "token", "create", "-n", "shop", "--service-account", "cart-sa", "--workload-group", "cart")
	if code != 0 {
		t.Fatalf("token from the other weftd: %s", errOut)
	}
	testenv.WriteFile(t, filepath.Join(foreign, vmbundle.TokenFile), tok)
	gone := bundle(wd, "gone", "1h")
	if err := os.Remove(filepath.Join(wd.ConfigDir, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if code, out, _ := weftctl(t, wd, "", "get", "workloadgroup", "-n", "shop"); code != 0 || strings.Contains(out, "gone") {
			return fmt.Errorf("group still there:\n%s", out)
		}
		return nil
	})
	b, err := vmbundle.Read(expired)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(b.Mesh.TokenExpires.Add(100 * time.Millisecond)))

	tests := []struct {
		name, dir string
		want      []string // in the log
		attempt   *regexp.Regexp
	}{
		{"expired token", expired,
			[]string{"the bundle's bootstrap token has expired", "expired at", "weftctl vm bundle -n shop --workload-group cart", "issued by another weftd"},
			regexp.MustCompile(`bootstrap token refused`)},
		{"token of another weftd", foreign,
			[]string{"bad signature", "issued by another weftd", "weftctl vm bundle"},
			regexp.MustCompile(`bootstrap token refused`)},
		{"WorkloadGroup deleted", gone,
			[]string{"no such WorkloadGroup; create it before hosts join", "PermissionDenied"},
			regexp.MustCompile(`xDS stream ended; reconnecting`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bind := randLoopback()
			p := startBinary(t, bin, "--bundle", tc.dir, "--bind-addr", bind, "--health-port", "0", "--drain-time", "500ms")
			const window = 4 * time.Second
			time.Sleep(window)
			select {
			case <-p.done:
				t.Fatalf("weft-proxy exited (%v); want it to keep retrying:\n%s", p.err, p.out.String())
			default:
			}
			out := p.out.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "panic") {
				t.Errorf("panic in the log:\n%s", out)
			}
			// Back-off: 1s, 2s, 4s... (certificate) or 0.5s, 1s, 2s... (xDS):
			// a handful of attempts in the window, not hundreds.
			n := len(tc.attempt.FindAllStringIndex(out, -1))
			if n < 2 || n > 6 {
				t.Errorf("%d attempts logged in %s; want a few, backing off:\n%s", n, window, out)
			}
			resp, err := http.Get("http://" + bind + ":15000/ready")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("/ready: %d, want 503", resp.StatusCode)
			}
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			if code := p.exitCode(t, 5*time.Second); code != 0 {
				t.Errorf("exit code after SIGTERM: %d", code)
			}
			t.Logf("%d attempts in %s; log:\n%s", n, window, out)
		})
	}
}

// TestExecProbeHangs: a WorkloadGroup exec probe whose command hangs is
// killed at its timeout, every time, with whatever it started; the host is
// reported unhealthy with the timeout as the reason, and no probe process
// is left running.
func TestExecProbeHangs(t *testing.T) {
	marker := fmt.Sprintf("%d.%03d", 30+rand.IntN(60), rand.IntN(1000)) // a sleep only this test runs
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"cart.yaml": `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: cart, namespace: shop}
spec:
  template: {serviceAccount: cart-sa, labels: {app: cart}}
  probe: {periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1, exec: {command: [sh, -c, "sleep ` + marker + ` & sleep ` + marker + `"]}}
`}})
	dir := filepath.Join(t.TempDir(), "bundle")
	if code, out, errOut := weftctl(t, wd, "", "vm", "bundle", "-n", "shop", "--workload-group", "cart", "-o", dir, "--address", "127.0.0.78"); code != 0 {
		t.Fatalf("vm bundle: %d\n%s%s", code, out, errOut)
	}
	b, err := vmbundle.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	startProxy(t, "", func(cfg *agent.Config) {
		var id agent.Identity
		cfg.IP, cfg.Labels, cfg.WorkloadName = "", nil, "cart-vm"
		if err := agent.ApplyBundle(cfg, &id, b); err != nil {
			t.Fatal(err)
		}
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		_, out, _ := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop")
		_, yaml, _ := weftctl(t, wd, "", "get", "workloadentry", "-n", "shop", "-o", "yaml")
		if !strings.Contains(out, "unhealthy: exec probe") || !strings.Contains(yaml, "timeout after 1s") {
			return fmt.Errorf("host not reported unhealthy by the timeout:\n%s", out)
		}
		return nil
	})
	// Let several probes time out, then count what is still running.
	time.Sleep(time.Until(start.Add(4 * time.Second)))
	running := func() []string {
		var left []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if strings.Contains(string(cmdline), marker) && pidAlive(pid) {
				left = append(left, fmt.Sprintf("%d %q", pid, cmdline))
			}
		}
		return left
	}
	// At most the probe in progress (a shell and its two sleeps).
	if left := running(); len(left) > 3 {
		t.Errorf("%d probe processes running after 4 probes; leaked:\n%s", len(left), strings.Join(left, "\n"))
	}
}
