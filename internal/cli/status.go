package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/xds"
)

// typeColumns orders xDS types as proxy-status shows them.
var typeColumns = []struct{ short, url string }{
	{"CDS", "type.googleapis.com/envoy.config.cluster.v3.Cluster"},
	{"LDS", "type.googleapis.com/envoy.config.listener.v3.Listener"},
	{"EDS", "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"},
	{"RDS", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"},
}

func newProxyStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "proxy-status",
		Aliases: []string{"ps"},
		Short:   "Show every connected proxy and whether each xDS type is SYNCED, STALE or NACKED",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			var proxies []xds.ProxyStatus
			if err := c.Proxies(ctx, &proxies); err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(proxies)
			}
			if len(proxies) == 0 {
				fmt.Fprintln(g.stdout, "No proxies connected.")
				return nil
			}
			sort.Slice(proxies, func(i, j int) bool { return proxies[i].ID < proxies[j].ID })
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTYPE\tNAMESPACE\tSTREAM\tCDS\tLDS\tEDS\tRDS")
			var nacks []string
			for _, p := range proxies {
				cols := []string{p.ID, p.Type, p.Namespace, p.StreamKind}
				for _, t := range typeColumns {
					st, ok := p.PerType[t.url]
					if !ok {
						cols = append(cols, "NOT SENT")
						continue
					}
					cols = append(cols, st.State)
					if st.NackError != "" {
						nacks = append(nacks, fmt.Sprintf("%s %s: %s", p.ID, t.short, st.NackError))
					}
				}
				fmt.Fprintln(tw, strings.Join(cols, "\t"))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, n := range nacks {
				fmt.Fprintln(g.stdout, "NACK", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newAnalyzeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "analyze",
		Short: "Show every current config problem weftd sees (all sources)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			list, err := c.Diagnostics(ctx)
			if err != nil {
				return err
			}
			if len(list.Diagnostics) == 0 {
				fmt.Fprintf(g.stdout, "No problems found (config version %d).\n", list.ConfigVersion)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEVERITY\tWHERE\tOBJECT\tFIELD\tMESSAGE")
			errs := 0
			for _, d := range list.Diagnostics {
				obj := ""
				if d.Key.Kind != "" {
					obj = d.Key.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Severity, orDash(d.Origin.String()), orDash(obj), orDash(d.Field), d.Message)
				if d.Severity == config.SeverityError {
					errs++
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if errs > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d config errors: the objects concerned keep their last good version or are not in effect", errs)}
			}
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print weftctl's and weftd's versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.stdout, "weftctl %s\n", Version)
			c, err := g.client()
			if err != nil {
				fmt.Fprintf(g.stdout, "weftd: unknown (%v)\n", err)
				return nil
			}
			ctx, cancel := g.ctx()
			defer cancel()
			v, err := c.Version(ctx)
			if err != nil {
				fmt.Fprintf(g.stdout, "weftd: unreachable (%v)\n", err)
				return nil
			}
			fmt.Fprintf(g.stdout, "weftd %s (trust domain %s)\n", v.Version, v.TrustDomain)
			return nil
		},
	}
}
