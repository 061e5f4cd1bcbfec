package translate

import (
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
)

// ProxyMetadataKeys lists every Proxy.Metadata key translation reads. The xds
// package shares generated output between proxies that agree on these keys
// (and on type, namespace, labels, IPs and workload), so a new read of
// Proxy.Metadata anywhere in this package must be added here.
var ProxyMetadataKeys = []string{cdsLocalityMetadataKey, "NETWORK"}

// Generator produces every xDS type for one proxy. It is stateless; the xds
// package caches its output per proxy class.
type Generator struct{}

// Generate builds LDS, RDS, CDS and EDS for in.Proxy. Warnings (config Weft
// cannot express for this proxy) are returned with the resources; they never
// stop generation.
func (Generator) Generate(in Input) (*Resources, error) {
	r := &Resources{}
	var lw, rw config.Diagnostics
	r.Listeners, lw = Listeners(in)
	r.Routes, rw = Routes(in)
	var cw []string
	r.Clusters, cw = Clusters(in)
	r.Endpoints = Endpoints(in)
	r.Warnings = append(append(lw, rw...), clusterWarnings(cw)...)
	return r, nil
}

func clusterWarnings(ws []string) config.Diagnostics {
	out := make(config.Diagnostics, 0, len(ws))
	for _, w := range ws {
		out = append(out, config.Diagnostic{Severity: config.SeverityWarning, Message: w})
	}
	return out
}

// GenerateEndpoints builds only EDS, for endpoint-only pushes.
func (Generator) GenerateEndpoints(in Input) (map[string]proto.Message, error) {
	return Endpoints(in), nil
}
