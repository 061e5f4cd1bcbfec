package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/ca"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Bootstrap tokens that let hosts and standalone workloads get their first certificate"}
	var req ca.TokenRequest
	var output string
	create := &cobra.Command{
		Use:   "create --namespace NS --service-account SA",
		Short: "Mint a signed, expiring bootstrap token bound to one identity",
		Example: `  weftctl token create --namespace default --service-account reviews --ttl 1h
  weftctl token create -n shop --service-account cart --workload-group cart --single-use -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Namespace == "" || req.ServiceAccount == "" {
				return usageErr("--namespace and --service-account are required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			body, _ := json.Marshal(req)
			ctx, cancel := g.ctx()
			defer cancel()
			var resp ca.TokenResponse
			if err := c.Raw(ctx, http.MethodPost, api.PathTokens, bytes.NewReader(body), &resp); err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(resp)
			}
			fmt.Fprintln(g.stdout, resp.Token)
			fmt.Fprintf(g.stderr, "token %s for %s, expires %s (in %s)\n", resp.ID, resp.Identity,
				resp.Expires.Format(time.RFC3339), time.Until(resp.Expires).Round(time.Second))
			return nil
		},
	}
	f := create.Flags()
	f.StringVarP(&req.Namespace, "namespace", "n", "", "namespace of the identity")
	f.StringVar(&req.ServiceAccount, "service-account", "", "service account of the identity")
	f.StringVar(&req.WorkloadGroup, "workload-group", "", "bind the token to this WorkloadGroup (hosts joining)")
	f.StringVar(&req.TTL, "ttl", "1h", "how long the token is valid")
	f.BoolVar(&req.SingleUse, "single-use", false, "the token works for exactly one certificate request")
	f.StringVarP(&output, "output", "o", "token", "token (only the token on stdout) or json")
	cmd.AddCommand(create)
	return cmd
}

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Inspect and rotate the mesh CA"}
	simple := func(use, short, method, path string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			var out bytes.Buffer
			if err := c.RawText(ctx, method, path, &out); err != nil {
				return err
			}
			_, err = g.stdout.Write(out.Bytes())
			return err
		}}
	}
	cmd.AddCommand(
		simple("bundle", "Print the trust bundle (PEM): every root workloads must trust", http.MethodGet, api.PathCABundle),
		simple("rotate-root", "Start a root rotation: new certificates come from a new root; both roots are trusted meanwhile", http.MethodPost, api.PathCARotate),
		simple("retire-root", "End a root rotation: only the current root is trusted", http.MethodPost, api.PathCARetire),
	)
	return cmd
}
