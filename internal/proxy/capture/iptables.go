package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

var errNoBinary = errors.New("binary not found")

// tool is one iptables flavour for one family: the save and restore
// binaries of e.g. ip6tables-legacy.
type tool struct {
	backend       Backend
	v6            bool
	save, restore string
}

func (t tool) name() string {
	base := "iptables"
	if t.v6 {
		base = "ip6tables"
	}
	return base + "-" + string(t.backend)
}

// lookPath also tries the sbin directories, which are often missing from a
// non-login PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin/", "/sbin/"} {
		if fi, err := os.Stat(dir + name); err == nil && !fi.IsDir() {
			return dir + name, nil
		}
	}
	return "", fmt.Errorf("%w: %s", errNoBinary, name)
}

// toolFor finds the binaries of backend b (which must not be auto): the
// explicit iptables-nft-restore / iptables-legacy-restore, or else the plain
// iptables-restore when its version string says it is that flavour.
func toolFor(b Backend, v6 bool) (tool, error) {
	t := tool{backend: b, v6: v6}
	base := "iptables"
	if v6 {
		base = "ip6tables"
	}
	save, err1 := lookPath(base + "-" + string(b) + "-save")
	restore, err2 := lookPath(base + "-" + string(b) + "-restore")
	if err1 == nil && err2 == nil {
		t.save, t.restore = save, restore
		return t, nil
	}
	save, err1 = lookPath(base + "-save")
	restore, err2 = lookPath(base + "-restore")
	if err1 == nil && err2 == nil && flavourOf(restore) == b {
		t.save, t.restore = save, restore
		return t, nil
	}
	return t, fmt.Errorf("%w: %s-%s-restore (and %s-restore is not %s)", errNoBinary, base, b, base, b)
}

// flavourOf runs "<bin> -V": "iptables v1.8.9 (nf_tables)" or "(legacy)";
// versions before 1.8 have no suffix and are legacy.
func flavourOf(bin string) Backend {
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return ""
	}
	if bytes.Contains(out, []byte("nf_tables")) {
		return BackendNFT
	}
	return BackendLegacy
}

// detectBackend picks the flavour whose tables hold more rules; on a host
// with no rules at all, the one the plain iptables binary is.
func detectBackend(ctx context.Context) (Backend, error) {
	counts := map[Backend]int{}
	var found []Backend
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		for _, v6 := range []bool{false, true} {
			t, err := toolFor(b, v6)
			if err != nil {
				continue
			}
			if !v6 {
				found = append(found, b)
			}
			out, err := t.saveAll(ctx)
			if err != nil {
				continue
			}
			for line := range strings.Lines(out) {
				if strings.HasPrefix(line, "-A ") {
					counts[b]++
				}
			}
		}
	}
	switch {
	case len(found) == 0:
		return "", fmt.Errorf("%w: neither iptables-nft-restore nor iptables-legacy-restore", errNoBinary)
	case counts[BackendLegacy] > counts[BackendNFT]:
		return BackendLegacy, nil
	case counts[BackendNFT] > 0:
		return BackendNFT, nil
	}
	if bin, err := lookPath("iptables"); err == nil {
		if f := flavourOf(bin); slices.Contains(found, f) {
			return f, nil
		}
	}
	return found[0], nil
}

// saveAll dumps every loaded table. It deliberately does not pass "-t nat":
// for legacy that would load the nat table into a namespace that had none,
// leaving a legacy table behind that nft users then get warned about.
func (t tool) saveAll(ctx context.Context) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, t.save)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", t.save, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (t tool) restoreInput(ctx context.Context, input string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, t.restore, "--noflush", "--wait=10")
	cmd.Stdin = strings.NewReader(input)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s --noflush: %w: %s", t.restore, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// natTable is the nat section of iptables-save output.
type natTable struct {
	chains []string // user and built-in chain names
	rules  []string // "-A CHAIN ..." lines
}

func parseNat(save string) natTable {
	var nt natTable
	in := false
	for line := range strings.Lines(save) {
		line = strings.TrimSpace(line)
		switch {
		case line == "*nat":
			in = true
		case !in:
		case line == "COMMIT":
			in = false
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				nt.chains = append(nt.chains, f[0])
			}
		case strings.HasPrefix(line, "-A "):
			nt.rules = append(nt.rules, line)
		}
	}
	return nt
}

// jumpDeletes returns "-D ..." lines for every rule outside our chains that
// jumps or goes to one of them.
func (nt natTable) jumpDeletes(ch chains) []string {
	ours := ch.all()
	var out []string
	for _, r := range nt.rules {
		f := strings.Fields(r)
		if len(f) < 2 || slices.Contains(ours, f[1]) {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && slices.Contains(ours, f[i+1]) {
				out = append(out, "-D"+r[2:])
				break
			}
		}
	}
	return out
}

func (nt natTable) present(ch chains) []string {
	var out []string
	for _, c := range ch.all() {
		if slices.Contains(nt.chains, c) {
			out = append(out, c)
		}
	}
	return out
}

func (t tool) natTable(ctx context.Context) (natTable, error) {
	out, err := t.saveAll(ctx)
	if err != nil {
		return natTable{}, err
	}
	return parseNat(out), nil
}

// install writes rules (render's output) in one transaction, first deleting
// existing jumps to our chains so that re-installing never duplicates them.
func (t tool) install(ctx context.Context, ch chains, rules string) error {
	cur, err := t.natTable(ctx)
	if err != nil {
		return err
	}
	var b strings.Builder
	decls := true
	for line := range strings.Lines(rules) {
		if decls && line != "*nat\n" && !strings.HasPrefix(line, ":") {
			decls = false
			for _, d := range cur.jumpDeletes(ch) {
				b.WriteString(d + "\n")
			}
		}
		b.WriteString(line)
	}
	return t.restoreInput(ctx, b.String())
}

// remove deletes our jumps and chains in one transaction; a no-op when
// there is nothing of ours.
func (t tool) remove(ctx context.Context, ch chains) error {
	cur, err := t.natTable(ctx)
	if err != nil {
		return err
	}
	present, dels := cur.present(ch), cur.jumpDeletes(ch)
	if len(present) == 0 && len(dels) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range present {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c) // flush, so -X finds it empty
	}
	for _, d := range dels {
		b.WriteString(d + "\n")
	}
	for _, c := range present {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return t.restoreInput(ctx, b.String())
}
