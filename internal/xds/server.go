// Package xds serves Envoy xDS v3 (ADS, state-of-the-world and delta) to
// connected proxies. It owns how config is sent — streams, per-node
// snapshots, debounced pushes, ACK/NACK tracking, metrics and /debug/syncz —
// and nothing about what is sent: a Generator (translate) builds the
// resources. It never imports Kubernetes.
//
// Streaming is go-control-plane's (pkg/server/v3). State-of-the-world
// streams and proxyless gRPC are answered by its SnapshotCache keyed by
// node id; delta streams of Envoy-like proxies by this package's
// deltaCache, which sends class-wide pre-marshalled resources and diffs
// classes rather than proxies (see deltaCache for why). This package adds,
// through server callbacks: parsing the node into a model.Proxy and
// setting its snapshot before the cache answers the first request;
// generation shared by proxy class, in parallel, split into an outbound
// part shared by proxies that differ only in IPs and workload and a cheap
// inbound part (SplitGenerator); content-hash versions per resource and
// type so unchanged types are not resent; endpoint-only pushes; a guard
// against NACK resend loops (see onSotWRequest); a second, non-ADS
// cache for proxyless gRPC (see New); and, for the control plane,
// connect/disconnect hooks and Istio's health reports (hooks.go).
//
// Known cost left in the SnapshotCache path (SotW, proxyless gRPC): each
// response copies and hashes its resources again and every ACK re-diffs
// the type under the cache's single lock. bench/xdsload measures delta.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/translate"
)

// Clock is the time source; tests inject a fake one to drive debouncing.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultClassMetadata are the node metadata keys generation may read (and
// that therefore split proxies into classes). Other metadata, such as pod
// names, is hidden from the generator so identical workloads share output.
// It includes every key translate reads (translate.ProxyMetadataKeys).
var DefaultClassMetadata = append([]string{MetaGenerator, "CLUSTER_ID", "MESH_ID", "INTERCEPTION_MODE", "ISTIO_VERSION", "DNS_CAPTURE", "DNS_AUTO_ALLOCATE"},
	translate.ProxyMetadataKeys...)

// Config configures a Server.
type Config struct {
	// Generator builds each proxy class's resources. Required.
	Generator Generator
	// Debounce is how long the model must be quiet before a push (default 100ms).
	Debounce time.Duration
	// MaxDebounce bounds the wait while updates keep coming (default 1s).
	MaxDebounce time.Duration
	// ClassMetadata lists the node metadata keys the generator may read
	// (default DefaultClassMetadata). See ClassKey.
	ClassMetadata []string
	// PerTypeServices also registers the non-aggregated CDS/EDS/LDS/RDS services.
	PerTypeServices bool
	// Logger defaults to slog.Default(); the component=xds attribute is added.
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them in a private registry.
	Registerer prometheus.Registerer
	// Clock defaults to the wall clock.
	Clock Clock

	// OnConnect, if set, is called when a node's first stream opens, before
	// anything is served to it, with that stream's context (which carries
	// what the gRPC interceptors put there, such as the authenticated
	// identity). An error refuses the stream: PermissionDenied with the
	// error's message, or the error's own gRPC status if it has one.
	// Calls for one node id never overlap with OnDisconnect for that id.
	OnConnect func(ctx context.Context, p *model.Proxy) error
	// OnDisconnect, if set, is called when the last stream of a node that
	// OnConnect accepted has closed.
	OnDisconnect func(p *model.Proxy)
	// OnHealth, if set, receives the health reports a proxy sends as
	// HealthInfoType requests (Istio's agent: probe results of the host).
	OnHealth func(p *model.Proxy, healthy bool, msg string)
}

// Server is the xDS server. Create it with New, Register it on a gRPC
// server, feed it models with Update and drive pushes with Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	metrics *metrics
	cache   cache.SnapshotCache // ADS-ordered, for Envoy-like proxies' SotW streams
	delta   *deltaCache         // Envoy-like proxies' delta streams
	grpc    cache.SnapshotCache // unordered, for proxyless gRPC (see New)
	xds     serverv3.Server
	ctx     context.Context
	cancel  context.CancelFunc
	kick    chan struct{}

	// pushMu serializes pushes, proxies joining and proxies leaving, so a
	// proxy never misses a push nor keeps a snapshot after it left. Stream
	// goroutines take it only on their first request and on close, never
	// for ACKs.
	pushMu sync.Mutex
	pushed *model.Snapshot // model of the last push; guarded by pushMu
	gen    *generation     // generated output for pushed; guarded by pushMu

	split SplitGenerator // cfg.Generator if it implements SplitGenerator

	mu           sync.Mutex // guards the fields below; held briefly, never across generation
	latest       *model.Snapshot
	firstPending time.Time // receipt of the oldest update not yet pushed; zero if none
	lastUpdate   time.Time
	nodes        map[string]*nodeState
	streams      map[streamKey]string // open stream -> node id
	streamCtx    map[streamKey]context.Context

	hooks connectHooks // orders OnConnect/OnDisconnect per node id
}

// streamKey identifies a stream: go-control-plane numbers SotW and delta
// streams with separate counters, so the id alone is ambiguous.
type streamKey struct {
	delta bool
	id    int64
}

// nodeState is one connected node (proxy); guarded by Server.mu except
// snap, which is guarded by pushMu.
type nodeState struct {
	id          string
	proxy       *model.Proxy
	class       string // ClassKey
	outKey      string // OutboundClassKey for a SplitGenerator, else class
	streams     int
	kind        string
	connectedAt time.Time
	types       map[string]*typeState
	snap        *snapshot
}

func (n *nodeState) typeState(typeURL string) *typeState {
	t := n.types[typeURL]
	if t == nil {
		t = &typeState{}
		n.types[typeURL] = t
	}
	return t
}

// New returns a Server. It panics if cfg.Generator is nil.
func New(cfg Config) *Server {
	if cfg.Generator == nil {
		panic("xds: Config.Generator is required")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if cfg.MaxDebounce <= 0 {
		cfg.MaxDebounce = time.Second
	}
	if cfg.MaxDebounce < cfg.Debounce {
		cfg.MaxDebounce = cfg.Debounce
	}
	if cfg.ClassMetadata == nil {
		cfg.ClassMetadata = DefaultClassMetadata
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "xds"),
		clock:     cfg.Clock,
		kick:      make(chan struct{}, 1),
		gen:       newGeneration(),
		nodes:     map[string]*nodeState{},
		streams:   map[streamKey]string{},
		streamCtx: map[streamKey]context.Context{},
	}
	s.split, _ = cfg.Generator.(SplitGenerator)
	m, err := newMetrics(reg)
	if err != nil {
		s.log.Warn("registering metrics", "error", err)
	}
	s.metrics = m
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// Two caches behind a mux: sidecars and routers get ADS mode, which
	// orders responses (CDS before EDS, LDS before RDS) but answers a SotW
	// request naming resources only if the names cover every resource of
	// the type. Proxyless gRPC clients always ask for a few names (one
	// listener "host:port", its route and cluster), so they would never be
	// answered; their cache runs without ADS mode and filters by name.
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, cpLogger{s.log})
	// Delta streams of Envoy-like proxies get deltaCache (see there why).
	s.grpc = cache.NewSnapshotCache(false, cache.IDHash{}, cpLogger{s.log})
	s.delta = newDeltaCache()
	mux := &cache.MuxCache{
		Classify: func(r *cache.Request) string {
			if r.GetTypeUrl() == HealthInfoType {
				return "health"
			}
			return s.cacheKey(r.GetNode().GetId())
		},
		ClassifyDelta: func(r *cache.DeltaRequest) string {
			if r.GetTypeUrl() == HealthInfoType {
				return "health"
			}
			if k := s.cacheKey(r.GetNode().GetId()); k != "ads" {
				return k
			}
			return "delta"
		},
		Caches: map[string]cache.Cache{"ads": s.cache, "grpc": s.grpc, "delta": s.delta, "health": healthSink{}},
	}
	s.xds = serverv3.NewServer(s.ctx, mux, callbacks{s})
	return s
}

// Register registers the aggregated discovery service (SotW and delta) and,
// if configured, the per-type services on g.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	if s.cfg.PerTypeServices {
		clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
		endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
		listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
		routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	}
}

// Update hands the server a new model. It never blocks on a push: pushes
// are debounced and run by Run.
func (s *Server) Update(m *model.Snapshot) {
	if m == nil {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	s.latest = m
	if s.firstPending.IsZero() {
		s.firstPending = now
	}
	s.lastUpdate = now
	s.mu.Unlock()
	s.metrics.events.Inc()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run pushes debounced updates until ctx is done; then it ends every open
// stream. A push starts once no update arrived for Debounce, or MaxDebounce
// after the first unpushed update, whichever comes first.
func (s *Server) Run(ctx context.Context) error {
	defer s.cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
		for {
			s.mu.Lock()
			first, last := s.firstPending, s.lastUpdate
			s.mu.Unlock()
			if first.IsZero() {
				break
			}
			deadline := last.Add(s.cfg.Debounce)
			if max := first.Add(s.cfg.MaxDebounce); max.Before(deadline) {
				deadline = max
			}
			wait := deadline.Sub(s.clock.Now())
			if wait <= 0 {
				s.push()
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-s.clock.After(wait):
			case <-s.kick:
			}
		}
	}
}

// push regenerates every connected proxy class for the latest model and
// hands changed snapshots to the cache, which sends only types whose
// version changed (SotW) or resources whose hash changed (delta).
//
// Generation runs in phases, each part in parallel (bounded by
// GOMAXPROCS): outbound (or whole-class) parts per outbound key, then, for
// a SplitGenerator, inbound parts per class; then parts are joined into
// entries by content, and entries whose versions did not change keep their
// previous snapshot, so their proxies are not touched.
func (s *Server) push() {
	s.mu.Lock()
	m, first := s.latest, s.firstPending
	s.firstPending = time.Time{}
	s.mu.Unlock()
	if m == nil {
		return
	}

	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	start := s.clock.Now()
	endpointOnly := endpointOnlyChange(s.pushed, m)
	prev := s.gen

	s.mu.Lock()
	nodes := slices.Collect(maps.Values(s.nodes))
	s.mu.Unlock()

	// Distinct keys, each with a node to stand for it.
	outNodes, classNodes := map[string]*nodeState{}, map[string]*nodeState{}
	for _, n := range nodes {
		if outNodes[n.outKey] == nil {
			outNodes[n.outKey] = n
		}
		if classNodes[n.class] == nil {
			classNodes[n.class] = n
		}
	}
	next := newGeneration()
	memo := newWireMemo()
	var failed atomic.Int64
	fail := func(n *nodeState, err error) {
		failed.Add(1)
		s.log.Error("generation failed; proxies keep their previous config", "proxy", n.id, "error", err)
	}

	outKeys := slices.Collect(maps.Keys(outNodes))
	outParts := make([]*part, len(outKeys))
	parallel(len(outKeys), func(i int) {
		k, n := outKeys[i], outNodes[outKeys[i]]
		old := prev.outer[k]
		var p *part
		var err error
		switch {
		case endpointOnly && old != nil && (s.split != nil || ownEndpoints(m, old.proxy) == old.own):
			p, err = generateEndpoints(s.cfg.Generator, m, old, memo)
		case s.split != nil:
			p, err = generateOutbound(s.split, m, outboundProxy(n.proxy, s.cfg.ClassMetadata), memo)
		default:
			p, err = generateWhole(s.cfg.Generator, m, classProxy(n.proxy, s.cfg.ClassMetadata), memo)
		}
		if err != nil {
			fail(n, err)
			p = old // keep serving the last good config, if any
		}
		outParts[i] = p
	})
	for i, k := range outKeys {
		if outParts[i] != nil {
			next.outer[k] = outParts[i]
		}
	}
	if s.split != nil {
		classKeys := slices.Collect(maps.Keys(classNodes))
		inParts := make([]*part, len(classKeys))
		parallel(len(classKeys), func(i int) {
			k, n := classKeys[i], classNodes[classKeys[i]]
			p, err := generateInbound(s.split, m, classProxy(n.proxy, s.cfg.ClassMetadata), memo)
			if err != nil {
				fail(n, err)
				p = prev.inner[k]
			}
			inParts[i] = p
		})
		for i, k := range classKeys {
			if inParts[i] != nil {
				next.inner[k] = inParts[i]
			}
		}
	}

	changed := map[string]bool{}
	for k, n := range classNodes {
		e := next.entry(k, n.outKey, prev)
		if e == nil {
			continue
		}
		if old := prev.classes[k]; old != e {
			for t, ts := range e.sets {
				if old == nil || old.sets[t].version != ts.version {
					changed[shortType(t)] = true
				}
			}
		}
	}
	generated := s.clock.Now()
	updated := 0
	for _, n := range nodes {
		e := next.classes[n.class]
		if e == nil || n.snap == e.snap {
			continue
		}
		if err := s.setSnapshot(n, e.snap); err != nil {
			s.log.Error("set snapshot", "proxy", n.id, "error", err)
			continue
		}
		updated++
	}
	s.gen, s.pushed = next, m

	end := s.clock.Now()
	dur := end.Sub(start)
	s.metrics.pushTime.Observe(dur.Seconds())
	s.metrics.pushDur.Observe(dur.Seconds())
	if !first.IsZero() {
		s.metrics.convergence.Observe(end.Sub(first).Seconds())
	}
	s.log.Info("push", "version", m.Version, "proxies", len(nodes), "updated", updated, "classes", len(classNodes),
		"outboundClasses", len(outKeys), "snapshots", len(next.entries), "endpointOnly", endpointOnly,
		"changed", slices.Sorted(maps.Keys(changed)), "failed", failed.Load(), "duration", dur, "generation", generated.Sub(start))
}

// generation is the generated output for one pushed model; guarded by pushMu.
type generation struct {
	outer   map[string]*part       // outbound (or whole-class) key -> part
	inner   map[string]*part       // class key -> inbound part (SplitGenerator only)
	entries map[string]*classEntry // classEntry.key -> entry
	classes map[string]*classEntry // class key -> entry
}

func newGeneration() *generation {
	return &generation{outer: map[string]*part{}, inner: map[string]*part{},
		entries: map[string]*classEntry{}, classes: map[string]*classEntry{}}
}

// entry joins the parts of a class into its entry, sharing entries by
// content within g and reusing prev's entry (and snapshot) when nothing
// changed. It returns nil if the class has no outbound part.
func (g *generation) entry(class, outKey string, prev *generation) *classEntry {
	out := g.outer[outKey]
	if out == nil {
		return nil
	}
	e := newClassEntry(outKey, out, g.inner[class])
	if have := g.entries[e.key]; have != nil {
		e = have
	} else {
		if old := prev.entries[e.key]; old != nil && e.sameVersions(old) {
			e = old
		} else {
			e.buildSnapshot()
		}
		g.entries[e.key] = e
	}
	g.classes[class] = e
	return e
}

// join registers the stream's node on its first request and, if a model
// has been pushed, sets the node's snapshot before the cache sees the
// request, so the first answer is the proxy's own config.
func (s *Server) join(key streamKey, node *corev3.Node) (string, error) {
	proxy, err := ProxyFromNode(node)
	if errors.Is(err, ErrNoNodeID) {
		return "", grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	var metaErr *NodeMetadataError
	if errors.As(err, &metaErr) {
		s.log.Warn("serving node with default values", "proxy", proxy.ID, "error", err)
	}
	kind := StreamSotW
	if key.delta {
		kind = StreamDelta
	}

	unlock := s.hooks.lock(proxy.ID)
	defer unlock()
	s.mu.Lock()
	_, existing := s.nodes[proxy.ID]
	s.mu.Unlock()
	if !existing {
		// Outside pushMu: the hook may write to a store, and pushes must not wait.
		if err := s.connect(s.streamContext(key), proxy); err != nil {
			return "", err
		}
	}

	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	n := s.nodes[proxy.ID]
	if n == nil {
		n = &nodeState{id: proxy.ID, proxy: proxy, class: ClassKey(proxy, s.cfg.ClassMetadata),
			connectedAt: s.clock.Now(), types: map[string]*typeState{}}
		n.outKey = n.class
		if s.split != nil {
			n.outKey = OutboundClassKey(proxy, s.cfg.ClassMetadata)
		}
		s.nodes[proxy.ID] = n
		s.metrics.connected.WithLabelValues(proxy.Type.String()).Inc()
	}
	n.streams++
	n.kind = kind
	s.streams[key] = n.id
	s.mu.Unlock()

	if n.snap != nil || s.pushed == nil {
		return n.id, nil // already served, or nothing to serve until the first push
	}
	e := s.gen.classes[n.class]
	if e == nil {
		if e, err = s.generateClass(n); err != nil {
			s.log.Error("generation failed for new proxy", "proxy", n.id, "error", err)
			return n.id, nil
		}
	}
	if err := s.setSnapshot(n, e.snap); err != nil {
		s.log.Error("set snapshot", "proxy", n.id, "error", err)
	}
	return n.id, nil
}

// generateClass generates the missing parts of a joining node's class for
// the pushed model, reusing parts other classes already have; pushMu must
// be held.
func (s *Server) generateClass(n *nodeState) (*classEntry, error) {
	g := s.gen
	if g.outer[n.outKey] == nil {
		var p *part
		var err error
		if s.split != nil {
			p, err = generateOutbound(s.split, s.pushed, outboundProxy(n.proxy, s.cfg.ClassMetadata), nil)
		} else {
			p, err = generateWhole(s.cfg.Generator, s.pushed, classProxy(n.proxy, s.cfg.ClassMetadata), nil)
		}
		if err != nil {
			return nil, err
		}
		g.outer[n.outKey] = p
	}
	if s.split != nil && g.inner[n.class] == nil {
		p, err := generateInbound(s.split, s.pushed, classProxy(n.proxy, s.cfg.ClassMetadata), nil)
		if err != nil {
			return nil, err
		}
		g.inner[n.class] = p
	}
	return g.entry(n.class, n.outKey, g), nil
}

// leave forgets a closed stream; the node's snapshot and status go with
// its last stream.
func (s *Server) leave(key streamKey) {
	s.mu.Lock()
	delete(s.streamCtx, key)
	id, ok := s.streams[key]
	s.mu.Unlock()
	if !ok {
		return
	}
	unlock := s.hooks.lock(id)
	defer unlock()
	if p := s.forget(key, id); p != nil && s.cfg.OnDisconnect != nil {
		s.cfg.OnDisconnect(p)
	}
}

// forget removes a closed stream and, with its last stream, the node; it
// returns the node's proxy when the node is gone.
func (s *Server) forget(key streamKey, id string) *model.Proxy {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	if _, ok := s.streams[key]; !ok {
		s.mu.Unlock()
		return nil
	}
	delete(s.streams, key)
	n := s.nodes[id]
	n.streams--
	last := n.streams == 0
	if last {
		delete(s.nodes, id)
		s.metrics.connected.WithLabelValues(n.proxy.Type.String()).Dec()
	}
	s.mu.Unlock()
	if !last {
		return nil
	}
	s.cacheFor(n.proxy).ClearSnapshot(id)
	if n.proxy.Type != model.ProxyGRPC {
		s.delta.ClearSnapshot(id)
	}
	return n.proxy
}

// cacheKey names the cache serving a node (the MuxCache classifier).
func (s *Server) cacheKey(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[id]; n != nil && n.proxy.Type == model.ProxyGRPC {
		return "grpc"
	}
	return "ads"
}

// setSnapshot hands a node its snapshot; pushMu must be held. Envoy-like
// proxies get it in both the SotW and the delta cache (either may serve
// their streams); each is cheap for a node without watches there.
func (s *Server) setSnapshot(n *nodeState, snap *snapshot) error {
	if err := s.cacheFor(n.proxy).SetSnapshot(s.ctx, n.id, snap); err != nil {
		return err
	}
	if n.proxy.Type != model.ProxyGRPC {
		s.delta.SetSnapshot(n.id, snap)
	}
	n.snap = snap
	return nil
}

// cacheFor returns the SotW cache serving p (and its delta cache for proxyless gRPC).
func (s *Server) cacheFor(p *model.Proxy) cache.SnapshotCache {
	if p.Type == model.ProxyGRPC {
		return s.grpc
	}
	return s.cache
}

// nodeOf returns the node of an open stream; s.mu must be held.
func (s *Server) nodeOf(key streamKey) *nodeState {
	if id, ok := s.streams[key]; ok {
		return s.nodes[id]
	}
	return nil
}

func (s *Server) known(key streamKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.streams[key]
	return ok
}

// onSotWRequest handles a SotW request before go-control-plane does.
//
// A SotW NACK carries the last *accepted* version; the SnapshotCache
// compares it with the snapshot version, finds them different and resends
// the rejected config at once — a proxy that always rejects would loop
// forever. Rewriting the NACK's version_info to the rejected version makes
// the cache wait for the next real change instead. (Delta has no such loop:
// its per-resource state already records what was sent.)
func (s *Server) onSotWRequest(id int64, req *discovery.DiscoveryRequest) error {
	key := streamKey{id: id}
	if !s.known(key) {
		if _, err := s.join(key, req.GetNode()); err != nil {
			return err
		}
	}
	if req.GetTypeUrl() == HealthInfoType {
		s.health(key, req.GetErrorDetail(), req.GetErrorDetail() != nil)
		return nil
	}
	if nacked := s.recordRequest(key, req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail()); nacked != "" {
		req.VersionInfo = nacked
	}
	return nil
}

func (s *Server) onDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	key := streamKey{delta: true, id: id}
	if !s.known(key) {
		if _, err := s.join(key, req.GetNode()); err != nil {
			return err
		}
	}
	if req.GetTypeUrl() == HealthInfoType {
		s.health(key, req.GetErrorDetail(), req.GetErrorDetail() != nil)
		return nil
	}
	s.recordRequest(key, req.GetTypeUrl(), "", req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

// callbacks adapts Server to go-control-plane's server callbacks.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.openStream(ctx, streamKey{id: id})
	return nil
}
func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.s.leave(streamKey{id: id}) }
func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return c.s.onSotWRequest(id, req)
}
func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.recordSent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
}
func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.openStream(ctx, streamKey{delta: true, id: id})
	return nil
}
func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.leave(streamKey{delta: true, id: id})
}
func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	return c.s.onDeltaRequest(id, req)
}
func (c callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.recordSent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
}
func (c callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return grpcstatus.Error(codes.Unimplemented, "xds: REST fetch is not served")
}
func (c callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// cpLogger routes go-control-plane's logging to slog. Its Info and Warn
// lines are per request (watch opened, names not in snapshot), so they go
// to Debug; formatting happens only when Debug is enabled.
type cpLogger struct{ l *slog.Logger }

func (c cpLogger) debug(format string, args []any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (c cpLogger) Debugf(format string, args ...any) { c.debug(format, args) }
func (c cpLogger) Infof(format string, args ...any)  { c.debug(format, args) }
func (c cpLogger) Warnf(format string, args ...any)  { c.debug(format, args) }
func (c cpLogger) Errorf(format string, args ...any) { c.l.Warn(fmt.Sprintf(format, args...)) }
