//go:build linux

package capture

// Test-only helpers for running real traffic through real iptables rules in
// throw-away network namespaces. Two mechanisms, each where it fits:
//
//   - (*netns).do runs a function on a goroutine whose OS thread has
//     setns'd into the namespace. Sockets created there belong to the
//     namespace for life, and processes it starts (iptables-restore)
//     inherit the thread's namespace. The goroutine never unlocks its
//     thread, so the Go runtime discards the thread when it exits instead
//     of reusing one stuck in the wrong namespace.
//   - (*netns).start / run re-execute the test binary under
//     "ip netns exec" in TestHelperProcess, for code that must run as
//     another user (the proxy's uid 1337): owner matches look at the
//     socket's uid, so it has to be a separate process.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const helperEnv = "WEFT_CAPTURE_HELPER"

// requireNetns skips unless the test can create namespaces and run
// iptables: it needs root (CI runs as root).
func requireNetns(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces are Linux-only")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns capture tests need root (CI runs them as root): creating namespaces and iptables rules")
	}
	if testing.Short() {
		t.Skip("netns tests skipped in -short mode")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 'ip' not installed")
	}
	reapStaleNamespaces()
}

var (
	nsCounter atomic.Int64
	reapOnce  sync.Once
)

// reapStaleNamespaces deletes weft-t-<pid>-* namespaces whose test process
// no longer exists (a run killed with SIGKILL cannot clean up after itself).
func reapStaleNamespaces() {
	reapOnce.Do(func() {
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			f := strings.Split(e.Name(), "-")
			if len(f) != 4 || f[0] != "weft" || f[1] != "t" {
				continue
			}
			if _, err := os.Stat("/proc/" + f[2]); errors.Is(err, os.ErrNotExist) {
				_ = exec.Command("ip", "netns", "del", e.Name()).Run()
			}
		}
	})
}

type netns struct {
	t    *testing.T
	name string
}

// newNetns creates a uniquely named namespace with lo up and deletes it in
// t.Cleanup, whatever the test's outcome.
func newNetns(t *testing.T) *netns {
	t.Helper()
	name := fmt.Sprintf("weft-t-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add unavailable here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	n := &netns{t: t, name: name}
	n.ip("link", "set", "lo", "up")
	return n
}

// ip runs "ip -n <ns> args..." and fails the test on error.
func (n *netns) ip(args ...string) {
	n.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

// do runs fn with the calling OS thread inside the namespace.
func (n *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: see the file comment.
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/run/netns", n.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// must is do for setup steps that cannot fail.
func (n *netns) must(fn func() error) {
	n.t.Helper()
	if err := n.do(fn); err != nil {
		n.t.Fatal(err)
	}
}

// helperCmd re-executes the test binary in the namespace as TestHelperProcess.
func (n *netns) helperCmd(mode string, uid uint32, env ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", n.name, exe, "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "WEFT_HELPER_UID="+strconv.Itoa(int(uid)))
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// start runs a long-lived helper, waits for it to print "ready" and kills
// it in t.Cleanup (registered after the namespace's, so it runs first).
func (n *netns) start(mode string, uid uint32, env ...string) {
	n.t.Helper()
	cmd := n.helperCmd(mode, uid, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// The helper exits when its stdin closes, so it cannot outlive a test
	// process that dies without running cleanups.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			n.t.Fatalf("helper %s did not start: %q, stderr: %s", mode, line, stderr.String())
		}
	case <-time.After(10 * time.Second):
		n.t.Fatalf("helper %s not ready after 10s; stderr: %s", mode, stderr.String())
	}
}

// run runs a short helper and returns its trimmed stdout.
func (n *netns) run(mode string, uid uint32, env ...string) (string, error) {
	cmd := n.helperCmd(mode, uid, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helper %s: %w: %s", mode, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// topology is two namespaces joined by a veth pair:
//
//	app  weft0 10.250.x.y+1/30  <---->  peer weft0 10.250.x.y+2/30
//	     default via peer                   lo: other/32, dns/32
//
// and, for IPv6, fd57:<random>::1/64 <-> ::2/64. Every address and route
// exists only inside these two namespaces.
type topology struct {
	app, peer     *netns
	appIP, peerIP netip.Addr // the veth addresses
	otherIP       netip.Addr // a second peer address, outside the /30
	dnsIP         netip.Addr // the resolv.conf server, or a stand-in
	app6, peer6   netip.Addr
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	requireNetns(t)
	tp := &topology{app: newNetns(t), peer: newNetns(t)}
	block := func() netip.Addr { // a random /30 in 10.250.0.0/16
		k := rand.N(1 << 14)
		return netip.AddrFrom4([4]byte{10, 250, byte(k >> 6), byte(k&63) << 2})
	}
	base := block()
	other := block()
	for other == base {
		other = block()
	}
	tp.appIP, tp.peerIP, tp.otherIP = base.Next(), base.Next().Next(), other.Next()
	tp.dnsIP = resolvConfServer()
	var b6 [16]byte
	b6[0], b6[1] = 0xfd, 0x57
	binary.BigEndian.PutUint32(b6[2:], rand.Uint32())
	b6[15] = 1
	tp.app6 = netip.AddrFrom16(b6)
	tp.peer6 = tp.app6.Next()

	if out, err := exec.Command("ip", "-n", tp.app.name, "link", "add", "weft0", "type", "veth",
		"peer", "name", "weft0", "netns", tp.peer.name).CombinedOutput(); err != nil {
		t.Fatalf("create veth: %v: %s", err, out)
	}
	for _, side := range []struct {
		ns  *netns
		ip  netip.Addr
		ip6 netip.Addr
	}{{tp.app, tp.appIP, tp.app6}, {tp.peer, tp.peerIP, tp.peer6}} {
		side.ns.ip("addr", "add", side.ip.String()+"/30", "dev", "weft0")
		side.ns.ip("addr", "add", side.ip6.String()+"/64", "dev", "weft0", "nodad")
		side.ns.ip("link", "set", "weft0", "up")
	}
	tp.app.ip("route", "add", "default", "via", tp.peerIP.String())
	tp.peer.ip("addr", "add", tp.otherIP.String()+"/32", "dev", "lo")
	if !tp.dnsIP.IsLoopback() {
		tp.peer.ip("addr", "add", tp.dnsIP.String()+"/32", "dev", "lo")
	}
	return tp
}

// resolvConfServer returns the first IPv4 nameserver of /etc/resolv.conf
// (what the app's resolver would use), or a stand-in from 10.250.0.0/16.
func resolvConfServer() netip.Addr {
	data, _ := os.ReadFile("/etc/resolv.conf")
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Is4() {
				return a
			}
		}
	}
	return netip.MustParseAddr("10.250.255.53")
}

// serveTCP listens on addr inside ns and answers every connection with
// "<tag>=<local address>\n": who really accepted it.
func serveTCP(t *testing.T, ns *netns, addr, tag string) {
	t.Helper()
	var ln net.Listener
	ns.must(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s=%s\n", tag, unmapAddrPort(c.LocalAddr()))
			c.Close()
		}
	}()
}

// serveDNS answers every UDP query on addr inside ns with one A record.
func serveDNS(t *testing.T, ns *netns, addr string, answer netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	ns.must(func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go answerDNS(pc, answer)
}

func answerDNS(pc net.PacketConn, answer netip.Addr) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := dnsResponse(buf[:n], answer); resp != nil {
			_, _ = pc.WriteTo(resp, from)
		}
	}
}

func unmapAddrPort(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// dialRead connects from inside ns (as this process: root) and returns the
// first line the server sends.
func dialRead(ns *netns, addr netip.AddrPort) (string, error) {
	var line string
	err := ns.do(func() error {
		var err error
		line, err = readLine("tcp", "", addr.String())
		return err
	})
	return line, err
}

func readLine(network, laddr, addr string) (string, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	if laddr != "" {
		la, err := net.ResolveTCPAddr("tcp", laddr)
		if err != nil {
			return "", err
		}
		d.LocalAddr = la
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// queryA sends a one-question A query over UDP and returns the answer.
func queryA(server netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialTimeout("udp", server.String(), 3*time.Second)
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	id := uint16(rand.Uint32())
	q := dnsQuery(id, "capture.weft.test.")
	if _, err := c.Write(q); err != nil {
		return netip.Addr{}, err
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return netip.Addr{}, err
	}
	resp := buf[:n]
	if n < len(q)+16 || binary.BigEndian.Uint16(resp) != id || binary.BigEndian.Uint16(resp[6:]) != 1 {
		return netip.Addr{}, fmt.Errorf("malformed DNS response %x", resp)
	}
	return netip.AddrFrom4([4]byte(resp[n-4:])), nil
}

func dnsQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD; QDCOUNT=1
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1) // root, QTYPE=A, QCLASS=IN
}

// dnsResponse echoes a query with one A answer pointing at its question.
func dnsResponse(q []byte, answer netip.Addr) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	r := append([]byte(nil), q...)
	r[2], r[3] = 0x81, 0x80                  // QR, RD, RA
	binary.BigEndian.PutUint16(r[6:], 1)     // ANCOUNT
	r = append(r, 0xc0, 12, 0, 1, 0, 1)      // name -> question, A, IN
	r = binary.BigEndian.AppendUint32(r, 30) // TTL
	r = binary.BigEndian.AppendUint16(r, 4)  // RDLENGTH
	a4 := answer.As4()
	return append(r, a4[:]...)
}

// TestHelperProcess is not a test: it is the body of the helper processes
// the netns tests start with "ip netns exec". It is inert unless
// WEFT_CAPTURE_HELPER is set.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	if err := runHelper(mode); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelper(mode string) error {
	// Become the requested user first, as a sidecar does. Done here rather
	// than with SysProcAttr.Credential because the test binary lives in a
	// 0700 build directory that another user could not exec. Since Go 1.16
	// syscall.Setuid applies to every thread of the process.
	if uid, _ := strconv.Atoi(os.Getenv("WEFT_HELPER_UID")); uid != 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return err
		}
		if err := syscall.Setgid(uid); err != nil {
			return err
		}
		if err := syscall.Setuid(uid); err != nil {
			return err
		}
	}
	switch mode {
	case "proxy":
		return miniProxy()
	case "dial":
		line, err := readLine("tcp", os.Getenv("WEFT_HELPER_LADDR"), os.Getenv("WEFT_HELPER_ADDR"))
		if err != nil {
			return err
		}
		fmt.Println(line)
		return nil
	case "dns":
		a, err := queryA(netip.MustParseAddrPort(os.Getenv("WEFT_HELPER_ADDR")))
		if err != nil {
			return err
		}
		fmt.Println(a)
		return nil
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// proxyDNSAnswer is what the mini proxy's DNS listener answers, so a test
// can tell it from the real server's answer.
var proxyDNSAnswer = netip.MustParseAddr("10.53.53.53")

// miniProxy stands in for weft-proxy: it accepts on the capture ports and
// answers "orig=<original destination> via=<port>".
func miniProxy() error {
	for _, port := range []uint16{DefaultOutboundPort, DefaultInboundPort, DefaultDNSPort} {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				orig, err := OriginalDst(c)
				if err != nil {
					fmt.Fprintf(c, "error=%v\n", err)
				} else {
					fmt.Fprintf(c, "orig=%s via=%d\n", orig, port)
				}
				c.Close()
			}
		}()
	}
	// UDP on 127.0.0.1 exactly, as Istio's DNS proxy: a wildcard socket
	// would answer from the client-facing address, which does not match
	// the conntrack reply tuple, so the REDIRECT would not be reversed and
	// the client would drop the answer.
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", DefaultDNSPort))
	if err != nil {
		return err
	}
	go answerDNS(pc, proxyDNSAnswer)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes stdin or dies
	return nil
}

// natSave returns the nat table as backend b's iptables-save prints it,
// from inside ns, for IPv4 or IPv6.
func natSave(ns *netns, b Backend, v6 bool) (string, error) {
	t, err := toolFor(b, v6)
	if err != nil {
		return "", err
	}
	var out string
	err = ns.do(func() error {
		var err error
		out, err = t.saveAll(context.Background())
		return err
	})
	// Keep only rule and chain lines: the header has a timestamp.
	var keep []string
	for line := range strings.Lines(out) {
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, ":") && len(f) >= 2:
			keep = append(keep, f[0]+" "+f[1]) // without [packets:bytes]
		case strings.HasPrefix(line, "-A"), strings.HasPrefix(line, "*"):
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	return strings.Join(keep, "\n"), err
}
