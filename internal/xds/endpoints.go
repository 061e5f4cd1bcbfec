package xds

import (
	"maps"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// endpointOnlyChange reports whether next differs from prev only in
// endpoints, so LDS/RDS/CDS can be kept and only EDS regenerated.
//
// It assumes translate reads services and endpoints only through the model
// (covered by ServicesHash and EndpointsHash), so ServiceEntry and
// WorkloadEntry objects are not compared; every other config kind
// (VirtualService, DestinationRule, Sidecar, policies, ...) must be
// unchanged. A proxy's own endpoints are checked per class (ownEndpoints).
func endpointOnlyChange(prev, next *model.Snapshot) bool {
	if prev == nil || next == nil || prev.ServicesHash != next.ServicesHash || prev.Mesh != next.Mesh {
		return false
	}
	if prev.Config == next.Config {
		return true
	}
	if prev.Config == nil || next.Config == nil {
		return false
	}
	for _, k := range config.Kinds() {
		if k.Kind == config.KindServiceEntry || k.Kind == config.KindWorkloadEntry {
			continue
		}
		a, b := prev.Config.List(k.Kind), next.Config.List(k.Kind)
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] && !sameObject(a[i], b[i]) {
				return false
			}
		}
	}
	return true
}

func sameObject(a, b *config.Object) bool {
	return a.Key() == b.Key() && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		proto.Equal(a.Spec, b.Spec)
}
