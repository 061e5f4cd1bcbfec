package runtime

import (
	"errors"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/internal/proxy/fielderr"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// The data path's main types live in the route and upstream packages; the
// aliases keep the runtime API in one place.
type (
	// Cluster is an upstream cluster (see package upstream).
	Cluster = upstream.Cluster
	// Endpoint is one upstream host (see package upstream).
	Endpoint = upstream.Endpoint
	// RouteTable is a compiled RouteConfiguration (see package route).
	RouteTable = route.Table
	// Route is one compiled route (see package route).
	Route = route.Route
)

// resourceErr turns a package FieldError into a ResourceError naming the
// resource; other errors keep their text.
func resourceErr(typ, name, prefix string, err error) error {
	var fe *fielderr.Error
	if errors.As(err, &fe) {
		return &ResourceError{Type: typ, Name: name, Field: prefix + fe.Field, Msg: fe.Msg}
	}
	return &ResourceError{Type: typ, Name: name, Field: prefix, Msg: err.Error()}
}

func buildClusters(prev, s *Snapshot, cds map[string]*clusterv3.Cluster) (*Clusters, bool, []error) {
	var errs []error
	out := &Clusters{byName: make(map[string]*Cluster, len(cds))}
	changed := len(cds) != prev.Clusters.Len()
	for name, pb := range cds {
		old := prev.Clusters.byName[name]
		if old != nil && equalProto(old.Source(), pb) {
			out.byName[name] = old
			// Same CDS config: keep identity; new endpoints are published
			// when the snapshot is stored.
			if cla := s.claFor(old); cla != nil {
				cur := old.EndpointSet()
				if cur == nil || !equalProto(cur.Source(), cla) {
					set, err := upstream.NewEndpointSet(old, cla, cur)
					if err != nil {
						errs = append(errs, resourceErr("ClusterLoadAssignment", cla.GetClusterName(), "", err))
						continue
					}
					s.pending = append(s.pending, pendingEndpoints{c: old, set: set})
				}
			}
			continue
		}
		changed = true
		c, err := upstream.NewCluster(pb, s.now)
		if err != nil {
			errs = append(errs, resourceErr("Cluster", name, "", err))
			continue
		}
		var prevSet *upstream.EndpointSet
		if old != nil {
			prevSet = old.EndpointSet()
		}
		var cla *endpointv3.ClusterLoadAssignment
		typ := "ClusterLoadAssignment"
		switch c.Type {
		case clusterv3.Cluster_EDS:
			cla = s.claFor(c)
		case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
			cla, typ = pb.GetLoadAssignment(), "Cluster"
		}
		if cla != nil {
			set, err := upstream.NewEndpointSet(c, cla, prevSet)
			if err != nil {
				if typ == "Cluster" {
					errs = append(errs, resourceErr(typ, name, "load_assignment.", err))
				} else {
					errs = append(errs, resourceErr(typ, cla.GetClusterName(), "", err))
				}
				continue
			}
			c.Publish(set) // c is new and not yet visible to anyone
		}
		out.byName[name] = c
	}
	return out, changed, errs
}

func (s *Snapshot) claFor(c *Cluster) *endpointv3.ClusterLoadAssignment {
	if c.Type != clusterv3.Cluster_EDS {
		return nil
	}
	return s.cla[c.EDSServiceName]
}

func buildRouteTables(prev, s *Snapshot, rds map[string]*routev3.RouteConfiguration, clustersChanged bool) (*RouteTables, []error) {
	if !clustersChanged && len(rds) == prev.RouteTables.Len() {
		same := true
		for name, pb := range rds {
			old := prev.RouteTables.byName[name]
			if old == nil || !equalProto(old.Source(), pb) {
				same = false
				break
			}
		}
		if same {
			return prev.RouteTables, nil
		}
	}
	var errs []error
	out := &RouteTables{byName: make(map[string]*RouteTable, len(rds))}
	for name, pb := range rds {
		if old := prev.RouteTables.byName[name]; old != nil && !clustersChanged && equalProto(old.Source(), pb) {
			out.byName[name] = old
			continue
		}
		rt, err := route.NewTable(pb, s.Clusters.Get)
		if err != nil {
			errs = append(errs, resourceErr("RouteConfiguration", name, "", err))
			continue
		}
		out.byName[name] = rt
	}
	return out, errs
}
