// Package autoreg registers hosts that join the mesh with a WorkloadGroup as
// WorkloadEntries (Istio's VM auto-registration). It is a config.Source
// named "autoregistration": a host's proxy connects (xDS) with node
// metadata AUTO_REGISTER_GROUP, the Registry checks the proxy's
// authenticated identity against the group, builds a WorkloadEntry from the
// group's template plus the host's address, persists it in the embedded
// store and publishes it like any other config; when the proxy goes away
// the entry is removed after a grace period. It also keeps the health the
// proxy reports for its entry, for model.BuildOptions.Health.
//
// WorkloadEntries from any other source are never modified or deleted.
package autoreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// SourceName is the Source name and the Origin.Source of every object the
// Registry produces.
const SourceName = "autoregistration"

// Annotations on auto-registered WorkloadEntries (the istio.io ones are
// Istio's, so tooling written for Istio reads them).
const (
	AnnotationGroup          = "istio.io/autoRegistrationGroup"
	AnnotationConnectedAt    = "istio.io/connectedAt"
	AnnotationDisconnectedAt = "istio.io/disconnectedAt"
	AnnotationProxyID        = "weft.dev/proxy-id"
	// AnnotationHealth is "healthy" or "unhealthy" once the host reported a
	// probe result; AnnotationHealthMessage carries the last probe error.
	// weftctl shows both.
	AnnotationHealth        = "weft.dev/health"
	AnnotationHealthMessage = "weft.dev/health-message"
)

// DefaultGracePeriod is how long an entry outlives its proxy's last stream.
const DefaultGracePeriod = 30 * time.Second

// KVBucket is the store bucket holding registrations.
const KVBucket = "autoreg"

// indexKey lists the registrations in KVBucket. Entry keys are
// "namespace/name" and always contain a slash, so they never collide with it.
const indexKey = "index"

// ErrRefused wraps every error that refuses a registration because of what
// the host asked for (unknown group, identity mismatch, name taken); other
// errors are weftd's own (a store write failed).
var ErrRefused = errors.New("autoreg: registration refused")

// KV is the persistence the Registry needs: config.Store implements it.
type KV interface {
	GetKV(bucket, key string) ([]byte, bool, error)
	PutKV(bucket, key string, val []byte) error
}

var _ KV = (*config.Store)(nil)

// Clock is the time source; tests inject a fake one to drive grace periods.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed, unless the returned stop is called first.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Config configures a Registry.
type Config struct {
	// KV persists registrations (required): a weftd restart loses none.
	KV KV
	// Snapshot returns the config in effect, where WorkloadGroups are looked
	// up (required; nil before the first snapshot).
	Snapshot func() *config.Snapshot
	// GracePeriod is how long an entry is kept after its proxy disconnected;
	// a reconnect within it keeps the same entry. Default DefaultGracePeriod.
	GracePeriod time.Duration
	// AllowInsecure accepts registrations without an authenticated identity
	// (plaintext xDS: development and tests only).
	AllowInsecure bool
	Clock         Clock
	Logger        *slog.Logger
}

// Identity is what the proxy proved on the secure port.
type Identity struct {
	Namespace      string
	ServiceAccount string
	// WorkloadGroup is set when the credential (a bootstrap token) is bound
	// to one group; the proxy may then register in that group only.
	WorkloadGroup string
}

// Conn describes a proxy asking to be registered.
type Conn struct {
	// ProxyID is the xDS node id; it names the connection, not the entry.
	ProxyID string
	// Namespace and Group name the WorkloadGroup (node metadata NAMESPACE
	// and AUTO_REGISTER_GROUP).
	Namespace string
	Group     string
	// Address is the host's address: its first INSTANCE_IPS or the address
	// it connected from.
	Address string
	// Network, when set (node metadata NETWORK), overrides the template's.
	Network string
	// Identity is nil for an unauthenticated connection (plaintext port).
	Identity *Identity
	// Labels are the proxy's own labels (node metadata LABELS); they are
	// merged over the template's labels, the proxy's winning, as in Istio.
	Labels map[string]string
}

// Registry is the auto-registration source. Create it with New.
type Registry struct {
	cfg   Config
	log   *slog.Logger
	clock Clock

	mu       sync.Mutex
	entries  map[config.Key]*entry
	byProxy  map[string]config.Key // connected proxy -> its entry
	diags    config.Diagnostics    // stored records that no longer decode
	contents config.Contents
	changed  func()
	running  bool
}

// entry is one registration; its obj is replaced, never modified, so
// Contents can hand it out.
type entry struct {
	obj       *config.Object
	proxyID   string
	connected bool
	removal   *removal // pending removal while disconnected
	health    *healthState
}

type removal struct{ stop func() bool }

type healthState struct {
	Healthy bool   `json:"healthy"`
	Message string `json:"message,omitempty"`
}

// record is the persisted form of an entry.
type record struct {
	Object json.RawMessage `json:"object"`
	Health *healthState    `json:"health,omitempty"`
}

var _ config.Source = (*Registry)(nil)

// New loads the persisted registrations. Grace timers of entries whose
// proxy is not connected start when Run starts.
func New(cfg Config) (*Registry, error) {
	if cfg.KV == nil || cfg.Snapshot == nil {
		return nil, errors.New("autoreg: Config.KV and Config.Snapshot are required")
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{cfg: cfg, log: log.With("component", "autoreg"), clock: cfg.Clock,
		entries: map[config.Key]*entry{}, byProxy: map[string]config.Key{}}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.rebuild()
	return r, nil
}

func (r *Registry) load() error {
	raw, ok, err := r.cfg.KV.GetKV(KVBucket, indexKey)
	if err != nil || !ok {
		return err
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return fmt.Errorf("autoreg: load index: %w", err)
	}
	for _, name := range names {
		val, ok, err := r.cfg.KV.GetKV(KVBucket, name)
		if err != nil {
			return fmt.Errorf("autoreg: load %s: %w", name, err)
		}
		if !ok || len(val) == 0 {
			continue // removed; the index write did not follow
		}
		var rec record
		if err := json.Unmarshal(val, &rec); err != nil {
			r.diags = append(r.diags, loadDiag(name, err.Error()))
			continue
		}
		objs, diags := config.Decode(rec.Object, config.Origin{Source: SourceName})
		if len(objs) != 1 || objs[0].Kind != config.KindWorkloadEntry {
			r.diags = append(r.diags, loadDiag(name, fmt.Sprint(diags.Errors())))
			continue
		}
		o := objs[0]
		o.Origin = config.Origin{Source: SourceName}
		r.entries[o.Key()] = &entry{obj: o, proxyID: o.Annotations[AnnotationProxyID], health: rec.Health}
	}
	if len(r.entries) > 0 {
		r.log.Info("registrations loaded", "count", len(r.entries))
	}
	return nil
}

func loadDiag(name, msg string) config.Diagnostic {
	return config.Diagnostic{Severity: config.SeverityWarning, Origin: config.Origin{Source: SourceName},
		Message: fmt.Sprintf("stored registration %s no longer decodes and is ignored: %s", name, msg)}
}

// Name implements config.Source.
func (r *Registry) Name() string { return SourceName }

// Contents implements config.Source.
func (r *Registry) Contents() config.Contents {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.contents
}

// Run implements config.Source. Loaded entries whose proxy has not
// reconnected get their grace period from now: a restarted weftd gives
// every host the full grace to come back.
func (r *Registry) Run(ctx context.Context, changed func()) error {
	r.mu.Lock()
	r.changed, r.running = changed, true
	for k, e := range r.entries {
		if !e.connected && e.removal == nil {
			r.scheduleRemoval(k, e)
		}
	}
	r.mu.Unlock()
	changed()
	<-ctx.Done()
	r.mu.Lock()
	r.changed, r.running = nil, false
	for _, e := range r.entries {
		if e.removal != nil {
			e.removal.stop()
			e.removal = nil
		}
	}
	r.mu.Unlock()
	return nil
}

// Connect registers the proxy described by c, or renews its entry (same
// name, creation time and generation: only the connection annotations
// change) and cancels a pending removal. The error wraps ErrRefused when
// the request itself is not acceptable.
func (r *Registry) Connect(ctx context.Context, c Conn) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("autoreg: connect %s: %w", c.ProxyID, err)
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: proxy %s, WorkloadGroup %s/%s: %s", ErrRefused, c.ProxyID, c.Namespace, c.Group, fmt.Sprintf(format, args...))
	}
	if c.Group == "" || c.Namespace == "" || c.ProxyID == "" {
		return refuse("proxy id, namespace and group are required")
	}
	if c.Address == "" {
		return refuse("no address: set INSTANCE_IPS in the node metadata")
	}
	snap := r.cfg.Snapshot()
	if snap == nil {
		return fmt.Errorf("autoreg: connect %s: config not loaded yet", c.ProxyID)
	}
	gk := config.Key{Kind: config.KindWorkloadGroup, Namespace: c.Namespace, Name: c.Group}
	gobj, ok := snap.Get(gk)
	if !ok {
		return refuse("no such WorkloadGroup; create it before hosts join (weftctl apply)")
	}
	wg := gobj.Spec.(*networkingv1.WorkloadGroup)
	tmpl := wg.GetTemplate()
	switch id := c.Identity; {
	case id == nil && !r.cfg.AllowInsecure:
		return refuse("auto-registration needs an authenticated identity: connect on the secure port (15012) with a bootstrap token or mesh certificate")
	case id == nil:
	case id.Namespace != c.Namespace:
		return refuse("identity namespace %q is not the group's namespace", id.Namespace)
	case tmpl.GetServiceAccount() != "" && id.ServiceAccount != tmpl.GetServiceAccount():
		return refuse("identity service account %q is not the group's service account %q", id.ServiceAccount, tmpl.GetServiceAccount())
	case id.WorkloadGroup != "" && id.WorkloadGroup != c.Group:
		return refuse("the credential is bound to WorkloadGroup %q", id.WorkloadGroup)
	}

	spec := r.entrySpec(c, wg)
	name := EntryName(c.Group, c.Address, spec.GetNetwork())
	if !validName.MatchString(name) || len(name) > 253 {
		return refuse("entry name %q derived from the address is not a valid object name", name)
	}
	key := config.Key{Kind: config.KindWorkloadEntry, Namespace: c.Namespace, Name: name}
	if cur, ok := snap.Get(key); ok && cur.Origin.Source != SourceName {
		return refuse("WorkloadEntry %s/%s already exists (from the %s source) and is never touched by auto-registration", key.Namespace, key.Name, cur.Origin.Source)
	}
	now := r.clock.Now().UTC().Truncate(time.Second)
	labels, annotations := cloneMap(wg.GetMetadata().GetLabels()), cloneMap(wg.GetMetadata().GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationGroup] = c.Group
	annotations[AnnotationProxyID] = c.ProxyID

	r.mu.Lock()
	old := r.entries[key]
	obj := &config.Object{Kind: config.KindWorkloadEntry, APIVersion: "networking.istio.io/v1",
		Meta: config.Meta{Name: name, Namespace: c.Namespace, Labels: labels, Annotations: annotations,
			Generation: 1, CreationTimestamp: now},
		Spec: spec, Origin: config.Origin{Source: SourceName}}
	health := old.healthOr(initialHealth(wg))
	if old != nil {
		obj.CreationTimestamp, obj.Generation = old.obj.CreationTimestamp, old.obj.Generation
		if !proto.Equal(old.obj.Spec, spec) {
			obj.Generation++
		}
		if old.connected && old.proxyID == c.ProxyID {
			annotations[AnnotationConnectedAt] = old.obj.Annotations[AnnotationConnectedAt]
		}
	}
	if annotations[AnnotationConnectedAt] == "" {
		annotations[AnnotationConnectedAt] = now.Format(time.RFC3339)
	}
	obj.ResourceVersion = fmt.Sprint(obj.Generation)
	if err := r.persist(key, obj, health, old == nil); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("autoreg: connect %s: %w", c.ProxyID, err)
	}
	if old != nil {
		if old.removal != nil {
			old.removal.stop()
		}
		if old.proxyID != c.ProxyID && r.byProxy[old.proxyID] == key {
			delete(r.byProxy, old.proxyID) // another proxy took the address over
		}
	}
	if k, ok := r.byProxy[c.ProxyID]; ok && k != key {
		// The same proxy now registers another entry (its address changed):
		// the old one is no longer connected.
		r.disconnectLocked(c.ProxyID, k)
	}
	r.entries[key] = &entry{obj: obj, proxyID: c.ProxyID, connected: true, health: health}
	r.byProxy[c.ProxyID] = key
	changed := r.rebuildLocked()
	r.mu.Unlock()
	if old == nil {
		r.log.Info("host registered", "entry", key.Namespace+"/"+key.Name, "proxy", c.ProxyID, "address", c.Address)
	} else {
		r.log.Info("host reconnected", "entry", key.Namespace+"/"+key.Name, "proxy", c.ProxyID)
	}
	if changed != nil {
		changed()
	}
	return nil
}

// entrySpec builds the WorkloadEntry spec from the group's template.
func (r *Registry) entrySpec(c Conn, wg *networkingv1.WorkloadGroup) *networkingv1.WorkloadEntry {
	spec := &networkingv1.WorkloadEntry{}
	if t := wg.GetTemplate(); t != nil {
		spec = proto.Clone(t).(*networkingv1.WorkloadEntry)
	}
	spec.Address = c.Address
	if c.Network != "" {
		spec.Network = c.Network
	}
	if spec.ServiceAccount == "" && c.Identity != nil {
		spec.ServiceAccount = c.Identity.ServiceAccount
	}
	if len(c.Labels) > 0 {
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		for k, v := range c.Labels {
			spec.Labels[k] = v
		}
	}
	return spec
}

var validName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// EntryName is the name of the entry of a host: "<group>-<address>" with
// dots and colons as dashes, plus "-<network>" when the entry has one. It
// depends only on what identifies the host, so reconnects, and weftd
// replicas racing on the same host, converge on one entry by construction.
func EntryName(group, address, network string) string {
	if a, err := netip.ParseAddr(address); err == nil {
		address = a.String() // one spelling per address
	}
	name := group + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(strings.ToLower(address))
	if strings.HasSuffix(name, "-") {
		name += "0" // "fd00::" ends in a colon; names may not end in a dash
	}
	if network != "" {
		name += "-" + strings.ToLower(network)
	}
	return name
}

// Disconnect records that the proxy's last stream closed: its entry is
// removed after the grace period unless the proxy connects again first.
func (r *Registry) Disconnect(proxyID string) {
	r.mu.Lock()
	key, ok := r.byProxy[proxyID]
	if !ok {
		r.mu.Unlock()
		return
	}
	r.disconnectLocked(proxyID, key)
	changed := r.rebuildLocked()
	r.mu.Unlock()
	r.log.Info("host disconnected; entry removed after the grace period unless it reconnects",
		"entry", key.Namespace+"/"+key.Name, "proxy", proxyID, "grace", r.cfg.GracePeriod)
	if changed != nil {
		changed()
	}
}

func (r *Registry) disconnectLocked(proxyID string, key config.Key) {
	delete(r.byProxy, proxyID)
	e := r.entries[key]
	if e == nil || !e.connected {
		return
	}
	obj := *e.obj
	obj.Annotations = cloneMap(e.obj.Annotations)
	obj.Annotations[AnnotationDisconnectedAt] = r.clock.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	if err := r.persist(key, &obj, e.health, false); err != nil {
		// The entry still goes after the grace period; a restart before
		// then just gives the host a fresh grace period.
		r.log.Error("persist disconnect", "entry", key.Namespace+"/"+key.Name, "err", err)
	}
	r.entries[key] = &entry{obj: &obj, proxyID: e.proxyID, health: e.health}
	if r.running {
		r.scheduleRemoval(key, r.entries[key])
	}
}

// scheduleRemoval starts e's grace timer; r.mu must be held.
func (r *Registry) scheduleRemoval(key config.Key, e *entry) {
	rm := &removal{}
	e.removal = rm
	rm.stop = r.clock.AfterFunc(r.cfg.GracePeriod, func() { r.expire(key, rm) })
}

// expire removes key if rm is still its pending removal (a reconnect or a
// newer disconnect replaced it otherwise).
func (r *Registry) expire(key config.Key, rm *removal) {
	r.mu.Lock()
	e := r.entries[key]
	if e == nil || e.removal != rm || e.connected {
		r.mu.Unlock()
		return
	}
	if err := r.unpersist(key); err != nil {
		r.log.Error("remove registration; retrying after the grace period", "entry", key.Namespace+"/"+key.Name, "err", err)
		r.scheduleRemoval(key, e)
		r.mu.Unlock()
		return
	}
	delete(r.entries, key)
	changed := r.rebuildLocked()
	r.mu.Unlock()
	r.log.Info("registration removed after the grace period", "entry", key.Namespace+"/"+key.Name)
	if changed != nil {
		changed()
	}
}

// SetHealth records a health report of the proxy for its entry; a change
// republishes config so the endpoint's health in EDS follows.
func (r *Registry) SetHealth(proxyID string, healthy bool, msg string) {
	r.mu.Lock()
	key, ok := r.byProxy[proxyID]
	e := r.entries[key]
	if !ok || e == nil {
		r.mu.Unlock()
		return
	}
	h := &healthState{Healthy: healthy, Message: msg}
	if e.health != nil && *e.health == *h {
		r.mu.Unlock()
		return
	}
	e.health = h
	if err := r.persist(key, e.obj, h, false); err != nil {
		r.log.Error("persist health", "entry", key.Namespace+"/"+key.Name, "err", err)
	}
	changed := r.rebuildLocked()
	r.mu.Unlock()
	r.log.Info("host health changed", "entry", key.Namespace+"/"+key.Name, "healthy", healthy, "message", msg)
	if changed != nil {
		changed()
	}
}

// Health returns the reported health of an auto-registered entry, for
// model.BuildOptions.Health; ok is false for any other workload and for
// entries without a report (they are healthy).
func (r *Registry) Health(key config.Key) (model.Health, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[key]
	if e == nil || e.health == nil {
		return model.Healthy, false
	}
	if e.health.Healthy {
		return model.Healthy, true
	}
	return model.Unhealthy, true
}

// initialHealth is unhealthy for groups with a readiness probe: as in
// Istio, the host takes traffic only once its first probe passed.
func initialHealth(wg *networkingv1.WorkloadGroup) *healthState {
	if wg.GetProbe() != nil {
		return &healthState{Healthy: false, Message: "waiting for the first health report"}
	}
	return nil
}

func (e *entry) healthOr(h *healthState) *healthState {
	if e != nil && e.health != nil {
		return e.health
	}
	return h
}

// persist writes an entry (and, for a new one, the index); r.mu must be
// held. The entry is written before the index names it, so a crash in
// between leaves an unlisted record, never a listed missing one.
func (r *Registry) persist(key config.Key, obj *config.Object, h *healthState, isNew bool) error {
	y, err := config.Encode(obj)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		return fmt.Errorf("autoreg: encode %s: %w", key, err)
	}
	val, err := json.Marshal(record{Object: js, Health: h})
	if err != nil {
		return fmt.Errorf("autoreg: encode %s: %w", key, err)
	}
	if err := r.cfg.KV.PutKV(KVBucket, kvKey(key), val); err != nil {
		return err
	}
	if isNew {
		return r.writeIndex(key, true)
	}
	return nil
}

// unpersist removes an entry: first from the index, then its record is
// emptied (the KV has no delete; empty means removed).
func (r *Registry) unpersist(key config.Key) error {
	if err := r.writeIndex(key, false); err != nil {
		return err
	}
	return r.cfg.KV.PutKV(KVBucket, kvKey(key), nil)
}

func (r *Registry) writeIndex(key config.Key, add bool) error {
	var names []string
	for k := range r.entries {
		if k != key {
			names = append(names, kvKey(k))
		}
	}
	if add {
		names = append(names, kvKey(key))
	}
	sort.Strings(names)
	js, err := json.Marshal(names)
	if err != nil {
		return err
	}
	return r.cfg.KV.PutKV(KVBucket, indexKey, js)
}

func kvKey(k config.Key) string { return k.Namespace + "/" + k.Name }

// rebuild recomputes Contents.
func (r *Registry) rebuild() {
	r.mu.Lock()
	r.rebuildLocked()
	r.mu.Unlock()
}

// rebuildLocked recomputes Contents and returns the change callback to
// call after unlocking (nil before Run).
func (r *Registry) rebuildLocked() func() {
	objs := make([]*config.Object, 0, len(r.entries))
	for _, e := range r.entries {
		objs = append(objs, withHealth(e.obj, e.health))
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key().Less(objs[j].Key()) })
	r.contents = config.Contents{Objects: objs, Diagnostics: append(config.Diagnostics(nil), r.diags...)}
	return r.changed
}

// withHealth returns obj carrying the reported health as annotations (a copy:
// published objects are immutable, and the stored entry stays health-free so
// its resourceVersion does not move with every probe flip).
func withHealth(obj *config.Object, h *healthState) *config.Object {
	if h == nil {
		return obj
	}
	cp := *obj
	cp.Annotations = cloneMap(obj.Annotations)
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	cp.Annotations[AnnotationHealth] = "unhealthy"
	if h.Healthy {
		cp.Annotations[AnnotationHealth] = "healthy"
	}
	if h.Message != "" {
		cp.Annotations[AnnotationHealthMessage] = h.Message
	}
	return &cp
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
