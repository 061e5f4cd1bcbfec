//go:build linux

package e2e

// A small LAN of hosts for the network-namespace e2e tests: every host is a
// network namespace with one veth ("eth0") plugged into a bridge that lives
// in a namespace of its own, so nothing is added to the root namespace's
// links, routes or netfilter tables. Addresses come from a random /24 in
// 10.251.0.0/16 and exist only inside these namespaces.
//
// Everything is named weft-h-<test pid>-<random>-<host> and removed in
// t.Cleanup whatever the outcome: processes first (their process groups,
// then anything still running in the namespace), then the namespaces, then
// /etc/netns/<name>. Leftovers of a test process that was SIGKILLed are
// reaped by the next run (their pid no longer exists).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lan is the bridge and the hosts plugged into it.
type lan struct {
	t      *testing.T
	prefix string // "weft-h-<pid>-<rand>"
	bridge string // namespace holding br0
	subnet netip.Prefix
}

// host is one machine of the LAN.
type host struct {
	lan  *lan
	name string // logical name: "weftd", "vm1", ...
	ns   string // network namespace
	ip   netip.Addr
}

// requireRootNetns skips unless the test can create namespaces, veths,
// bridges and iptables rules: the pattern of internal/proxy/capture's
// namespace tests. CI runs as root, so there it always runs.
func requireRootNetns(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux (network namespaces, veth, bridge, iptables); CI runs it as root")
	}
	if testing.Short() {
		t.Skip("netns test skipped in -short mode")
	}
	for _, tool := range []string{"ip", "iptables", "dig", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (.ci/run installs it)", tool)
		}
	}
	reapStaleHosts()
}

var reapHostsOnce sync.Once

// reapStaleHosts removes weft-h-<pid>-* namespaces (and their /etc/netns
// directories) of test processes that no longer exist.
func reapStaleHosts() {
	reapHostsOnce.Do(func() {
		stale := func(name string) bool {
			f := strings.Split(name, "-")
			if len(f) < 4 || f[0] != "weft" || f[1] != "h" {
				return false
			}
			_, err := os.Stat("/proc/" + f[2])
			return errors.Is(err, os.ErrNotExist)
		}
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if stale(e.Name()) {
				killNetnsPids(e.Name())
				_ = exec.Command("ip", "netns", "del", e.Name()).Run()
			}
		}
		entries, _ = os.ReadDir("/etc/netns")
		for _, e := range entries {
			if stale(e.Name()) {
				_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
			}
		}
		// Work directories: weft-h-<pid>-<name>-<random> (worldReadableDir).
		entries, _ = os.ReadDir(os.TempDir())
		for _, e := range entries {
			if e.IsDir() && stale(e.Name()) {
				_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	})
}

// newLAN creates the bridge namespace and picks the subnet.
func newLAN(t *testing.T) *lan {
	t.Helper()
	requireRootNetns(t)
	l := &lan{
		t:      t,
		prefix: fmt.Sprintf("weft-h-%d-%04x", os.Getpid(), rand.N(1<<16)),
		subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(rand.N(256)), 0}), 24),
	}
	l.bridge = l.prefix + "-lan"
	l.addNetns(l.bridge)
	l.ip(l.bridge, "link", "add", "br0", "type", "bridge")
	l.ip(l.bridge, "link", "set", "br0", "up")
	return l
}

// addNetns creates a namespace with lo up and deletes it in t.Cleanup,
// killing whatever still runs in it first.
func (l *lan) addNetns(name string) {
	l.t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		l.t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	l.t.Cleanup(func() {
		killNetnsPids(name)
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	})
	l.ip(name, "link", "set", "lo", "up")
}

// killNetnsPids SIGKILLs every process still running in the namespace
// (all of them started by this test: the namespace is its own).
func killNetnsPids(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (l *lan) ip(ns string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// addHost plugs a new host into the bridge with address .<last> of the
// subnet and a default route over the LAN (service VIPs such as
// 240.240.0.0/16 must be routable for a connection to start; capture
// redirects them before they leave). resolvConf, when not empty, becomes
// the host's /etc/resolv.conf for processes started with `ip netns exec`.
func (l *lan) addHost(name string, last byte, resolvConf string) *host {
	l.t.Helper()
	h := &host{lan: l, name: name, ns: l.prefix + "-" + name}
	a := l.subnet.Addr().As4()
	a[3] = last
	h.ip = netip.AddrFrom4(a)
	l.addNetns(h.ns)
	port := "p-" + name
	if out, err := exec.Command("ip", "-n", l.bridge, "link", "add", port, "type", "veth",
		"peer", "name", "eth0", "netns", h.ns).CombinedOutput(); err != nil {
		l.t.Fatalf("veth for %s: %v: %s", name, err, out)
	}
	l.ip(l.bridge, "link", "set", port, "master", "br0")
	l.ip(l.bridge, "link", "set", port, "up")
	l.ip(h.ns, "addr", "add", netip.PrefixFrom(h.ip, l.subnet.Bits()).String(), "dev", "eth0")
	l.ip(h.ns, "link", "set", "eth0", "up")
	l.ip(h.ns, "route", "add", "default", "dev", "eth0")
	if resolvConf != "" {
		dir := filepath.Join("/etc/netns", h.ns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolvConf), 0o644); err != nil {
			l.t.Fatal(err)
		}
	}
	return h
}

// command is `ip netns exec <ns> args...` (which also bind-mounts
// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf). Pdeathsig kills the
// process if the test process dies; it fires when the OS thread that
// started the child exits, and nothing in these tests locks and ends
// threads (golang/go#27505), so it fires only with the process.
func (h *host) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}

// run runs a short command in the host (bounded to 30s) and returns its
// stdout; the error carries stderr.
func (h *host) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := h.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %s: %w: %s", h.name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// proc is a long-running process on a host. Its output goes to a buffer
// that the test logs when it fails.
type proc struct {
	h    *host
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error // valid after done
}

// start runs args in the host in its own process group and stops it in
// t.Cleanup (SIGKILL to the group).
func (h *host) start(name string, args ...string) *proc {
	t := h.lan.t
	t.Helper()
	p := &proc{h: h, name: name, done: make(chan struct{})}
	p.cmd = h.command(context.Background(), args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s on %s: %v", name, h.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s on %s did not exit after SIGKILL", name, h.name)
		}
		if t.Failed() {
			t.Logf("--- output of %s on %s:\n%s", name, h.name, p.out.String())
		}
	})
	return p
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// wait waits for the process to exit, at most d.
func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s on %s still running after %s", p.name, p.h.name, d)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// hostBinaries are the programs the netns tests run, built once per test
// into a directory every user can read (the proxies run as uid 1337).
type hostBinaries struct {
	dir                                string
	weftd, weftProxy, weftctl, hostapp string
}

// buildHostBinaries builds weftd, weft-proxy, weftctl and the test app.
func buildHostBinaries(t *testing.T) hostBinaries {
	t.Helper()
	dir := worldReadableDir(t, "bin")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", dir, "./cmd/weftd", "./cmd/weft-proxy", "./cmd/weftctl", "./test/e2e/testdata/hostapp")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return hostBinaries{dir: dir, weftd: filepath.Join(dir, "weftd"), weftProxy: filepath.Join(dir, "weft-proxy"),
		weftctl: filepath.Join(dir, "weftctl"), hostapp: filepath.Join(dir, "hostapp")}
}

// worldReadableDir is a temporary directory (mode 0755, under os.TempDir,
// unlike t.TempDir's 0700 parents) removed in t.Cleanup, or by the next
// run's reapStaleHosts if this process is killed.
func worldReadableDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", fmt.Sprintf("weft-h-%d-%s-", os.Getpid(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chownTree gives a directory tree to uid:gid (a bundle for a proxy
// running as 1337; the token file is 0600).
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
