// Package xdsclient is weft-proxy's Envoy xDS v3 client: one ADS stream
// (delta by default, state-of-the-world supported) that subscribes to
// clusters and listeners, follows them to endpoints and route configurations
// in Envoy's dependency order, hands every candidate configuration to an
// Apply callback, ACKs what Apply accepted and NACKs what it rejected (the
// last good configuration keeps serving), and reconnects with jittered
// exponential back-off, re-announcing the versions it holds.
//
// The package knows nothing about how configuration is enforced; the proxy
// wires Apply to runtime.Build and a runtime.Holder.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Envoy v3 type URLs the client subscribes to.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// typeOrder is Envoy's dependency order: CDS, EDS, LDS, RDS.
var typeOrder = [...]string{ClusterType, EndpointType, ListenerType, RouteType}

const hcmName = "envoy.filters.network.http_connection_manager"

// Config configures a Client.
type Config struct {
	// ServerAddr is the control plane's gRPC target, e.g. "weftd.weft:15012".
	ServerAddr string
	// DialOptions are passed to grpc.NewClient. When they carry no transport
	// credentials the connection is plaintext (development only); TLS is added
	// by the caller with grpc.WithTransportCredentials.
	DialOptions []grpc.DialOption
	// Node identifies this proxy to the control plane. Required.
	Node *corev3.Node
	// StateOfTheWorld selects the SotW ADS protocol; the default is delta xDS.
	StateOfTheWorld bool
	// Backoff between reconnect attempts.
	Backoff Backoff
	// InitialFetchTimeout bounds how long the first listener subscription waits
	// for cluster warming (EDS). Default 15s, like Envoy.
	InitialFetchTimeout time.Duration
	// Logger receives connection and NACK events; default slog.Default().
	Logger *slog.Logger
	// Apply receives every candidate configuration; a non-nil error rejects
	// it (NACK with the error text) and the previous configuration stays.
	// It is called from one goroutine at a time. Required.
	Apply func(Update) error
}

// Backoff is jittered exponential back-off.
type Backoff struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 30s
	Jitter  float64       // fraction in [0,1]; default 0.2
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 500 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = 0.2
	}
	return b
}

// delay returns the wait before reconnect attempt n (0-based).
func (b Backoff) delay(n int) time.Duration {
	d := b.Initial
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	j := (rand.Float64()*2 - 1) * b.Jitter
	return time.Duration(float64(d) * (1 + j))
}

// Update is a complete candidate configuration.
type Update struct {
	// TypeURL and Version identify the response that produced this candidate.
	TypeURL string
	Version string
	// Resources is the whole view (clusters, endpoints, listeners, routes, in
	// that order). Unchanged resources keep their pointers between updates so
	// a consumer can compare by identity before falling back to proto.Equal.
	Resources []proto.Message
	// Warming lists dependencies referenced by Resources but not received
	// yet: EndpointType -> EDS service names of EDS clusters without an
	// assignment, RouteType -> RDS names of listeners without their route
	// configuration. Envoy keeps such new clusters and listeners warming; a
	// listener manager can do the same by not opening those listeners yet.
	Warming map[string][]string
}

// Status is the client's state for the admin endpoint.
type Status struct {
	Connected     bool
	LastError     string
	LastErrorTime time.Time
	Reconnects    int
	Types         map[string]TypeStatus
}

// TypeStatus is per-type xDS state.
type TypeStatus struct {
	// Version is the last accepted version (SotW version_info, or the
	// system_version_info of the last accepted delta response).
	Version   string
	Nonce     string // last nonce received
	Resources int
	// Subscribed lists the names subscribed (nil for wildcard types).
	Subscribed []string
	ACKs       uint64
	NACKs      uint64
	LastACK    time.Time
	LastNACK   time.Time
	// NACKDetail is the error_detail of the last NACK.
	NACKDetail string
}

// Client is an ADS client. Create with New, then call Run.
type Client struct {
	cfg Config
	log *slog.Logger

	// state is owned by the Run goroutine.
	types map[string]*typeState
	// everWarm is true once the first LDS subscription went out: after that
	// the startup ordering no longer applies (also on reconnect).
	everWarm bool

	mu     sync.Mutex
	status Status
	// health is the latest workload health report (nil: none); healthCh
	// wakes the stream loop to send it.
	health   *healthReport
	healthCh chan struct{}
}

type entry struct {
	msg     proto.Message
	version string // delta resource version
}

type typeState struct {
	url       string
	resources map[string]entry
	version   string
	nonce     string
	// names is the subscription for EDS/RDS; nil means wildcard (CDS/LDS).
	names    map[string]bool
	wildcard bool
	// requested is true once a subscription for this type was sent on the
	// current stream.
	requested bool
	// sent is the name set last sent on this stream (delta diffing).
	sent map[string]bool
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.ServerAddr == "" {
		return nil, errors.New("xdsclient: ServerAddr is required")
	}
	if cfg.Node == nil {
		return nil, errors.New("xdsclient: Node is required")
	}
	if cfg.Apply == nil {
		return nil, errors.New("xdsclient: Apply is required")
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	if cfg.InitialFetchTimeout <= 0 {
		cfg.InitialFetchTimeout = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Client{cfg: cfg, log: log.With("component", "xdsclient", "server", cfg.ServerAddr), types: map[string]*typeState{}, healthCh: make(chan struct{}, 1)}
	for _, t := range typeOrder {
		c.types[t] = &typeState{url: t, resources: map[string]entry{}, wildcard: t == ClusterType || t == ListenerType}
		if !c.types[t].wildcard {
			c.types[t].names = map[string]bool{}
		}
	}
	c.status.Types = map[string]TypeStatus{}
	return c, nil
}

// Status returns a copy of the current status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Types = make(map[string]TypeStatus, len(c.status.Types))
	for k, v := range c.status.Types {
		s.Types[k] = v
	}
	return s
}

func (c *Client) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

func (c *Client) typeStatus(url string, f func(*TypeStatus)) {
	c.mu.Lock()
	ts := c.status.Types[url]
	f(&ts)
	c.status.Types[url] = ts
	c.mu.Unlock()
}

// Run connects and serves until ctx is done; it returns ctx.Err(). Stream
// failures are retried with back-off; the last applied configuration is
// never withdrawn while disconnected.
func (c *Client) Run(ctx context.Context) error {
	opts := c.cfg.DialOptions
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient(c.cfg.ServerAddr, opts...)
	if err != nil {
		return fmt.Errorf("xdsclient: dial %s: %w", c.cfg.ServerAddr, err)
	}
	defer cc.Close()
	attempt := 0
	for {
		progressed, err := c.runStream(ctx, cc)
		if ctx.Err() != nil {
			c.setStatus(func(s *Status) { s.Connected = false })
			return ctx.Err()
		}
		if progressed {
			attempt = 0
		}
		d := c.cfg.Backoff.delay(attempt)
		attempt++
		c.log.Warn("xDS stream ended; reconnecting", "err", err, "backoff", d)
		c.setStatus(func(s *Status) {
			s.Connected = false
			s.Reconnects++
			if err != nil {
				s.LastError, s.LastErrorTime = err.Error(), time.Now()
			}
		})
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// runStream runs one ADS stream; progressed is true when at least one
// response was received (resets the back-off).
func (c *Client) runStream(ctx context.Context, cc *grpc.ClientConn) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var s stream
	if c.cfg.StateOfTheWorld {
		s, err = newSotwStream(ctx, cc, c)
	} else {
		s, err = newDeltaStream(ctx, cc, c)
	}
	if err != nil {
		return false, err
	}
	for _, t := range c.types {
		t.requested, t.nonce, t.sent = false, "", nil
	}
	c.setStatus(func(st *Status) { st.Connected = true })
	c.log.Info("xDS stream open", "delta", !c.cfg.StateOfTheWorld)

	// Startup follows Envoy: CDS first; EDS for the EDS clusters; LDS once
	// clusters are warm (or InitialFetchTimeout); RDS for the HCMs' routes.
	// On reconnect with state everything is requested at once.
	if err := c.subscribe(s, ClusterType); err != nil {
		return false, err
	}
	if c.everWarm {
		for _, t := range []string{EndpointType, ListenerType, RouteType} {
			if err := c.subscribe(s, t); err != nil {
				return false, err
			}
		}
	}
	if h := c.currentHealth(); h != nil {
		if err := s.health(h); err != nil {
			return false, err
		}
	}
	recv := make(chan response, 1)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := s.recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case recv <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	warmTimer := time.NewTimer(c.cfg.InitialFetchTimeout)
	defer warmTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case err := <-errc:
			return progressed, err
		case <-warmTimer.C:
			if !c.types[ListenerType].requested {
				c.log.Warn("cluster warming timed out; subscribing to listeners")
				if err := c.subscribe(s, ListenerType); err != nil {
					return progressed, err
				}
			}
		case <-c.healthCh:
			if h := c.currentHealth(); h != nil {
				if err := s.health(h); err != nil {
					return progressed, err
				}
			}
		case r := <-recv:
			progressed = true
			if err := c.handle(s, r); err != nil {
				return progressed, err
			}
		}
	}
}

// response is a decoded response of either protocol.
type response struct {
	typeURL string
	version string
	nonce   string
	// SotW: full list for the type (or the requested names).
	// Delta: changed resources and removals.
	resources []*anypb.Any
	delta     []deltaResource
	removed   []string
	isDelta   bool
}

type deltaResource struct {
	name     string
	version  string
	resource *anypb.Any
}

// stream abstracts the two ADS protocols.
type stream interface {
	recv() (response, error)
	// request subscribes (or re-subscribes) to t with its current names.
	request(t *typeState) error
	// ack acknowledges (errDetail == "") or rejects a response.
	ack(t *typeState, r response, errDetail string) error
	// health sends a workload health report.
	health(h *healthReport) error
}

func (c *Client) subscribe(s stream, url string) error {
	t := c.types[url]
	if url == ListenerType {
		c.everWarm = true
	}
	// An empty name list means wildcard to legacy servers: never send one
	// for EDS/RDS (responses for names no longer wanted are ignored).
	if !t.wildcard && len(t.names) == 0 && (!t.requested || c.cfg.StateOfTheWorld) {
		return nil
	}
	if err := s.request(t); err != nil {
		return err
	}
	t.requested = true
	c.typeStatus(url, func(ts *TypeStatus) { ts.Subscribed = sortedNames(t.names) })
	return nil
}

func sortedNames(m map[string]bool) []string {
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *Client) handle(s stream, r response) error {
	t := c.types[r.typeURL]
	if t == nil {
		// Not something we asked for: NACK so the server sees it.
		return s.ack(&typeState{url: r.typeURL}, r, fmt.Sprintf("unexpected type %s", r.typeURL))
	}
	t.nonce = r.nonce
	c.typeStatus(t.url, func(ts *TypeStatus) { ts.Nonce = r.nonce })
	cand, err := c.candidate(t, r)
	if err == nil {
		err = c.cfg.Apply(Update{TypeURL: t.url, Version: r.version, Resources: c.view(t.url, cand), Warming: c.warming(t.url, cand)})
	}
	if err != nil {
		detail := err.Error()
		c.log.Warn("xDS config rejected (NACK)", "type", t.url, "version", r.version, "err", detail)
		c.typeStatus(t.url, func(ts *TypeStatus) {
			ts.NACKs++
			ts.LastNACK = time.Now()
			ts.NACKDetail = detail
		})
		c.setStatus(func(st *Status) { st.LastError, st.LastErrorTime = detail, time.Now() })
		return s.ack(t, r, detail)
	}
	t.resources = cand
	t.version = r.version
	if err := s.ack(t, r, ""); err != nil {
		return err
	}
	c.typeStatus(t.url, func(ts *TypeStatus) {
		ts.ACKs++
		ts.LastACK = time.Now()
		ts.Version = r.version
		ts.Resources = len(cand)
	})
	return c.followDependencies(s, t)
}

// followDependencies updates EDS/RDS subscriptions after CDS/LDS changed and
// advances the startup ordering.
func (c *Client) followDependencies(s stream, t *typeState) error {
	switch t.url {
	case ClusterType:
		if err := c.resubscribe(s, EndpointType, edsNames(t.resources)); err != nil {
			return err
		}
	case ListenerType:
		names := map[string]bool{}
		for _, e := range t.resources {
			for n := range rdsNames(e.msg.(*listenerv3.Listener)) {
				names[n] = true
			}
		}
		if err := c.resubscribe(s, RouteType, names); err != nil {
			return err
		}
	}
	if !c.types[ListenerType].requested && c.clustersWarm() {
		return c.subscribe(s, ListenerType)
	}
	return nil
}

// warming computes Update.Warming for the view with cand replacing url.
func (c *Client) warming(url string, cand map[string]entry) map[string][]string {
	state := func(u string) map[string]entry {
		if u == url {
			return cand
		}
		return c.types[u].resources
	}
	var out map[string][]string
	add := func(u, n string) {
		if _, ok := state(u)[n]; ok {
			return
		}
		if out == nil {
			out = map[string][]string{}
		}
		out[u] = append(out[u], n)
	}
	for n := range edsNames(state(ClusterType)) {
		add(EndpointType, n)
	}
	for _, e := range state(ListenerType) {
		for n := range rdsNames(e.msg.(*listenerv3.Listener)) {
			add(RouteType, n)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func edsNames(clusters map[string]entry) map[string]bool {
	names := map[string]bool{}
	for _, e := range clusters {
		cl := e.msg.(*clusterv3.Cluster)
		if cl.GetType() == clusterv3.Cluster_EDS {
			n := cl.GetEdsClusterConfig().GetServiceName()
			if n == "" {
				n = cl.GetName()
			}
			names[n] = true
		}
	}
	return names
}

// clustersWarm is true when every subscribed EDS name has an assignment.
func (c *Client) clustersWarm() bool {
	if !c.types[ClusterType].requested || c.types[ClusterType].nonce == "" {
		return false
	}
	eds := c.types[EndpointType]
	for n := range eds.names {
		if _, ok := eds.resources[n]; !ok {
			return false
		}
	}
	return true
}

func (c *Client) resubscribe(s stream, url string, names map[string]bool) error {
	t := c.types[url]
	same := len(names) == len(t.names)
	for n := range names {
		if !t.names[n] {
			same = false
		}
	}
	if same && (t.requested || len(names) == 0) {
		return nil
	}
	t.names = names
	// Envoy drops resources it is no longer subscribed to.
	for n := range t.resources {
		if !names[n] {
			delete(t.resources, n)
		}
	}
	return c.subscribe(s, url)
}

func rdsNames(l *listenerv3.Listener) map[string]bool {
	out := map[string]bool{}
	chains := append([]*listenerv3.FilterChain{}, l.GetFilterChains()...)
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains, d)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if f.GetName() != hcmName || f.GetTypedConfig() == nil {
				continue
			}
			var h hcmv3.HttpConnectionManager
			if f.GetTypedConfig().UnmarshalTo(&h) != nil {
				continue // the runtime reports the decode error
			}
			if n := h.GetRds().GetRouteConfigName(); n != "" {
				out[n] = true
			}
		}
	}
	return out
}

// candidate computes the type's resource map if r were accepted.
func (c *Client) candidate(t *typeState, r response) (map[string]entry, error) {
	out := make(map[string]entry, len(t.resources))
	if r.isDelta {
		for k, v := range t.resources {
			out[k] = v
		}
		for _, n := range r.removed {
			delete(out, n)
		}
		for _, d := range r.delta {
			msg, name, err := decode(t.url, d.resource)
			if err != nil {
				return nil, err
			}
			if d.name != "" && name != d.name {
				return nil, fmt.Errorf("%s %q: resource name does not match its envelope name %q", kind(t.url), name, d.name)
			}
			if !t.wildcard && !t.names[name] {
				continue
			}
			out[name] = keep(t.resources[name], entry{msg: msg, version: d.version})
		}
		return out, nil
	}
	if !t.wildcard {
		// SotW EDS/RDS: resources not in this response stay as they were.
		for k, v := range t.resources {
			out[k] = v
		}
	}
	seen := map[string]bool{}
	for _, a := range r.resources {
		msg, name, err := decode(t.url, a)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("%s %q: duplicate resource in response", kind(t.url), name)
		}
		seen[name] = true
		if !t.wildcard && !t.names[name] {
			continue
		}
		out[name] = keep(t.resources[name], entry{msg: msg})
	}
	return out, nil
}

// keep returns old when it holds the same config, so unchanged resources
// keep pointer identity (the runtime reuses their compiled form cheaply).
func keep(old, new entry) entry {
	if old.msg != nil && proto.Equal(old.msg, new.msg) {
		old.version = new.version
		return old
	}
	return new
}

func decode(url string, a *anypb.Any) (proto.Message, string, error) {
	if a == nil {
		return nil, "", fmt.Errorf("%s: empty resource", kind(url))
	}
	if a.GetTypeUrl() != url {
		return nil, "", fmt.Errorf("%s: resource has type %s", kind(url), a.GetTypeUrl())
	}
	var msg proto.Message
	switch url {
	case ClusterType:
		msg = &clusterv3.Cluster{}
	case EndpointType:
		msg = &endpointv3.ClusterLoadAssignment{}
	case ListenerType:
		msg = &listenerv3.Listener{}
	case RouteType:
		msg = &routev3.RouteConfiguration{}
	}
	if err := a.UnmarshalTo(msg); err != nil {
		return nil, "", fmt.Errorf("%s: decode: %w", kind(url), err)
	}
	return msg, resourceName(msg), nil
}

func resourceName(m proto.Message) string {
	switch m := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return m.GetClusterName()
	case interface{ GetName() string }:
		return m.GetName()
	}
	return ""
}

func kind(url string) string {
	switch url {
	case ClusterType:
		return "Cluster"
	case EndpointType:
		return "ClusterLoadAssignment"
	case ListenerType:
		return "Listener"
	case RouteType:
		return "RouteConfiguration"
	}
	return url
}

// view returns all resources with cand replacing the state of type url,
// ordered CDS, EDS, LDS, RDS and by name.
func (c *Client) view(url string, cand map[string]entry) []proto.Message {
	var out []proto.Message
	for _, tu := range typeOrder {
		m := c.types[tu].resources
		if tu == url {
			m = cand
		}
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, m[n].msg)
		}
	}
	return out
}
