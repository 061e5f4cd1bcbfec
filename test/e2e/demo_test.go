package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// demoAddrs are the workloads' addresses (examples/shop/config/services.yaml,
// scripts/demo.sh); every port of their proxies is bound there.
var demoAddrs = []string{"127.0.77.10", "127.0.77.11", "127.0.77.20", "127.0.77.21", "127.0.77.22", "127.0.77.30"}

// demoCmd prepares scripts/demo.sh as `make demo` runs it, with the
// binaries built into a temp dir and weftd on free ports. The script runs
// in its own process group, as in a terminal; the test's deadline sends it
// SIGTERM, so its traps still clean up.
func demoCmd(t *testing.T, ctx context.Context, env ...string) (*exec.Cmd, []string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	weftd := []string{freeAddr(t), freeAddr(t)}
	cmd := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "DEMO_BIN="+bin, "DEMO_SECURE_ADDR="+weftd[0], "DEMO_MON_ADDR="+weftd[1]), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	return cmd, weftd
}

// requireCleanedUp: no process of the demo listens any more, and its work
// dir (the temp files: data dir, tokens, bundle, logs) is gone.
func requireCleanedUp(t *testing.T, out string, weftd []string) {
	t.Helper()
	work := regexp.MustCompile(`/\S*weft-demo\.[A-Za-z0-9]+`).FindString(out)
	if work == "" {
		t.Fatalf("the demo did not say where its files are:\n%s", out)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("work dir %s left behind (%v)", work, err)
	}
	addrs := append([]string{}, weftd...)
	for _, a := range demoAddrs {
		addrs = append(addrs, a+":15000", a+":15021", a+":15080")
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the demo ended", a)
		}
	}
}

// TestDemo runs the README's first command the way a newcomer does (with a
// duration so it ends by itself) and requires every one of its checks to
// pass and everything it started to be gone afterwards.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs the whole demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd, weftd := demoCmd(t, ctx, "DEMO_DURATION=30s")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"all ", " checks passed",
		"ANSWERED BY", "Where to look next", // the live view and the pointers
		"[ok]   canary shifted", "[ok]   the live view shows the shift",
		"[ok]   AuthorizationPolicy", "[ok]   mTLS on every proxy-to-proxy hop",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "[FAIL]") {
		t.Errorf("a demo check failed:\n%s", out.String())
	}
	requireCleanedUp(t, out.String(), weftd)
}

// TestDemoInterrupted: Ctrl-C (SIGINT to the foreground process group, as a
// terminal sends it) during the live view stops every process and removes
// every file the demo created.
func TestDemoInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs the demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, weftd := demoCmd(t, ctx)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var mu sync.Mutex
	var out strings.Builder
	text := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	live, scanned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		var once sync.Once
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.HasPrefix(sc.Text(), "ROUTE ") { // the first frame of the live view
				once.Do(func() { close(live) })
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	select {
	case <-live:
	case err := <-done:
		<-scanned
		t.Fatalf("demo ended before its live view: %v\n%s", err, text())
	case <-ctx.Done():
		t.Fatalf("no live view within the deadline:\n%s", text())
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("demo still running 30s after Ctrl-C:\n%s", text())
	}
	<-scanned
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("after Ctrl-C: want exit code 130, got %v\n%s", err, text())
	}
	requireCleanedUp(t, text(), weftd)
}
