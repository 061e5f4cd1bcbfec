package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCaptureCommand: `weft-proxy capture install` puts the transparent
// mode rules into a host's nat table, `plan` prints them without touching
// the kernel, `remove` takes them out again (twice is fine), and a bad flag
// is refused before anything changes. The "host" is a fresh network
// namespace.
func TestCaptureCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables (CI runs as root)")
	}
	for _, tool := range []string{"ip", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (.ci/run installs iproute2 and iptables)", tool)
		}
	}
	bin := buildProxy(t)
	ns := fmt.Sprintf("weftcap%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	in := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	nat := func() string {
		out, err := in("iptables-save", "-t", "nat")
		if err != nil {
			t.Fatalf("iptables-save: %v %s", err, out)
		}
		return out
	}

	out, err := in(bin, "capture", "plan", "--proxy-uid", "1337", "--dns")
	if err != nil || !strings.Contains(out, "--to-ports 15001") || !strings.Contains(out, "--to-ports 15053") {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if strings.Contains(nat(), "WEFT_") {
		t.Fatal("plan changed the kernel's rules")
	}
	if out, err := in(bin, "capture", "install", "--proxy-uid", "0"); err == nil || !strings.Contains(out, "non-root uid") {
		t.Fatalf("uid 0 accepted: %v %s", err, out)
	}
	if out, err := in(bin, "capture", "install", "--proxy-uid", "1337", "--dns", "--exclude-outbound-cidrs", "169.254.169.254/32"); err != nil {
		t.Fatalf("install: %v %s", err, out)
	}
	rules := nat()
	for _, want := range []string{"-A OUTPUT -p tcp -j WEFT_OUTPUT", "-A PREROUTING -p tcp -j WEFT_INBOUND", "--to-ports 15006",
		"--uid-owner 1337", "-d 169.254.169.254/32 -j RETURN", "--to-ports 15053"} {
		if !strings.Contains(rules, want) {
			t.Errorf("installed rules lack %q:\n%s", want, rules)
		}
	}
	// A second install (e.g. a restarted service) replaces, not duplicates.
	if out, err := in(bin, "capture", "install", "--proxy-uid", "1337"); err != nil {
		t.Fatalf("re-install: %v %s", err, out)
	}
	if n := strings.Count(nat(), "-A OUTPUT -p tcp -j WEFT_OUTPUT"); n != 1 {
		t.Fatalf("after re-install the OUTPUT jump appears %d times", n)
	}
	for i := 0; i < 2; i++ {
		if out, err := in(bin, "capture", "remove"); err != nil {
			t.Fatalf("remove #%d: %v %s", i+1, err, out)
		}
	}
	if rules := nat(); strings.Contains(rules, "WEFT_") {
		t.Fatalf("rules left after remove:\n%s", rules)
	}
}
