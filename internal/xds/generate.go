package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/translate"
)

// Generator decides what a proxy gets. translate.Generate satisfies it
// (wrapped in GeneratorFunc); the xds package only decides how to send it.
//
// Generate is called once per proxy class (see ClassKey), not once per
// proxy: it sees a representative Proxy whose ID is empty and whose
// Metadata holds only Config.ClassMetadata keys, so output that depends on
// anything else cannot leak between proxies.
type Generator interface {
	Generate(in translate.Input) (*translate.Resources, error)
}

// GeneratorFunc adapts a function to Generator.
type GeneratorFunc func(in translate.Input) (*translate.Resources, error)

// Generate calls f.
func (f GeneratorFunc) Generate(in translate.Input) (*translate.Resources, error) { return f(in) }

// EndpointGenerator is optionally implemented by a Generator that can build
// only the ClusterLoadAssignments; endpoint-only pushes then skip building
// listeners, routes and clusters altogether. Without it, an endpoint-only
// push still calls Generate but keeps the previous LDS/RDS/CDS resources.
type EndpointGenerator interface {
	GenerateEndpoints(in translate.Input) (map[string]proto.Message, error)
}

// xdsTypes are the types generated, in ADS push order.
var xdsTypes = []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.RouteType}

// shortType is the Istio metric label of a type URL.
func shortType(typeURL string) string {
	switch typeURL {
	case translate.ClusterType:
		return "cds"
	case translate.EndpointType:
		return "eds"
	case translate.ListenerType:
		return "lds"
	case translate.RouteType:
		return "rds"
	}
	return "other"
}

// typeSet is one type's resources with per-resource content hashes and the
// type version derived from them.
type typeSet struct {
	version string
	items   []types.Resource
	names   []string
	hashes  map[string]string // name -> hash, also the delta version map
}

// newTypeSet hashes every resource with deterministic marshalling and
// derives the type version from the sorted (name, hash) pairs, so the
// version changes exactly when the content does.
func newTypeSet(res map[string]proto.Message) (*typeSet, error) {
	ts := &typeSet{hashes: make(map[string]string, len(res))}
	ts.names = slices.Sorted(maps.Keys(res))
	ts.items = make([]types.Resource, 0, len(res))
	all := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, name := range ts.names {
		m := res[name]
		var err error
		buf, err = opts.MarshalAppend(buf[:0], m)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", name, err)
		}
		sum := sha256.Sum256(buf)
		h := hex.EncodeToString(sum[:12])
		ts.hashes[name] = h
		ts.items = append(ts.items, m.(types.Resource))
		all.Write([]byte(name))
		all.Write([]byte{0})
		all.Write([]byte(h))
		all.Write([]byte{0})
	}
	ts.version = hex.EncodeToString(all.Sum(nil)[:8])
	return ts, nil
}

// classEntry is what one proxy class gets for one model.
type classEntry struct {
	key   string
	proxy *model.Proxy // representative, ID cleared
	sets  map[string]*typeSet
	// own fingerprints the endpoints that belong to the class's own
	// workload (by IP or WorkloadEntry): if they change, inbound config may
	// change, so an endpoint-only push regenerates the class in full.
	own  string
	snap *cache.Snapshot
}

func (e *classEntry) versions() map[string]string {
	out := make(map[string]string, len(e.sets))
	for t, s := range e.sets {
		out[t] = s.version
	}
	return out
}

// buildSnapshot assembles the go-control-plane snapshot with per-type
// versions and a precomputed delta version map (so the cache never hashes
// resources a second time). One snapshot is shared by every node of the
// class: the cache only reads it, under its own lock.
func (e *classEntry) buildSnapshot() {
	snap := &cache.Snapshot{VersionMap: map[string]map[string]string{}}
	for t, s := range e.sets {
		snap.Resources[cache.GetResponseType(t)] = cache.NewResources(s.version, s.items)
		snap.VersionMap[t] = s.hashes
	}
	e.snap = snap
}

// ClassKey returns the key under which proxies share generated resources.
// It must list every Proxy field translate reads — type, namespace, service
// account, labels, IPs, workload and the class metadata — and nothing else;
// Generate is given only these fields (see classProxy), so a field that is
// read but not keyed shows up as a missing input rather than a wrong cache hit.
func ClassKey(p *model.Proxy, metaKeys []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%s|%s|%s|", p.Type, p.Namespace, p.ServiceAccount, p.Workload)
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		fmt.Fprintf(&b, "%s=%s,", k, p.Labels[k])
	}
	b.WriteByte('|')
	b.WriteString(strings.Join(p.IPs, ","))
	b.WriteByte('|')
	for _, k := range metaKeys {
		if v, ok := p.Metadata[k]; ok {
			fmt.Fprintf(&b, "%s=%s,", k, v)
		}
	}
	return b.String()
}

// classProxy is the representative proxy generation sees for p's class.
func classProxy(p *model.Proxy, metaKeys []string) *model.Proxy {
	c := *p
	c.ID = ""
	c.Metadata = nil
	for _, k := range metaKeys {
		if v, ok := p.Metadata[k]; ok {
			if c.Metadata == nil {
				c.Metadata = map[string]string{}
			}
			c.Metadata[k] = v
		}
	}
	return &c
}

// ownEndpoints fingerprints the endpoints that are the proxy itself.
func ownEndpoints(m *model.Snapshot, p *model.Proxy) string {
	if len(p.IPs) == 0 && p.Workload.Name == "" {
		return ""
	}
	var b strings.Builder
	for _, svc := range m.Services() {
		for _, e := range m.Endpoints(svc.Hostname) {
			if (p.Workload.Name != "" && e.Workload == p.Workload) || slices.Contains(p.IPs, e.Address) {
				fmt.Fprintf(&b, "%s|%s|%d|%d|%d;", svc.Hostname, e.Address, e.Port, e.ServicePort, e.Health)
			}
		}
	}
	return b.String()
}

// generateFull builds every type for a class.
func generateFull(g Generator, m *model.Snapshot, key string, proxy *model.Proxy) (*classEntry, error) {
	res, err := g.Generate(translate.Input{Model: m, Proxy: proxy})
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	e := &classEntry{key: key, proxy: proxy, sets: map[string]*typeSet{}, own: ownEndpoints(m, proxy)}
	for _, t := range xdsTypes {
		ts, err := newTypeSet(res.ByType(t))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", shortType(t), err)
		}
		e.sets[t] = ts
	}
	e.buildSnapshot()
	return e, nil
}

// generateEndpoints rebuilds only EDS for a class, reusing prev's other
// types (and their hashes) unchanged.
func generateEndpoints(g Generator, m *model.Snapshot, prev *classEntry) (*classEntry, error) {
	in := translate.Input{Model: m, Proxy: prev.proxy}
	var eps map[string]proto.Message
	if eg, ok := g.(EndpointGenerator); ok {
		var err error
		if eps, err = eg.GenerateEndpoints(in); err != nil {
			return nil, fmt.Errorf("generate endpoints: %w", err)
		}
	} else {
		res, err := g.Generate(in)
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		eps = res.Endpoints
	}
	ts, err := newTypeSet(eps)
	if err != nil {
		return nil, fmt.Errorf("eds: %w", err)
	}
	e := &classEntry{key: prev.key, proxy: prev.proxy, sets: maps.Clone(prev.sets), own: prev.own}
	e.sets[translate.EndpointType] = ts
	if ts.version == prev.sets[translate.EndpointType].version {
		e.snap = prev.snap // nothing this class sees changed
		return e, nil
	}
	e.buildSnapshot()
	return e, nil
}
