package agent

import (
	"fmt"
	"net"
	"time"

	"github.com/weftmesh/weft/internal/proxy/health"
	"github.com/weftmesh/weft/internal/vmbundle"
)

// ApplyBundle fills cfg and id from a host bootstrap bundle (`weftctl vm
// bundle`): weftd's secure address, the trust bundle, the group-bound token,
// the workload's namespace and service account, the address to advertise and
// AUTO_REGISTER_GROUP so weftd registers the host from its WorkloadGroup, and
// the group's probe, whose results weftd uses for the host's endpoint health.
// Identity fields from the bundle win over flags; cfg.IP is kept when set.
//
// When neither cfg.IP nor the bundle gives an address, the host advertises
// the local address it reaches weftd from (see routeAddr): it lands in
// INSTANCE_IPS and in the node id, so hosts cloned from one image (same
// hostname) still have distinct node ids and each gets its own entry, and
// the proxy recognises its own endpoints for inbound traffic.
func ApplyBundle(cfg *Config, id *Identity, b *vmbundle.Bundle) error {
	if exp := b.Mesh.TokenExpires; !exp.IsZero() && !time.Now().Before(exp) && cfg.Logger != nil {
		// weftd will refuse the token; say so at once, before the first
		// refusal, with the command that makes a new bundle.
		cfg.Logger.Error("the bundle's bootstrap token has expired: weftd will refuse it",
			"expired_at", exp.UTC().Format(time.RFC3339),
			"fix", fmt.Sprintf("write a new bundle with `weftctl vm bundle -n %s --workload-group %s -o DIR` and restart weft-proxy", b.Mesh.Namespace, b.Mesh.WorkloadGroup))
	}
	roots, err := ParseRoots(b.Root)
	if err != nil {
		return fmt.Errorf("agent: bundle root certificate: %w", err)
	}
	id.CAAddr = b.Mesh.CAAddr
	id.Roots = roots
	id.Token = b.Token
	id.TrustDomain = b.Mesh.TrustDomain
	cfg.Identity = id
	cfg.Namespace = b.Mesh.Namespace
	cfg.ServiceAccount = b.Mesh.ServiceAccount
	cfg.AutoRegisterGroup = b.Mesh.WorkloadGroup
	cfg.Network = b.Mesh.Network
	if cfg.IP == "" {
		cfg.IP = b.Mesh.Address
	}
	if cfg.IP == "" {
		// Not fatal: weftd falls back to the address the stream comes from.
		if ip, err := routeAddr(b.Mesh.CAAddr); err == nil {
			cfg.IP = ip
		} else if cfg.Logger != nil {
			cfg.Logger.Warn("bundle: no address to advertise; weftd will use the address the xDS stream comes from", "err", err)
		}
	}
	if len(b.Probe) > 0 {
		p, err := health.ParseIstioProbe(b.Probe)
		if err != nil {
			return fmt.Errorf("agent: bundle %s: %w", vmbundle.ProbeFile, err)
		}
		cfg.Probe = &p
	}
	return nil
}

// routeAddr returns the local address the kernel picks to reach hostport:
// connecting a UDP socket chooses the route and source address without
// sending anything.
func routeAddr(hostport string) (string, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("udp", hostport)
	if err != nil {
		return "", fmt.Errorf("agent: local address towards %s: %w", hostport, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}
