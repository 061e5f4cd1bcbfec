package xds

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/translate"
)

// Generator decides what a proxy gets. translate.Generate satisfies it
// (wrapped in GeneratorFunc); the xds package only decides how to send it.
//
// Generate is called once per proxy class (see ClassKey), not once per
// proxy: it sees a representative Proxy whose ID is empty and whose
// Metadata holds only Config.ClassMetadata keys, so output that depends on
// anything else cannot leak between proxies. Classes are generated in
// parallel, so Generate must be safe for concurrent use.
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

// SplitGenerator is optionally implemented by a Generator (translate's
// does) that can build a proxy's resources in two parts whose union is
// Generate's output:
//
//   - GenerateOutbound is called once per outbound class (OutboundClassKey:
//     the class without IPs and workload) with a proxy whose IPs and
//     Workload are cleared, so it cannot depend on them;
//   - GenerateInbound is called once per class (ClassKey) and should be
//     cheap: it is what distinguishes one workload from another.
//
// Sidecars all have distinct IPs, so without the split every sidecar is
// its own class and pays for full generation. With it, proxies whose
// inbound output is identical (replicas of one workload, or workloads
// serving nothing) also share one snapshot: parts are joined by content.
type SplitGenerator interface {
	GenerateOutbound(in translate.Input) (*translate.Resources, error)
	GenerateInbound(in translate.Input) (*translate.Resources, error)
}

// xdsTypes are the types generated, in ADS push order.
var xdsTypes = []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.RouteType}

// shortType is the Istio metric label of a type URL.
func shortType(typeURL string) string { return translate.ShortType(typeURL) }

// typeSet is one type's resources, already marshalled (see rawResource),
// with per-resource content hashes and the type version derived from them.
type typeSet struct {
	version string
	items   map[string]types.ResourceWithTTL
	hashes  map[string]string // name -> hash, also the delta version map
	// resources is items without TTL, filled in by buildSnapshot (under
	// pushMu) before the set is shared with the cache.
	resources map[string]types.Resource
	// wire holds each resource as sent in delta responses, shared by all.
	wire map[string]*discovery.Resource
	// diffs memoizes diffFrom; guarded by the deltaCache lock.
	diffs []*setDiff
}

// rawResource wraps a resource's deterministic encoding in a message that
// marshals to exactly those bytes: an Empty whose unknown fields are the
// encoding. go-control-plane marshals every resource of every response
// again (its cachedResource lives per response, so per stream); with a
// thousand proxies sharing one snapshot that was the dominant cost of a
// push. Handing it the bytes we hash anyway makes that a copy, and keeps
// only bytes, not proto trees, in memory. It is safe because the cache
// never looks at a resource's concrete type when it is given snapshots
// with explicit names and version maps (buildSnapshot): it indexes by the
// Items keys, compares our hashes and calls proto.Marshal.
func rawResource(b []byte) types.Resource {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	return m
}

// wireMemo remembers, for one push, each resource message's encoding by
// pointer: translate hands the same message to every class that shares it
// (load assignments, for instance), which is then marshalled and hashed
// once instead of once per class. Safe for the parallel generation.
type wireMemo struct {
	mu sync.Mutex
	m  map[proto.Message]*wireEntry
}

type wireEntry struct {
	hash string
	raw  types.Resource
	wire *discovery.Resource
}

func newWireMemo() *wireMemo { return &wireMemo{m: map[proto.Message]*wireEntry{}} }

func (w *wireMemo) get(m proto.Message) *wireEntry {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[m]
}

func (w *wireMemo) put(m proto.Message, e *wireEntry) {
	if w != nil {
		w.mu.Lock()
		w.m[m] = e
		w.mu.Unlock()
	}
}

// newTypeSet marshals every resource deterministically (or takes its
// encoding from memo), hashes it and derives the type version from the
// sorted (name, hash) pairs, so the version changes exactly when the
// content does.
func newTypeSet(typeURL string, res map[string]proto.Message, memo *wireMemo) (*typeSet, error) {
	ts := &typeSet{hashes: make(map[string]string, len(res)), items: make(map[string]types.ResourceWithTTL, len(res)),
		wire: make(map[string]*discovery.Resource, len(res))}
	all := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, name := range slices.Sorted(maps.Keys(res)) {
		m := res[name]
		e := memo.get(m)
		if e == nil || e.wire.Name != name {
			var err error
			buf, err = opts.MarshalAppend(buf[:0], m)
			if err != nil {
				return nil, fmt.Errorf("marshal %s: %w", name, err)
			}
			b := bytes.Clone(buf)
			sum := sha256.Sum256(b)
			h := hex.EncodeToString(sum[:12])
			e = &wireEntry{hash: h, raw: rawResource(b),
				wire: &discovery.Resource{Name: name, Version: h, Resource: &anypb.Any{TypeUrl: typeURL, Value: b}}}
			memo.put(m, e)
		}
		ts.hashes[name] = e.hash
		ts.items[name] = types.ResourceWithTTL{Resource: e.raw}
		ts.wire[name] = e.wire
		all.Write([]byte(name))
		all.Write([]byte{0})
		all.Write([]byte(e.hash))
		all.Write([]byte{0})
	}
	ts.version = hex.EncodeToString(all.Sum(nil)[:8])
	return ts, nil
}

// mergeTypeSets joins the outbound and inbound sets of one type. Names do
// not collide (translate keeps inbound and outbound names apart); if they
// did, inbound wins. An empty side is shared, not copied, so types without
// inbound resources (RDS, EDS, mostly CDS) cost nothing per class.
func mergeTypeSets(out, in *typeSet) *typeSet {
	switch {
	case in == nil || len(in.items) == 0:
		return out
	case out == nil || len(out.items) == 0:
		return in
	}
	ts := &typeSet{items: maps.Clone(out.items), hashes: maps.Clone(out.hashes), wire: maps.Clone(out.wire)}
	maps.Copy(ts.items, in.items)
	maps.Copy(ts.hashes, in.hashes)
	maps.Copy(ts.wire, in.wire)
	sum := sha256.Sum256([]byte(out.version + "+" + in.version))
	ts.version = hex.EncodeToString(sum[:8])
	return ts
}

// part is generated output for one key: a whole class for a plain
// Generator, or one side (outbound or inbound) for a SplitGenerator.
type part struct {
	proxy *model.Proxy // representative the part was generated for
	sets  map[string]*typeSet
	// own fingerprints the endpoints that belong to the class's own
	// workload (by IP or WorkloadEntry), for whole-class parts only: if
	// they change, inbound config may change, so an endpoint-only push
	// regenerates the part in full. Outbound parts never see the workload.
	own string
}

// fingerprint identifies the part's content (its type versions).
func (p *part) fingerprint() string {
	var b strings.Builder
	for _, t := range xdsTypes {
		if s := p.sets[t]; s != nil {
			b.WriteString(s.version)
		}
		b.WriteByte(',')
	}
	return b.String()
}

// classEntry is what one group of proxies gets for one model: the merge of
// an outbound (or whole) part and an inbound part, shared by every class
// whose parts have the same content.
type classEntry struct {
	key  string // outbound key + inbound fingerprint
	sets map[string]*typeSet
	snap *snapshot
}

func (e *classEntry) versions() map[string]string {
	out := make(map[string]string, len(e.sets))
	for t, s := range e.sets {
		out[t] = s.version
	}
	return out
}

// sameVersions reports whether e and o hold the same content.
func (e *classEntry) sameVersions(o *classEntry) bool {
	if o == nil || len(o.sets) != len(e.sets) {
		return false
	}
	for t, s := range e.sets {
		if os := o.sets[t]; os == nil || os.version != s.version {
			return false
		}
	}
	return true
}

// buildSnapshot assembles the snapshot handed to go-control-plane: per-type
// versions and a precomputed delta version map (so the cache never hashes
// resources a second time). One snapshot is shared by every node of the
// entry: the cache only reads it, under its own lock.
func (e *classEntry) buildSnapshot() {
	snap := &snapshot{sets: make(map[string]*typeSet, len(e.sets))}
	for t, s := range e.sets {
		if s.resources == nil {
			s.resources = make(map[string]types.Resource, len(s.items))
			for name, r := range s.items {
				s.resources[name] = r.Resource
			}
		}
		snap.sets[t] = s
	}
	e.snap = snap
}

// snapshot implements cache.ResourceSnapshot over precomputed type sets.
// go-control-plane's own Snapshot rebuilds the name -> resource map on
// every GetResources call, and the delta cache calls it for every response
// it builds: thousands of entries, per proxy and type, under its lock.
type snapshot struct {
	sets map[string]*typeSet // type URL -> set; resources filled in
}

var _ cache.ResourceSnapshot = (*snapshot)(nil)

func (s *snapshot) GetVersion(typeURL string) string {
	if ts := s.sets[typeURL]; ts != nil {
		return ts.version
	}
	return ""
}

func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if ts := s.sets[typeURL]; ts != nil {
		return ts.items
	}
	return nil
}

func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	if ts := s.sets[typeURL]; ts != nil {
		return ts.resources
	}
	return nil
}

// ConstructVersionMap is a no-op: hashes are computed with the resources.
func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string {
	if ts := s.sets[typeURL]; ts != nil {
		return ts.hashes
	}
	return nil
}

// newClassEntry merges an outbound (or whole) part with an optional inbound part.
func newClassEntry(outKey string, out, in *part) *classEntry {
	e := &classEntry{key: outKey, sets: make(map[string]*typeSet, len(xdsTypes))}
	if in != nil {
		e.key += "\x00" + in.fingerprint()
	}
	for _, t := range xdsTypes {
		var is *typeSet
		if in != nil {
			is = in.sets[t]
		}
		e.sets[t] = mergeTypeSets(out.sets[t], is)
	}
	return e
}

// ClassKey returns the key under which proxies share generated resources.
// It must list every Proxy field translate reads — type, namespace, service
// account, labels, IPs, workload and the class metadata — and nothing else;
// Generate is given only these fields (see classProxy), so a field that is
// read but not keyed shows up as a missing input rather than a wrong cache hit.
func ClassKey(p *model.Proxy, metaKeys []string) string {
	return classKey(p, metaKeys, true)
}

// OutboundClassKey is ClassKey without IPs and workload: the key of a
// SplitGenerator's outbound part, which is given a proxy without them
// (see outboundProxy).
func OutboundClassKey(p *model.Proxy, metaKeys []string) string {
	return classKey(p, metaKeys, false)
}

func classKey(p *model.Proxy, metaKeys []string, workload bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%s|%s|", p.Type, p.Namespace, p.ServiceAccount)
	if workload {
		fmt.Fprintf(&b, "%s", p.Workload)
	}
	b.WriteByte('|')
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		fmt.Fprintf(&b, "%s=%s,", k, p.Labels[k])
	}
	b.WriteByte('|')
	if workload {
		b.WriteString(strings.Join(p.IPs, ","))
	}
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

// outboundProxy is the representative of p's outbound class: classProxy
// without IPs and workload.
func outboundProxy(p *model.Proxy, metaKeys []string) *model.Proxy {
	c := classProxy(p, metaKeys)
	c.IPs, c.Workload = nil, config.Key{}
	return c
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

// newPart hashes generated resources into a part.
func newPart(res *translate.Resources, proxy *model.Proxy, memo *wireMemo) (*part, error) {
	p := &part{proxy: proxy, sets: make(map[string]*typeSet, len(xdsTypes))}
	for _, t := range xdsTypes {
		ts, err := newTypeSet(t, res.ByType(t), memo)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", shortType(t), err)
		}
		p.sets[t] = ts
	}
	return p, nil
}

// generateWhole builds every type for a class with a plain Generator.
func generateWhole(g Generator, m *model.Snapshot, proxy *model.Proxy, memo *wireMemo) (*part, error) {
	res, err := g.Generate(translate.Input{Model: m, Proxy: proxy})
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	p, err := newPart(res, proxy, memo)
	if err != nil {
		return nil, err
	}
	p.own = ownEndpoints(m, proxy)
	return p, nil
}

// generateOutbound builds a SplitGenerator's outbound part.
func generateOutbound(g SplitGenerator, m *model.Snapshot, proxy *model.Proxy, memo *wireMemo) (*part, error) {
	res, err := g.GenerateOutbound(translate.Input{Model: m, Proxy: proxy})
	if err != nil {
		return nil, fmt.Errorf("generate outbound: %w", err)
	}
	return newPart(res, proxy, memo)
}

// generateInbound builds a SplitGenerator's inbound part.
func generateInbound(g SplitGenerator, m *model.Snapshot, proxy *model.Proxy, memo *wireMemo) (*part, error) {
	res, err := g.GenerateInbound(translate.Input{Model: m, Proxy: proxy})
	if err != nil {
		return nil, fmt.Errorf("generate inbound: %w", err)
	}
	return newPart(res, proxy, memo)
}

// generateEndpoints rebuilds only EDS for a whole or outbound part, reusing
// prev's other types (and their hashes) unchanged.
func generateEndpoints(g Generator, m *model.Snapshot, prev *part, memo *wireMemo) (*part, error) {
	in := translate.Input{Model: m, Proxy: prev.proxy}
	var eps map[string]proto.Message
	if eg, ok := g.(EndpointGenerator); ok {
		var err error
		if eps, err = eg.GenerateEndpoints(in); err != nil {
			return nil, fmt.Errorf("generate endpoints: %w", err)
		}
	} else {
		gen := g.Generate
		if sg, ok := g.(SplitGenerator); ok {
			gen = sg.GenerateOutbound
		}
		res, err := gen(in)
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		eps = res.Endpoints
	}
	ts, err := newTypeSet(translate.EndpointType, eps, memo)
	if err != nil {
		return nil, fmt.Errorf("eds: %w", err)
	}
	p := &part{proxy: prev.proxy, sets: maps.Clone(prev.sets), own: prev.own}
	p.sets[translate.EndpointType] = ts
	return p, nil
}

// parallel calls f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= n {
					return
				}
				f(j)
			}
		}()
	}
	wg.Wait()
}
