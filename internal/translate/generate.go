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

// Generator produces every xDS type for one proxy. It is stateless and safe
// for concurrent use; the xds package caches its output per proxy class.
type Generator struct{}

// Generate builds LDS, RDS, CDS and EDS for in.Proxy. Warnings (config Weft
// cannot express for this proxy) are returned with the resources; they never
// stop generation. The result is the union of GenerateOutbound and
// GenerateInbound.
func (g Generator) Generate(in Input) (*Resources, error) {
	r, err := g.GenerateOutbound(in)
	if err != nil {
		return nil, err
	}
	ib, err := g.GenerateInbound(in)
	if err != nil {
		return nil, err
	}
	r.Merge(ib)
	return r, nil
}

// GenerateOutbound builds everything Generate does except what depends on
// which workload the proxy is (InboundListeners, InboundClusters). It never
// reads in.Proxy.IPs or in.Proxy.Workload, so the xds package shares its
// output between sidecars that differ only in those — every replica of
// every workload in a namespace, typically.
func (Generator) GenerateOutbound(in Input) (*Resources, error) {
	r := &Resources{}
	var lw, rw config.Diagnostics
	r.Listeners, lw = outboundListeners(in)
	r.Routes, rw = Routes(in)
	var cw []string
	r.Clusters, cw = outboundClusters(in)
	r.Endpoints = Endpoints(in)
	r.Warnings = append(append(lw, rw...), clusterWarnings(cw)...)
	return r, nil
}

// GenerateInbound builds the part of Generate that depends on the proxy's
// own workload: the VirtualInboundListener and inbound clusters of a
// sidecar. It reads the proxy's type, IPs, workload, namespace and labels
// and the model's services, endpoints and security policies; it is cheap
// (no visible-service or VirtualService work) and produces no routes or
// endpoints. Its warnings are about the policies it could not express.
func (Generator) GenerateInbound(in Input) (*Resources, error) {
	listeners, warnings := inboundListeners(in)
	return &Resources{
		Listeners: listeners,
		Routes:    map[string]proto.Message{},
		Clusters:  InboundClusters(in),
		Endpoints: map[string]proto.Message{},
		Warnings:  warnings,
	}, nil
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
