package translate

import (
	"github.com/weftmesh/weft/internal/config"
)

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
