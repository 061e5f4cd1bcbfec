package capture

import (
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestRenderGolden(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"default", Config{ProxyUID: 1337, ProxyGID: 1337}},
		{"uid_only", Config{ProxyUID: 1337}},
		{"inbound_ports", Config{ProxyUID: 1337, InboundPorts: []uint16{9080, 8080, 9080}}},
		{"no_inbound", Config{ProxyUID: 1337, DisableInbound: true}},
		{"exclusions_dns", Config{
			ProxyUID: 1337, ProxyGID: 1337, RedirectDNS: true,
			ExcludeInboundPorts:  []uint16{22},
			ExcludeOutboundPorts: []uint16{5432, 3306},
			ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("10.1.2.3/8")},
		}},
		{"include_ipv6", Config{
			ProxyUID: 1337, ProxyGID: 1337, IPv6: true, RedirectDNS: true, ChainPrefix: "MESH",
			InboundPort: 16006, OutboundPort: 16001, DNSPort: 16053,
			IncludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10:96::/112")},
			ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.1/32"), netip.MustParsePrefix("fd00::1/128")},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Plan(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Describe()
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("rules differ from %s (run with -update if intended):\n%s", path, got)
			}
		})
	}
}

// TestRenderInvariants checks properties every rule set must have,
// independent of the golden text.
func TestRenderInvariants(t *testing.T) {
	r, err := Plan(Config{ProxyUID: 1337, ProxyGID: 1338, RedirectDNS: true, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, rules := range []string{r.v4, r.v6} {
		lines := strings.Split(strings.TrimSpace(rules), "\n")
		if lines[0] != "*nat" || lines[len(lines)-1] != "COMMIT" {
			t.Errorf("not one nat transaction:\n%s", rules)
		}
		var jumps, ownerReturn, catchAll int
		for i, l := range lines {
			f := strings.Fields(l)
			if len(f) > 1 && f[0] == "-A" && !strings.HasPrefix(f[1], "WEFT_") {
				jumps++
				if f[1] != "PREROUTING" && f[1] != "OUTPUT" {
					t.Errorf("rule in foreign chain %s: %s", f[1], l)
				}
			}
			if l == "-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN" {
				ownerReturn = i
			}
			if l == "-A WEFT_OUTPUT -j WEFT_REDIRECT" {
				catchAll = i
			}
		}
		if jumps != 3 {
			t.Errorf("want 3 jumps from built-in chains, got %d", jumps)
		}
		if ownerReturn == 0 || catchAll < ownerReturn {
			t.Errorf("proxy-owner RETURN (line %d) must precede the catch-all redirect (line %d)", ownerReturn, catchAll)
		}
	}
	if !strings.Contains(r.v6, "-d ::1/128 -j RETURN") || strings.Contains(r.v6, "127.0.0.1") {
		t.Errorf("v6 rules use the wrong loopback:\n%s", r.v6)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{ProxyUID: 1337}
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; "" means valid
	}{
		{"minimal", func(c *Config) {}, ""},
		{"missing uid", func(c *Config) { c.ProxyUID = 0 }, "ProxyUID is required"},
		{"inbound equals outbound", func(c *Config) { c.InboundPort = 15001 }, "InboundPort and OutboundPort are both 15001"},
		{"dns collides", func(c *Config) { c.RedirectDNS = true; c.DNSPort = 15006 }, "InboundPort and DNSPort are both 15006"},
		{"dns port unused", func(c *Config) { c.DNSPort = 15006 }, ""},
		{"inbound disabled frees port", func(c *Config) { c.DisableInbound = true; c.InboundPort = 15001 }, ""},
		{"port zero", func(c *Config) { c.ExcludeOutboundPorts = []uint16{0} }, "ExcludeOutboundPorts contains port 0"},
		{"included and excluded", func(c *Config) { c.InboundPorts = []uint16{8080}; c.ExcludeInboundPorts = []uint16{8080} }, "8080 is both captured"},
		{"always excluded", func(c *Config) { c.InboundPorts = []uint16{15021} }, "15021 is both captured"},
		{"captures own port", func(c *Config) { c.InboundPorts = []uint16{15006} }, "proxy's own port 15006"},
		{"ports with disabled inbound", func(c *Config) { c.InboundPorts = []uint16{80}; c.DisableInbound = true }, "DisableInbound"},
		{"dns excluded", func(c *Config) { c.RedirectDNS = true; c.ExcludeOutboundPorts = []uint16{53} }, "excludes port 53"},
		{"v6 cidr without v6", func(c *Config) { c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00::/8")} }, "IPv6 but IPv6 is false"},
		{"v6 cidr with v6", func(c *Config) {
			c.IPv6 = true
			c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00::/8")}
		}, ""},
		{"mapped cidr", func(c *Config) {
			c.IPv6 = true
			c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}
		}, "IPv4-mapped"},
		{"invalid cidr", func(c *Config) { c.IncludeOutboundCIDRs = []netip.Prefix{{}} }, "invalid prefix"},
		{"v6 include only v4", func(c *Config) {
			c.IPv6 = true
			c.IncludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}, "no IPv6 prefix"},
		{"lower-case prefix", func(c *Config) { c.ChainPrefix = "weft" }, "ChainPrefix"},
		{"long prefix", func(c *Config) { c.ChainPrefix = "ABCDEFGHIJKLMNOPQ" }, "ChainPrefix"},
		{"prefix with space", func(c *Config) { c.ChainPrefix = "A B" }, "ChainPrefix"},
		{"bad backend", func(c *Config) { c.Backend = "ebpf" }, "Backend"},
		{"several errors at once", func(c *Config) { c.ProxyUID = 0; c.ChainPrefix = "x" }, "ChainPrefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("want error containing %q, got nil", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
			}
			if _, perr := Plan(c); (perr == nil) != (err == nil) {
				t.Errorf("Plan and Validate disagree: %v vs %v", perr, err)
			}
		})
	}
}

func TestJumpDeletes(t *testing.T) {
	save := `# Generated by iptables-save
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j WEFT_OUTPUT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:WEFT_OUTPUT - [0:0]
:WEFT_REDIRECT - [0:0]
:WEFT_OTHER - [0:0]
-A PREROUTING -p tcp -j WEFT_INBOUND
-A OUTPUT -p tcp -j WEFT_OUTPUT
-A OUTPUT -p udp -m udp --dport 53 -g WEFT_OUTPUT
-A OUTPUT -p tcp -j WEFT_OTHER
-A OUTPUT -p tcp -j WEFT_OUTPUTX
-A WEFT_OUTPUT -j WEFT_REDIRECT
COMMIT
`
	nt := parseNat(save)
	ch := chainsFor("WEFT")
	got := strings.Join(nt.jumpDeletes(ch), "\n")
	want := strings.Join([]string{
		"-D PREROUTING -p tcp -j WEFT_INBOUND",
		"-D OUTPUT -p tcp -j WEFT_OUTPUT",
		"-D OUTPUT -p udp -m udp --dport 53 -g WEFT_OUTPUT",
	}, "\n")
	if got != want {
		t.Errorf("jumpDeletes:\n%s\nwant:\n%s", got, want)
	}
	if p := strings.Join(nt.present(ch), ","); p != "WEFT_OUTPUT,WEFT_REDIRECT" {
		t.Errorf("present = %s", p)
	}
}

func TestOriginalDstNeedsSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := OriginalDst(a); err == nil {
		t.Fatal("OriginalDst on net.Pipe succeeded")
	}
}
