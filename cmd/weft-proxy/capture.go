package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/proxy/capture"
)

// captureMain is `weft-proxy capture install|remove|plan`: the iptables
// step Istio runs as istio-init, as its own privileged command, so the
// proxy itself can run unprivileged as the uid the rules exempt.
func captureMain(args []string) int {
	usage := `usage: weft-proxy capture install [flags]   install transparent-capture rules (needs root / NET_ADMIN)
       weft-proxy capture plan [flags]      print the iptables-restore input, change nothing
       weft-proxy capture remove            remove weft-proxy's rules (idempotent)

Run weft-proxy itself as --proxy-uid so its own traffic is not captured, e.g. with systemd:
  ExecStartPre=+/usr/local/bin/weft-proxy capture install --proxy-uid 1337 --dns
  ExecStart=/usr/local/bin/weft-proxy --mode transparent ...   (User=1337)
  ExecStopPost=+/usr/local/bin/weft-proxy capture remove
`
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("weft-proxy capture "+verb, flag.ContinueOnError)
	var (
		cfg                                 capture.Config
		uid, gid                            int
		inPorts, exIn, exOut, exCIDR, inCID string
		prefix                              string
	)
	fs.IntVar(&uid, "proxy-uid", 1337, "uid weft-proxy runs as: its traffic is never captured")
	fs.IntVar(&gid, "proxy-gid", -1, "gid weft-proxy runs as [same as --proxy-uid]")
	fs.StringVar(&inPorts, "inbound-ports", "*", `inbound ports to capture, comma-separated; "*" all, "" none`)
	fs.StringVar(&exIn, "exclude-inbound-ports", "", "inbound ports never captured (15020, 15021, 15090 always are not)")
	fs.StringVar(&exOut, "exclude-outbound-ports", "", "outbound destination ports never captured")
	fs.StringVar(&exCIDR, "exclude-outbound-cidrs", "", "outbound destination CIDRs never captured, e.g. 169.254.169.254/32")
	fs.StringVar(&inCID, "include-outbound-cidrs", "", "capture only outbound traffic to these CIDRs (default: all)")
	fs.BoolVar(&cfg.RedirectDNS, "dns", false, "redirect the host's DNS queries (port 53) to the proxy's DNS proxy on 127.0.0.1:15053")
	fs.BoolVar(&cfg.IPv6, "ipv6", false, "also install ip6tables rules")
	fs.StringVar(&prefix, "chain-prefix", "", "chain name prefix [WEFT]")
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage+"\nflags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if verb == "remove" {
		if err := capture.Cleanup(ctx, prefix); err != nil {
			fmt.Fprintln(os.Stderr, "weft-proxy capture remove:", err)
			return 1
		}
		fmt.Println("weft-proxy capture rules removed")
		return 0
	}
	if verb != "install" && verb != "plan" {
		fmt.Fprintf(os.Stderr, "weft-proxy capture: unknown command %q\n\n%s", verb, usage)
		return 2
	}
	err := fillCapture(&cfg, uid, gid, inPorts, exIn, exOut, exCIDR, inCID)
	cfg.ChainPrefix = prefix
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-proxy capture:", err)
		return 2
	}
	if verb == "plan" {
		r, err := capture.Plan(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "weft-proxy capture plan:", err)
			return 2
		}
		fmt.Print(r.Describe())
		return 0
	}
	// Leftovers of a crashed run would make the install fail half-way.
	if err := capture.Cleanup(ctx, prefix); err != nil {
		fmt.Fprintln(os.Stderr, "weft-proxy capture install: removing old rules:", err)
		return 1
	}
	r, err := capture.Install(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-proxy capture install:", err)
		return 1
	}
	fmt.Printf("weft-proxy capture rules installed (%s backend): inbound -> %d, outbound -> %d, uid %d exempt; remove with `weft-proxy capture remove`\n",
		r.Backend(), r.Config().InboundPort, r.Config().OutboundPort, r.Config().ProxyUID)
	return 0
}

func fillCapture(cfg *capture.Config, uid, gid int, inPorts, exIn, exOut, exCIDR, inCIDR string) error {
	var errs []error
	if uid <= 0 || uid > 1<<31 {
		errs = append(errs, fmt.Errorf("--proxy-uid %d: want a non-root uid (weft-proxy must run as it)", uid))
	}
	if gid < 0 {
		gid = uid
	}
	cfg.ProxyUID, cfg.ProxyGID = uint32(uid), uint32(gid)
	switch strings.TrimSpace(inPorts) {
	case "*":
	case "":
		cfg.DisableInbound = true
	default:
		p, err := parsePorts("--inbound-ports", inPorts)
		errs = append(errs, err)
		cfg.InboundPorts = p
	}
	var err error
	cfg.ExcludeInboundPorts, err = parsePorts("--exclude-inbound-ports", exIn)
	errs = append(errs, err)
	cfg.ExcludeOutboundPorts, err = parsePorts("--exclude-outbound-ports", exOut)
	errs = append(errs, err)
	cfg.ExcludeOutboundCIDRs, err = parseCIDRs("--exclude-outbound-cidrs", exCIDR)
	errs = append(errs, err)
	cfg.IncludeOutboundCIDRs, err = parseCIDRs("--include-outbound-cidrs", inCIDR)
	errs = append(errs, err)
	return errors.Join(errs...)
}

func parsePorts(flag, s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%s: %q is not a port (1-65535)", flag, f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func parseCIDRs(flag, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %v", flag, f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
