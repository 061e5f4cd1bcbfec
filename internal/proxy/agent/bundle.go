package agent

import (
	"fmt"

	"github.com/weftmesh/weft/internal/proxy/health"
	"github.com/weftmesh/weft/internal/vmbundle"
)

// ApplyBundle fills cfg and id from a host bootstrap bundle (`weftctl vm
// bundle`): weftd's secure address, the trust bundle, the group-bound token,
// the workload's namespace and service account, the address to advertise and
// AUTO_REGISTER_GROUP so weftd registers the host from its WorkloadGroup, and
// the group's probe, whose results weftd uses for the host's endpoint health.
// Identity fields from the bundle win over flags; cfg.IP is kept when set.
func ApplyBundle(cfg *Config, id *Identity, b *vmbundle.Bundle) error {
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
	if len(b.Probe) > 0 {
		p, err := health.ParseIstioProbe(b.Probe)
		if err != nil {
			return fmt.Errorf("agent: bundle %s: %w", vmbundle.ProbeFile, err)
		}
		cfg.Probe = &p
	}
	return nil
}
