package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/config"
)

// input is one config file (or stdin) named by -f.
type input struct {
	name string
	data []byte
}

// readInputs expands -f arguments: files, directories (*.yaml, *.yml, *.json;
// recursive with -R) and "-" for stdin.
func readInputs(g *globals, paths []string, recursive bool) ([]input, error) {
	if len(paths) == 0 {
		return nil, usageErr("-f is required: a file, a directory or - for stdin")
	}
	var out []input
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(g.stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			out = append(out, input{name: "<stdin>", data: b})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", p, err)
		}
		if !st.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			out = append(out, input{name: p, data: b})
			continue
		}
		var files []string
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && !recursive {
				return filepath.SkipDir
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read directory %s: %w", p, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no .yaml, .yml or .json files in %s", p)
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, input{name: f, data: b})
		}
	}
	return out, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var recursive, dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update config in weftd's embedded store",
		Example: `  weftctl apply -f reviews.yaml
  weftctl apply -f config/ -R
  cat vs.yaml | weftctl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inputs, err := readInputs(g, files, recursive)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			failed := 0
			for i, in := range inputs {
				if len(inputs) > 1 {
					fmt.Fprintf(g.stderr, "[%d/%d] %s\n", i+1, len(inputs), in.name)
				}
				ctx, cancel := g.ctx()
				resp, err := c.Apply(ctx, in.data, in.name, dryRun)
				cancel()
				if err != nil {
					failed++
					fmt.Fprintf(g.stderr, "%s: %v\n", in.name, err)
					continue
				}
				suffix := ""
				if dryRun {
					suffix = " (dry run)"
				}
				for _, r := range resp.Results {
					fmt.Fprintf(g.stdout, "%s %s%s\n", objectRef(r.Kind, r.Namespace, r.Name), r.Action, suffix)
				}
				for _, d := range resp.Diagnostics {
					fmt.Fprintln(g.stderr, d.Error())
				}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d inputs were not applied; the config in effect is unchanged for them", failed, len(inputs))}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - (stdin); repeatable")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "read directories recursively")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate on the server and show what would change, without changing anything")
	return cmd
}

func objectRef(kind config.Kind, ns, name string) string {
	info, _ := config.LookupKind(kind)
	ref := strings.ToLower(string(kind)) + "." + info.Group + "/" + name
	if ns != "" {
		ref += " -n " + ns
	}
	return ref
}

func newGetCmd(g *globals) *cobra.Command {
	var ns, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND|all [NAME]",
		Short: "List config in effect (all sources merged)",
		Example: `  weftctl get virtualservices -A
  weftctl get vs reviews -n default -o yaml
  weftctl get all`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := ""
			if args[0] != "all" {
				info, ok := config.ResolveKindName(args[0])
				if !ok {
					return usageErr("unknown kind %q; known kinds: %s", args[0], knownKinds())
				}
				kind = string(info.Kind)
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			if all {
				ns = ""
			} else if ns == "" {
				ns = "default"
			}
			if args[0] == "all" && !cmd.Flags().Changed("namespace") {
				ns = "" // "get all" without -n shows every namespace
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			list, err := c.List(ctx, kind, ns, name)
			if err != nil {
				return err
			}
			if name != "" && len(list.Objects) == 0 {
				return &exitError{code: 1, err: fmt.Errorf("%s %q not found in namespace %q", kind, name, ns)}
			}
			return printObjects(g.stdout, list, output, kind == "")
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, yaml or json")
	return cmd
}

func printObjects(w io.Writer, list *api.ObjectList, output string, showKind bool) error {
	switch output {
	case "yaml":
		for i, o := range list.Objects {
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			fmt.Fprint(w, strings.TrimRight(o.YAML, "\n")+"\n")
		}
		return nil
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	case "table", "":
		if len(list.Objects) == 0 {
			fmt.Fprintln(w, "No resources found.")
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		if !showKind && list.Objects[0].Kind == config.KindWorkloadEntry {
			return printWorkloadEntries(tw, list)
		}
		if showKind {
			fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tSOURCE\tAGE")
		} else {
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tSOURCE\tAGE")
		}
		for _, o := range list.Objects {
			src := o.Origin.Source
			if o.Origin.File != "" && o.Origin.Source != "api" {
				src += ":" + filepath.Base(o.Origin.File)
			}
			if showKind {
				fmt.Fprintf(tw, "%s\t", o.Kind)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Namespace, o.Name, src, age(o.Created))
		}
		return tw.Flush()
	}
	return usageErr("unknown output format %q: use table, yaml or json", output)
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func knownKinds() string {
	var names []string
	for _, k := range config.Kinds() {
		names = append(names, strings.ToLower(string(k.Kind)))
	}
	return strings.Join(names, ", ")
}

func newDeleteCmd(g *globals) *cobra.Command {
	var ns string
	var files []string
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME [-n NS] | -f FILE)",
		Short: "Delete config from weftd's embedded store",
		Example: `  weftctl delete vs reviews -n default
  weftctl delete -f reviews.yaml`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var keys []config.Key
			switch {
			case len(files) > 0 && len(args) == 0:
				inputs, err := readInputs(g, files, false)
				if err != nil {
					return err
				}
				for _, in := range inputs {
					objs, diags := config.Decode(in.data, config.Origin{File: in.name})
					if diags.HasErrors() {
						return fmt.Errorf("%s: %w", in.name, diagsError(diags.Errors()))
					}
					for _, o := range objs {
						keys = append(keys, o.Key())
					}
				}
			case len(args) == 2 && len(files) == 0:
				info, ok := config.ResolveKindName(args[0])
				if !ok {
					return usageErr("unknown kind %q; known kinds: %s", args[0], knownKinds())
				}
				if ns == "" {
					ns = "default"
				}
				keys = append(keys, config.Key{Kind: info.Kind, Namespace: ns, Name: args[1]})
			default:
				return usageErr("give KIND NAME, or -f FILE")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			resp, err := c.Delete(ctx, keys)
			if err != nil {
				return err
			}
			for _, k := range resp.Deleted {
				fmt.Fprintf(g.stdout, "%s deleted\n", objectRef(k.Kind, k.Namespace, k.Name))
			}
			for _, e := range resp.Errors {
				fmt.Fprintln(g.stderr, e)
			}
			if len(resp.Errors) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d objects not deleted", len(resp.Errors), len(keys))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "delete the objects named in these files")
	return cmd
}

type diagsError config.Diagnostics

func (d diagsError) Error() string {
	var parts []string
	for _, x := range d {
		parts = append(parts, x.Error())
	}
	return strings.Join(parts, "\n  ")
}

func newValidateCmd(g *globals) *cobra.Command {
	var files []string
	var recursive bool
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check config offline, without a server",
		Long: "validate decodes and checks config exactly as weftd would (per object and across objects)\n" +
			"and prints every problem with its file, document, object and field. Exit code 1 if any error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inputs, err := readInputs(g, files, recursive)
			if err != nil {
				return err
			}
			var all []*config.Object
			var diags config.Diagnostics
			for _, in := range inputs {
				objs, d := config.Decode(in.data, config.Origin{Source: "file", File: in.name})
				diags = append(diags, d...)
				for _, o := range objs {
					vd := config.Validate(o)
					diags = append(diags, vd...)
					if !vd.HasErrors() {
						all = append(all, o)
					}
				}
			}
			_, cross := config.CrossValidate(all)
			diags = append(diags, cross...)
			diags.Sort()
			errs, warns := 0, 0
			for _, d := range diags {
				fmt.Fprintln(g.stdout, d.Error())
				if d.Severity == config.SeverityError {
					errs++
				} else {
					warns++
				}
			}
			fmt.Fprintf(g.stdout, "%d objects in %d inputs: %d errors, %d warnings\n", len(all), len(inputs), errs, warns)
			if errs > 0 {
				return &exitError{code: 1, err: fmt.Errorf("config is not valid")}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - (stdin); repeatable")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "read directories recursively")
	return cmd
}

// printWorkloadEntries adds what operators look for on hosts: the address
// and, for auto-registered hosts, the health their probe last reported.
func printWorkloadEntries(tw *tabwriter.Writer, list *api.ObjectList) error {
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tADDRESS\tHEALTH\tSOURCE\tAGE")
	for _, o := range list.Objects {
		addr, health := "-", "-"
		if objs, _ := config.Decode([]byte(o.YAML), config.Origin{}); len(objs) == 1 {
			if we, ok := objs[0].Spec.(*networkingv1.WorkloadEntry); ok && we.GetAddress() != "" {
				addr = we.GetAddress()
			}
			if h := objs[0].Annotations["weft.dev/health"]; h != "" {
				health = h
				if msg := objs[0].Annotations["weft.dev/health-message"]; msg != "" && h != "healthy" {
					health += ": " + truncate(msg, 60)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Namespace, o.Name, addr, health, o.Origin.Source, age(o.Created))
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
