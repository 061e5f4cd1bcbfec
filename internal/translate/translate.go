// Package translate turns a model snapshot and one proxy into Envoy xDS v3
// resources. Everything here is a pure function of Input: no I/O, no clocks,
// no globals, so generated output can be cached by Input and diffed in tests.
package translate

import (
	"maps"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// Type URLs of the resources Generate produces.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Input is everything a generator may read.
type Input struct {
	Model *model.Snapshot
	Proxy *model.Proxy
}

// Resources is one proxy's full set of xDS resources, by name within each type.
type Resources struct {
	Listeners map[string]proto.Message
	Routes    map[string]proto.Message
	Clusters  map[string]proto.Message
	Endpoints map[string]proto.Message
	// Warnings lists config this proxy cannot get (reported, never silently dropped).
	Warnings config.Diagnostics
}

// ByType returns the resources of one type URL.
func (r *Resources) ByType(typeURL string) map[string]proto.Message {
	switch typeURL {
	case ListenerType:
		return r.Listeners
	case RouteType:
		return r.Routes
	case ClusterType:
		return r.Clusters
	case EndpointType:
		return r.Endpoints
	}
	return nil
}

// Merge adds o's resources and warnings to r. Names are expected not to
// collide (outbound and inbound resources have distinct names); on a
// collision o wins.
func (r *Resources) Merge(o *Resources) {
	merge := func(dst *map[string]proto.Message, src map[string]proto.Message) {
		if len(src) == 0 {
			return
		}
		if *dst == nil {
			*dst = make(map[string]proto.Message, len(src))
		}
		maps.Copy(*dst, src)
	}
	merge(&r.Listeners, o.Listeners)
	merge(&r.Routes, o.Routes)
	merge(&r.Clusters, o.Clusters)
	merge(&r.Endpoints, o.Endpoints)
	r.Warnings = append(r.Warnings, o.Warnings...)
}
