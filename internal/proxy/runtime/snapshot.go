// Package runtime owns weft-proxy's immutable runtime configuration: it turns
// Envoy xDS v3 resources (Listener, RouteConfiguration, Cluster,
// ClusterLoadAssignment) into a Snapshot the data path reads without locks,
// validates them against the subset weft-proxy implements (see SUPPORTED.md),
// and matches connections to listeners and filter chains. Route tables live
// in package route and clusters, load balancing and outlier detection in
// package upstream; runtime orchestrates building and publishing them.
//
// A Snapshot is never mutated after it is published through a Holder, with one
// deliberate exception that mirrors Envoy: a Cluster whose CDS config did not
// change keeps its identity across EDS updates, and its endpoint set is swapped
// in when the new Snapshot is stored. That is what lets an endpoint-only update
// reuse every listener and route table by pointer.
package runtime

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/proxy/jwtauthn"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// Options are the knobs a Snapshot inherits from its predecessor.
type Options struct {
	// Now is the clock used by outlier detection. Defaults to time.Now; tests
	// inject a fake clock so ejection and un-ejection need no sleeps.
	Now func() time.Time
	// JWKS fetches and caches the remote key sets of jwt_authn providers;
	// nil uses one process-wide cache with default settings.
	JWKS *jwtauthn.KeyCache
}

// Snapshot is one immutable view of the proxy's configuration.
type Snapshot struct {
	// Listeners by name. Unchanged listeners keep their pointer across builds.
	Listeners *Listeners
	// RouteTables by RDS name. The pointer is reused when neither routes nor
	// clusters changed (for example an EDS-only update).
	RouteTables *RouteTables
	// Clusters by name.
	Clusters *Clusters

	opts Options
	now  func() int64
	// cla holds the endpoint sources so a later CDS-only change can rebuild a
	// cluster without the client resending endpoints.
	cla map[string]*endpointv3.ClusterLoadAssignment
	// pending endpoint sets for clusters shared with the previous snapshot; they
	// are published by Holder.Store so a failed or unused Build leaks nothing.
	pending []pendingEndpoints
	// byAddr indexes listeners for OutboundListenerFor.
	byAddr          map[netip.AddrPort]*Listener
	virtualOutbound *Listener
}

type pendingEndpoints struct {
	c   *Cluster
	set *upstream.EndpointSet
}

// Empty returns a Snapshot with no resources, carrying opts to every Snapshot
// built from it.
func Empty(opts Options) *Snapshot {
	s := &Snapshot{
		Listeners:   &Listeners{byName: map[string]*Listener{}},
		RouteTables: &RouteTables{byName: map[string]*RouteTable{}},
		Clusters:    &Clusters{byName: map[string]*Cluster{}},
		opts:        opts,
		cla:         map[string]*endpointv3.ClusterLoadAssignment{},
		byAddr:      map[netip.AddrPort]*Listener{},
	}
	s.now = nowFunc(opts.Now)
	return s
}

func nowFunc(f func() time.Time) func() int64 {
	if f == nil {
		return func() int64 { return time.Now().UnixNano() }
	}
	return func() int64 { return f().UnixNano() }
}

// Listener returns the named listener or nil.
func (s *Snapshot) Listener(name string) *Listener { return s.Listeners.byName[name] }

// RouteTable returns the named route table or nil.
func (s *Snapshot) RouteTable(name string) *RouteTable { return s.RouteTables.byName[name] }

// Cluster returns the named cluster or nil.
func (s *Snapshot) Cluster(name string) *Cluster { return s.Clusters.byName[name] }

// Listeners is an immutable set of listeners by name.
type Listeners struct{ byName map[string]*Listener }

// Get returns the named listener or nil.
func (l *Listeners) Get(name string) *Listener { return l.byName[name] }

// Len is the number of listeners.
func (l *Listeners) Len() int { return len(l.byName) }

// Names returns the listener names (for admin/config dumps; allocates).
func (l *Listeners) Names() []string { return keys(l.byName) }

// RouteTables is an immutable set of route tables by RDS name.
type RouteTables struct{ byName map[string]*RouteTable }

// Get returns the named route table or nil.
func (r *RouteTables) Get(name string) *RouteTable { return r.byName[name] }

// Len is the number of route tables.
func (r *RouteTables) Len() int { return len(r.byName) }

// Names returns the route table names (allocates).
func (r *RouteTables) Names() []string { return keys(r.byName) }

// Clusters is an immutable set of clusters by name.
type Clusters struct{ byName map[string]*Cluster }

// Get returns the named cluster or nil.
func (c *Clusters) Get(name string) *Cluster { return c.byName[name] }

// Len is the number of clusters.
func (c *Clusters) Len() int { return len(c.byName) }

// Names returns the cluster names (allocates).
func (c *Clusters) Names() []string { return keys(c.byName) }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Holder publishes Snapshots atomically. Readers Load once per request and
// keep using that Snapshot until the request ends.
type Holder struct{ p atomic.Pointer[Snapshot] }

// NewHolder returns a Holder serving s (Empty(Options{}) when s is nil).
func NewHolder(s *Snapshot) *Holder {
	if s == nil {
		s = Empty(Options{})
	}
	h := &Holder{}
	h.Store(s)
	return h
}

// Load returns the current Snapshot.
func (h *Holder) Load() *Snapshot { return h.p.Load() }

// Store publishes s: endpoint sets of clusters shared with the previous
// snapshot are swapped in first, then s becomes current.
func (h *Holder) Store(s *Snapshot) {
	for _, p := range s.pending {
		p.c.Publish(p.set)
	}
	s.pending = nil
	h.p.Store(s)
}

// ResourceError names the resource and field Weft cannot honour; the xDS
// client puts its text in the NACK's error_detail.
type ResourceError struct {
	Type  string // "Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"
	Name  string
	Field string // proto field path inside the resource
	Msg   string
}

func (e *ResourceError) Error() string {
	return fmt.Sprintf("%s %q: %s: %s", e.Type, e.Name, e.Field, e.Msg)
}

func rerr(typ, name, field, format string, args ...any) error {
	return &ResourceError{Type: typ, Name: name, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Build returns a new Snapshot for the complete set of resources (all types;
// the xDS client passes its whole current view). Resources equal to those in
// prev (same pointer, or proto.Equal) keep their runtime objects. prev may be
// nil. ClusterLoadAssignments are optional: a cluster without one keeps the
// endpoints it had in prev, or has none. The returned error is a
// *ResourceError joined per offending resource.
func Build(prev *Snapshot, resources ...proto.Message) (*Snapshot, error) {
	if prev == nil {
		prev = Empty(Options{})
	}
	var (
		lds = map[string]*listenerv3.Listener{}
		rds = map[string]*routev3.RouteConfiguration{}
		cds = map[string]*clusterv3.Cluster{}
		eds = map[string]*endpointv3.ClusterLoadAssignment{}
	)
	var errs []error
	for _, r := range resources {
		switch r := r.(type) {
		case *listenerv3.Listener:
			lds[r.GetName()] = r
		case *routev3.RouteConfiguration:
			rds[r.GetName()] = r
		case *clusterv3.Cluster:
			cds[r.GetName()] = r
		case *endpointv3.ClusterLoadAssignment:
			eds[r.GetClusterName()] = r
		case nil:
		default:
			errs = append(errs, fmt.Errorf("runtime: unsupported resource type %T", r))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Snapshot{opts: prev.opts, now: prev.now, byAddr: map[netip.AddrPort]*Listener{}}
	if s.now == nil {
		s.now = nowFunc(nil)
	}
	// Endpoints: a missing CLA keeps the previous one (Envoy keeps serving the
	// last endpoints of a cluster until it is removed).
	s.cla = make(map[string]*endpointv3.ClusterLoadAssignment, len(eds))
	for k, v := range prev.cla {
		s.cla[k] = v
	}
	for k, v := range eds {
		s.cla[k] = v
	}

	var clustersChanged bool
	s.Clusters, clustersChanged, errs = buildClusters(prev, s, cds)
	var rerrs []error
	s.RouteTables, rerrs = buildRouteTables(prev, s, rds, clustersChanged)
	errs = append(errs, rerrs...)
	var lerrs []error
	s.Listeners, lerrs = buildListeners(prev, s, lds, clustersChanged)
	errs = append(errs, lerrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Drop endpoint sources of clusters that no longer exist.
	for k := range s.cla {
		if !s.claUsed(k) {
			delete(s.cla, k)
		}
	}
	s.indexListeners()
	return s, nil
}

func (s *Snapshot) claUsed(name string) bool {
	for _, c := range s.Clusters.byName {
		if c.EDSServiceName == name || c.Name == name {
			return true
		}
	}
	return false
}

func (s *Snapshot) indexListeners() {
	for _, l := range s.Listeners.byName {
		if l.UseOriginalDst {
			if l.Name == "virtualOutbound" || s.virtualOutbound == nil {
				s.virtualOutbound = l
			}
			continue
		}
		if l.Address.IsValid() {
			if old, ok := s.byAddr[l.Address]; !ok || l.Name < old.Name {
				s.byAddr[l.Address] = l
			}
		}
	}
}

// OutboundListenerFor returns the listener that handles a connection captured
// on the outbound port with original destination ip:port, with Envoy's
// semantics: the exact "IP_PORT" listener, else "0.0.0.0_PORT", else the
// virtualOutbound listener (whose default chain is the passthrough). It does
// not allocate.
func (s *Snapshot) OutboundListenerFor(origDstIP netip.Addr, port uint16) *Listener {
	if l := s.byAddr[netip.AddrPortFrom(origDstIP.Unmap(), port)]; l != nil {
		return l
	}
	wild := netip.IPv4Unspecified()
	if origDstIP.Is6() && !origDstIP.Is4In6() {
		wild = netip.IPv6Unspecified()
	}
	if l := s.byAddr[netip.AddrPortFrom(wild, port)]; l != nil {
		return l
	}
	return s.virtualOutbound
}

// equalProto reports whether two resources are the same config: pointer
// identity first (the xDS client keeps pointers of unchanged resources), then
// proto.Equal.
func equalProto(a, b proto.Message) bool {
	if a == nil || b == nil {
		return false
	}
	if a == b {
		return true
	}
	return proto.Equal(a, b)
}

// Source returns the Listener proto this listener was built from (for
// config dumps; do not modify).
func (l *Listener) Source() *listenerv3.Listener { return l.src }
