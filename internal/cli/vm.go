package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/vmbundle"
)

func newVMCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "vm", Short: "Hosts (VMs, bare metal) joining the mesh"}
	var namespace, group, out, caAddr, address, network, ttl, installDir string
	var singleUse bool
	bundle := &cobra.Command{
		Use:   "bundle --namespace NS --workload-group NAME -o DIR",
		Short: "Write everything a host needs to join through a WorkloadGroup",
		Long: "bundle checks the WorkloadGroup exists, mints a bootstrap token bound to it (valid for\n" +
			"--ttl; reusable so the host's proxy can restart within that time, or --single-use), and\n" +
			"writes weftd's address, the trust bundle, mesh settings, an env file and a systemd unit\n" +
			"into DIR. Copy DIR to the host and start `weft-proxy --bundle DIR`; the token is a secret.",
		Example: `  weftctl vm bundle -n shop --workload-group cart -o ./cart-bundle
  weftctl vm bundle -n shop --workload-group cart -o ./b --address 203.0.113.7 --ca-addr weftd.example.com:15012`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if namespace == "" || group == "" || out == "" {
				return usageErr("--namespace, --workload-group and -o are required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx()
			defer cancel()
			step := func(format string, a ...any) { fmt.Fprintf(g.stderr, "- "+format+"\n", a...) }

			list, err := c.List(ctx, string(config.KindWorkloadGroup), namespace, group)
			if err != nil {
				return err
			}
			if len(list.Objects) == 0 {
				return &exitError{code: 1, err: fmt.Errorf("WorkloadGroup %s/%s does not exist; apply one first (see docs/vm-autoregistration.md)", namespace, group)}
			}
			objs, _ := config.Decode([]byte(list.Objects[0].YAML), config.Origin{})
			sa := ""
			var probe []byte
			if len(objs) == 1 {
				if wg, ok := objs[0].Spec.(*networkingv1.WorkloadGroup); ok {
					sa = wg.GetTemplate().GetServiceAccount()
					if wg.GetProbe() != nil {
						if probe, err = protojson.Marshal(wg.GetProbe()); err != nil {
							return fmt.Errorf("encode the group's probe: %w", err)
						}
					}
				}
			}
			step("WorkloadGroup %s/%s found (service account %q)", namespace, group, orDash(sa))

			v, err := c.Version(ctx)
			if err != nil {
				return err
			}
			if caAddr == "" {
				if v.SecureAddr == "" {
					return fmt.Errorf("weftd serves no secure port (--secure-addr); hosts need it to join")
				}
				caAddr = v.SecureAddr
				if host, port, err := net.SplitHostPort(caAddr); err == nil && (host == "" || host == "::" || host == "0.0.0.0") {
					return usageErr("weftd listens on %s (all interfaces): give --ca-addr with the address hosts reach it at, e.g. weftd.example.com:%s", caAddr, port)
				}
			}
			var roots bytes.Buffer
			if err := c.RawText(ctx, http.MethodGet, api.PathCABundle, &roots); err != nil {
				return err
			}
			step("trust bundle fetched; weftd at %s", caAddr)

			if sa == "" {
				sa = "default"
			}
			req, _ := json.Marshal(ca.TokenRequest{Namespace: namespace, ServiceAccount: sa, WorkloadGroup: group, TTL: ttl, SingleUse: singleUse})
			var tok ca.TokenResponse
			if err := c.Raw(ctx, http.MethodPost, api.PathTokens, bytes.NewReader(req), &tok); err != nil {
				return err
			}
			kind := "token"
			if singleUse {
				kind = "single-use token"
			}
			step("%s %s for %s, valid until %s", kind, tok.ID, tok.Identity, tok.Expires.Format("2006-01-02 15:04 MST"))

			// weftd's certificate names its host names and addresses; verify against what the host dials.
			serverName, _, _ := net.SplitHostPort(caAddr)
			b := &vmbundle.Bundle{Mesh: vmbundle.Mesh{
				CAAddr: caAddr, ServerName: serverName, TrustDomain: v.TrustDomain, DomainSuffix: v.DomainSuffix,
				Namespace: namespace, WorkloadGroup: group, ServiceAccount: sa, Address: address, Network: network,
				TokenExpires: tok.Expires,
			}, Root: roots.Bytes(), Token: tok.Token, Probe: probe}
			if err := vmbundle.Write(out, installDir, b); err != nil {
				return err
			}
			step("bundle written to %s (%s, %s, %s, %s, %s)", out, vmbundle.MeshFile, vmbundle.RootFile, vmbundle.TokenFile, vmbundle.EnvFile, vmbundle.UnitFile)
			fmt.Fprintf(g.stdout, "%s\n", out)
			return nil
		},
	}
	f := bundle.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace of the WorkloadGroup")
	f.StringVar(&group, "workload-group", "", "WorkloadGroup the host joins")
	f.StringVarP(&out, "output", "o", "", "directory to write the bundle to")
	f.StringVar(&caAddr, "ca-addr", "", "weftd's secure address as the host reaches it (default: what weftd reports)")
	f.StringVar(&address, "address", "", "address the host advertises (NAT, several NICs); default: its interface IP")
	f.StringVar(&network, "network", "", "the host's network (multi-network meshes)")
	f.StringVar(&ttl, "ttl", "24h", "how long the bundle's token can be used to join")
	f.BoolVar(&singleUse, "single-use", false, "the token gets exactly one certificate (a restarted proxy then needs a new bundle)")
	f.StringVar(&installDir, "install-dir", vmbundle.DefaultPath, "where the bundle will live on the host")
	cmd.AddCommand(bundle)
	return cmd
}
