//go:build linux

package capture

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const proxyUID = 1337

// realDNSAnswer is what the peer's "real" DNS server answers.
var realDNSAnswer = netip.MustParseAddr("10.99.99.99")

// backends returns a subtest per iptables flavour installed here.
func forEachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		t.Run(string(b), func(t *testing.T) {
			requireNetns(t)
			if _, err := toolFor(b, false); err != nil {
				t.Skipf("%s backend not installed: %v", b, err)
			}
			fn(t, b)
		})
	}
}

// addForeignRule adds a nat rule Weft does not own; it must survive
// Install, Remove and Cleanup untouched.
const foreignRule = "-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN"

func addForeignRule(t *testing.T, ns *netns, b Backend) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.name, "iptables-"+string(b),
		"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "RETURN").CombinedOutput()
	if err != nil {
		t.Fatalf("add foreign rule: %v: %s", err, out)
	}
}

// TestCaptureNetns drives real traffic through the installed rules: a mini
// proxy (uid 1337) in "app" reports the original destination of whatever
// lands on its capture ports, real servers report what was not captured.
func TestCaptureNetns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		ctx := context.Background()
		tp := newTopology(t)
		serveTCP(t, tp.peer, ":8080", "server")
		serveTCP(t, tp.peer, ":8081", "server")
		serveTCP(t, tp.app, ":9080", "app")
		serveTCP(t, tp.app, ":15021", "app")
		serveTCP(t, tp.app, "127.0.0.1:7070", "app")
		serveDNS(t, tp.peer, netip.AddrPortFrom(tp.dnsIP, 53).String(), realDNSAnswer)
		tp.app.start("proxy", proxyUID)
		addForeignRule(t, tp.app, b)

		cfg := Config{
			ProxyUID: proxyUID, ProxyGID: proxyUID, Backend: b, RedirectDNS: true, IPv6: true,
			ExcludeOutboundPorts: []uint16{8081},
			ExcludeOutboundCIDRs: []netip.Prefix{netip.PrefixFrom(tp.otherIP, 32)},
		}
		var rules *Rules
		tp.app.must(func() (err error) {
			if err := Cleanup(ctx, ""); err != nil { // as weft-proxy does at start
				return err
			}
			rules, err = Install(ctx, cfg)
			return err
		})
		if rules.Backend() != b {
			t.Fatalf("Backend() = %q, want %q", rules.Backend(), b)
		}
		t.Logf("installed:\n%s", rules.Describe())

		ap := netip.AddrPortFrom
		dns := ap(tp.dnsIP, 53)
		type check struct {
			name string
			got  func() (string, error)
			want string
		}
		fromApp := func(to netip.AddrPort) func() (string, error) {
			return func() (string, error) { return dialRead(tp.app, to) }
		}
		fromPeer := func(to netip.AddrPort) func() (string, error) {
			return func() (string, error) { return dialRead(tp.peer, to) }
		}
		asProxy := func(mode string, to netip.AddrPort, env ...string) func() (string, error) {
			return func() (string, error) {
				return tp.app.run(mode, proxyUID, append(env, "WEFT_HELPER_ADDR="+to.String())...)
			}
		}
		captured := []check{
			{"outbound is redirected", fromApp(ap(tp.peerIP, 8080)), fmt.Sprintf("orig=%s via=15001", ap(tp.peerIP, 8080))},
			{"outbound IPv6 is redirected", fromApp(ap(tp.peer6, 8080)), fmt.Sprintf("orig=%s via=15001", ap(tp.peer6, 8080))},
			{"inbound is redirected", fromPeer(ap(tp.appIP, 9080)), fmt.Sprintf("orig=%s via=15006", ap(tp.appIP, 9080))},
			{"inbound IPv6 is redirected", fromPeer(ap(tp.app6, 9080)), fmt.Sprintf("orig=%s via=15006", ap(tp.app6, 9080))},
			{"inbound health port 15021 is excluded", fromPeer(ap(tp.appIP, 15021)), fmt.Sprintf("app=%s", ap(tp.appIP, 15021))},
			{"excluded outbound port reaches the server", fromApp(ap(tp.peerIP, 8081)), fmt.Sprintf("server=%s", ap(tp.peerIP, 8081))},
			{"excluded outbound CIDR reaches the server", fromApp(ap(tp.otherIP, 8080)), fmt.Sprintf("server=%s", ap(tp.otherIP, 8080))},
			{"proxy's own outbound is not redirected", asProxy("dial", ap(tp.peerIP, 8080)), fmt.Sprintf("server=%s", ap(tp.peerIP, 8080))},
			{"app to 127.0.0.1 is not redirected", fromApp(ap(netip.MustParseAddr("127.0.0.1"), 7070)), "app=127.0.0.1:7070"},
			{"app to its own address is not redirected", fromApp(ap(tp.appIP, 9080)), fmt.Sprintf("app=%s", ap(tp.appIP, 9080))},
			{"proxy to the pod's own address goes inbound", asProxy("dial", ap(tp.appIP, 9080)), fmt.Sprintf("orig=%s via=15006", ap(tp.appIP, 9080))},
			{"inbound passthrough from 127.0.0.6 returns", asProxy("dial", ap(tp.appIP, 9080), "WEFT_HELPER_LADDR=127.0.0.6:0"), fmt.Sprintf("app=%s", ap(tp.appIP, 9080))},
			{"DNS over UDP lands on 15053", func() (string, error) {
				var a netip.Addr
				err := tp.app.do(func() (err error) { a, err = queryA(dns); return err })
				return a.String(), err
			}, proxyDNSAnswer.String()},
			{"DNS over TCP lands on 15053", fromApp(dns), fmt.Sprintf("orig=%s via=15053", dns)},
		}
		if !tp.dnsIP.IsLoopback() {
			captured = append(captured, check{"proxy's own DNS query is not redirected", asProxy("dns", dns), realDNSAnswer.String()})
		}
		run := func(t *testing.T, checks []check) {
			t.Helper()
			for _, c := range checks {
				start := time.Now()
				got, err := c.got()
				if d := time.Since(start); d > time.Second {
					t.Logf("%s took %v", c.name, d)
				}
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
				} else if got != c.want {
					t.Errorf("%s: got %q, want %q", c.name, got, c.want)
				}
			}
		}
		t.Run("traffic", func(t *testing.T) { run(t, captured) })

		save := func(v6 bool) string {
			t.Helper()
			s, err := natSave(tp.app, b, v6)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		first4, first6 := save(false), save(true)

		t.Run("install twice is idempotent", func(t *testing.T) {
			tp.app.must(func() (err error) { _, err = Install(ctx, cfg); return err })
			if got := save(false); got != first4 {
				t.Errorf("IPv4 nat table changed on re-install:\n%s\nwas:\n%s", got, first4)
			}
			if got := save(true); got != first6 {
				t.Errorf("IPv6 nat table changed on re-install:\n%s\nwas:\n%s", got, first6)
			}
			if n := strings.Count(first4, "-A OUTPUT -p tcp -j WEFT_OUTPUT"); n != 1 {
				t.Errorf("want exactly one OUTPUT jump, got %d:\n%s", n, first4)
			}
			run(t, captured[:1])
		})

		assertClean := func(t *testing.T) {
			t.Helper()
			for _, v6 := range []bool{false, true} {
				s := save(v6)
				if strings.Contains(s, "WEFT") {
					t.Errorf("WEFT rules left behind (v6=%v):\n%s", v6, s)
				}
				if !v6 && !strings.Contains(s, foreignRule) {
					t.Errorf("foreign rule %q was removed:\n%s", foreignRule, s)
				}
			}
		}
		t.Run("remove", func(t *testing.T) {
			tp.app.must(func() error { return rules.Remove(ctx) })
			assertClean(t)
			run(t, []check{
				{"outbound no longer redirected", fromApp(ap(tp.peerIP, 8080)), fmt.Sprintf("server=%s", ap(tp.peerIP, 8080))},
				{"inbound no longer redirected", fromPeer(ap(tp.appIP, 9080)), fmt.Sprintf("app=%s", ap(tp.appIP, 9080))},
			})
			tp.app.must(func() error { return rules.Remove(ctx) }) // again: no-op
		})

		t.Run("include CIDRs and inbound port list", func(t *testing.T) {
			cfg2 := Config{
				ProxyUID: proxyUID, Backend: b,
				InboundPorts:         []uint16{9080},
				IncludeOutboundCIDRs: []netip.Prefix{netip.PrefixFrom(tp.peerIP, 30).Masked()},
			}
			var r2 *Rules
			tp.app.must(func() (err error) { r2, err = Install(ctx, cfg2); return err })
			checks := []check{
				{"included CIDR is redirected", fromApp(ap(tp.peerIP, 8080)), fmt.Sprintf("orig=%s via=15001", ap(tp.peerIP, 8080))},
				{"destination outside the included CIDRs is not", fromApp(ap(tp.otherIP, 8080)), fmt.Sprintf("server=%s", ap(tp.otherIP, 8080))},
				{"listed inbound port is redirected", fromPeer(ap(tp.appIP, 9080)), fmt.Sprintf("orig=%s via=15006", ap(tp.appIP, 9080))},
				{"unlisted inbound port is not", fromPeer(ap(tp.appIP, 15021)), fmt.Sprintf("app=%s", ap(tp.appIP, 15021))},
			}
			if !tp.dnsIP.IsLoopback() {
				checks = append(checks, check{"DNS is not redirected without RedirectDNS", func() (string, error) {
					var a netip.Addr
					err := tp.app.do(func() (err error) { a, err = queryA(dns); return err })
					return a.String(), err
				}, realDNSAnswer.String()})
			}
			run(t, checks)
			tp.app.must(func() error { return r2.Remove(ctx) })
			assertClean(t)
		})

		t.Run("cleanup after crash", func(t *testing.T) {
			tp.app.must(func() (err error) { _, err = Install(ctx, cfg); return err })
			if !strings.Contains(save(false), "WEFT_OUTPUT") {
				t.Fatal("re-install did not write rules")
			}
			// The *Rules is lost, as after a crash; only the prefix is known.
			tp.app.must(func() error { return Cleanup(ctx, "WEFT") })
			assertClean(t)
		})
	})
}

// TestInstallFailureLeavesNothing makes the IPv6 half fail after the IPv4
// half succeeded and checks that the IPv4 rules are rolled back.
func TestInstallFailureLeavesNothing(t *testing.T) {
	requireNetns(t)
	b, err := detectBackend(context.Background())
	if err != nil {
		t.Skip(err)
	}
	real6, err := toolFor(b, true)
	if err != nil {
		t.Skip(err)
	}
	// A PATH entry whose ip6tables restore always fails.
	dir := t.TempDir()
	for name, script := range map[string]string{
		"ip6tables-" + string(b) + "-restore": "#!/bin/sh\necho 'line 3 failed' >&2\nexit 1\n",
		"ip6tables-" + string(b) + "-save":    "#!/bin/sh\nexec " + real6.save + " \"$@\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	ns := newNetns(t)
	var installErr error
	ns.must(func() error {
		_, installErr = Install(context.Background(), Config{ProxyUID: proxyUID, IPv6: true, Backend: b})
		return nil
	})
	if installErr == nil || !strings.Contains(installErr.Error(), "line 3 failed") {
		t.Fatalf("Install error = %v, want the ip6tables-restore failure", installErr)
	}
	s, err := natSave(ns, b, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "WEFT") {
		t.Errorf("failed Install left IPv4 rules behind:\n%s", s)
	}
}

// TestDetectBackend: a namespace whose rules are in legacy iptables is
// detected as legacy; an empty one as whatever /usr/sbin/iptables is.
func TestDetectBackend(t *testing.T) {
	requireNetns(t)
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		if _, err := toolFor(b, false); err != nil {
			t.Skipf("needs both backends: %v", err)
		}
	}
	empty := newNetns(t)
	var got Backend
	empty.must(func() (err error) { got, err = detectBackend(context.Background()); return err })
	bin, _ := lookPath("iptables")
	if want := flavourOf(bin); got != want {
		t.Errorf("empty namespace: detected %q, want the default %q", got, want)
	}
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		ns := newNetns(t)
		addForeignRule(t, ns, b)
		ns.must(func() (err error) { got, err = detectBackend(context.Background()); return err })
		if got != b {
			t.Errorf("namespace with %s rules: detected %q", b, got)
		}
	}
}
