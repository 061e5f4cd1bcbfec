package autoreg

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// fakeClock fires AfterFunc callbacks when Advance passes their deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

const groupYAML = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: web, namespace: shop}
spec:
  metadata:
    labels: {team: storefront}
    annotations: {owner: alice}
  template:
    serviceAccount: web-sa
    network: net-1
    locality: eu-west/zone-a
    weight: 3
    ports: {http: 8080}
    labels: {app: web, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: probed, namespace: shop}
spec:
  template: {labels: {app: probed}}
  probe:
    httpGet: {path: /ready, port: 8080}
`

type env struct {
	t     *testing.T
	store *config.Store
	clock *fakeClock
	snap  atomic.Pointer[config.Snapshot]
	reg   *Registry
	kicks atomic.Int64
	stop  context.CancelFunc
	done  chan struct{}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := config.OpenStore(config.StoreConfig{Path: filepath.Join(t.TempDir(), "weft.db"), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, clock: newFakeClock()}
	e.setConfig(groupYAML)
	e.start()
	return e
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setConfig sets the config snapshot the Registry reads groups from.
func (e *env) setConfig(yamls ...string) {
	e.t.Helper()
	var objs []*config.Object
	for _, y := range yamls {
		o, diags := config.Decode([]byte(y), config.Origin{Source: "store"})
		if diags.HasErrors() {
			e.t.Fatal(diags)
		}
		objs = append(objs, o...)
	}
	e.snap.Store(config.NewSnapshot(1, objs, nil))
}

// start runs a new Registry on the env's store (a weftd start or restart).
func (e *env) start() {
	e.t.Helper()
	if e.stop != nil {
		e.stop()
		<-e.done
	}
	reg, err := New(Config{KV: e.store, Snapshot: e.snap.Load, GracePeriod: 30 * time.Second,
		AllowInsecure: true, Clock: e.clock, Logger: quietLog()})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan struct{})
	var once sync.Once
	e.reg, e.stop, e.done = reg, cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		_ = reg.Run(ctx, func() { e.kicks.Add(1); once.Do(func() { close(synced) }) })
	}()
	<-synced
	e.t.Cleanup(func() { cancel(); <-e.done })
}

func (e *env) entries() []*config.Object { return e.reg.Contents().Objects }

func (e *env) only() *config.Object {
	e.t.Helper()
	objs := e.entries()
	if len(objs) != 1 {
		e.t.Fatalf("%d entries, want 1: %v", len(objs), names(objs))
	}
	return objs[0]
}

func names(objs []*config.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Namespace+"/"+o.Name)
	}
	return out
}

func vm(id, addr string) Conn {
	return Conn{ProxyID: id, Namespace: "shop", Group: "web", Address: addr,
		Identity: &Identity{Namespace: "shop", ServiceAccount: "web-sa"}}
}

func TestConnectBuildsEntryFromTemplate(t *testing.T) {
	e := newEnv(t)
	c := vm("vm-1.shop", "10.1.2.3")
	c.Labels = map[string]string{"version": "v2", "host": "vm-1"}
	before := e.kicks.Load()
	if err := e.reg.Connect(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if e.kicks.Load() == before {
		t.Error("connect did not signal a change")
	}
	o := e.only()
	if o.Name != "web-10-1-2-3-net-1" || o.Namespace != "shop" || o.Origin.Source != SourceName {
		t.Fatalf("entry %s/%s from %q", o.Namespace, o.Name, o.Origin.Source)
	}
	we := o.Spec.(*networkingv1.WorkloadEntry)
	if we.Address != "10.1.2.3" || we.ServiceAccount != "web-sa" || we.Network != "net-1" ||
		we.Locality != "eu-west/zone-a" || we.Weight != 3 || we.Ports["http"] != 8080 {
		t.Errorf("spec %v", we)
	}
	// Template labels, with the proxy's own labels merged over them.
	want := map[string]string{"app": "web", "version": "v2", "host": "vm-1"}
	if !equal(we.Labels, want) {
		t.Errorf("labels %v, want %v", we.Labels, want)
	}
	if o.Labels["team"] != "storefront" || o.Annotations["owner"] != "alice" {
		t.Errorf("group metadata not applied: %v %v", o.Labels, o.Annotations)
	}
	if o.Annotations[AnnotationGroup] != "web" || o.Annotations[AnnotationProxyID] != "vm-1.shop" ||
		o.Annotations[AnnotationConnectedAt] != "2026-01-02T03:04:05Z" {
		t.Errorf("annotations %v", o.Annotations)
	}
	if diags := config.Validate(o); diags.HasErrors() {
		t.Errorf("entry does not validate: %v", diags)
	}
	if _, ok := e.reg.Health(o.Key()); ok {
		t.Error("a group without probe has a health override")
	}
}

func TestDisconnectRemovesAfterGrace(t *testing.T) {
	e := newEnv(t)
	if err := e.reg.Connect(context.Background(), vm("vm-1", "10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute) // connected entries never expire
	e.reg.Disconnect("vm-1")
	if a := e.only().Annotations[AnnotationDisconnectedAt]; a == "" {
		t.Error("no disconnectedAt annotation")
	}
	e.clock.Advance(29 * time.Second)
	e.only()
	e.clock.Advance(time.Second)
	if n := len(e.entries()); n != 0 {
		t.Fatalf("%d entries after the grace period", n)
	}
	// And it is gone from the store: a restart does not bring it back.
	e.start()
	if n := len(e.entries()); n != 0 {
		t.Fatalf("%d entries after restart", n)
	}
}

func TestReconnectWithinGraceKeepsEntry(t *testing.T) {
	e := newEnv(t)
	if err := e.reg.Connect(context.Background(), vm("vm-1", "10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	first := e.only()
	e.reg.Disconnect("vm-1")
	e.clock.Advance(20 * time.Second)
	if err := e.reg.Connect(context.Background(), vm("vm-1", "10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	again := e.only()
	if again.Name != first.Name || !again.CreationTimestamp.Equal(first.CreationTimestamp) ||
		again.ResourceVersion != first.ResourceVersion || again.Generation != first.Generation {
		t.Errorf("entry changed identity: %+v -> %+v", first.Meta, again.Meta)
	}
	if again.Annotations[AnnotationDisconnectedAt] != "" || again.Annotations[AnnotationConnectedAt] != "2026-01-02T03:04:25Z" {
		t.Errorf("annotations after reconnect: %v", again.Annotations)
	}
}

func TestRestartKeepsEntries(t *testing.T) {
	e := newEnv(t)
	for _, c := range []Conn{vm("vm-1", "10.1.2.3"), vm("vm-2", "10.1.2.4")} {
		if err := e.reg.Connect(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	e.reg.SetHealth("vm-2", false, "probe failed")
	before := e.entries()
	e.start() // weftd restarts: no proxy is connected to the new process
	after := e.entries()
	if len(after) != 2 || after[0].Name != before[0].Name || !after[0].CreationTimestamp.Equal(before[0].CreationTimestamp) {
		t.Fatalf("after restart: %v", names(after))
	}
	if h, ok := e.reg.Health(after[1].Key()); !ok || h != model.Unhealthy {
		t.Errorf("health after restart: %v %v", h, ok)
	}
	// vm-1 comes back within the grace, vm-2 does not.
	e.clock.Advance(10 * time.Second)
	if err := e.reg.Connect(context.Background(), vm("vm-1", "10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(20 * time.Second)
	if got := names(e.entries()); len(got) != 1 || got[0] != "shop/web-10-1-2-3-net-1" {
		t.Fatalf("entries after grace: %v", got)
	}
}

func TestManualEntryIsNeverTouched(t *testing.T) {
	e := newEnv(t)
	manual := `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-10-1-2-3-net-1, namespace: shop}
spec: {address: 10.1.2.3, labels: {app: manual}}
`
	e.setConfig(groupYAML, manual)
	err := e.reg.Connect(context.Background(), vm("vm-1", "10.1.2.3"))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "already exists (from the store source)") {
		t.Fatalf("connect over a manual entry: %v", err)
	}
	if n := len(e.entries()); n != 0 {
		t.Fatalf("registry holds %d entries", n)
	}
	// Disconnect and health for that proxy are no-ops; the manual entry is not ours to remove.
	e.reg.Disconnect("vm-1")
	e.reg.SetHealth("vm-1", false, "x")
	if _, ok := e.reg.Health(config.Key{Kind: config.KindWorkloadEntry, Namespace: "shop", Name: "web-10-1-2-3-net-1"}); ok {
		t.Error("health override for a manual entry")
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	insecure, err := New(Config{KV: e.store, Snapshot: e.snap.Load, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	bound := vm("vm-1", "10.1.2.3")
	bound.Identity.WorkloadGroup = "other"
	otherNS := vm("vm-1", "10.1.2.3")
	otherNS.Identity.Namespace = "default"
	otherSA := vm("vm-1", "10.1.2.3")
	otherSA.Identity.ServiceAccount = "db"
	unknown := vm("vm-1", "10.1.2.3")
	unknown.Group = "nope"
	noAddr := vm("vm-1", "")
	anon := vm("vm-1", "10.1.2.3")
	anon.Identity = nil
	for _, tc := range []struct {
		name string
		reg  *Registry
		conn Conn
		want string
	}{
		{"unknown group", e.reg, unknown, "WorkloadGroup shop/nope: no such WorkloadGroup; create it before hosts join"},
		{"namespace mismatch", e.reg, otherNS, `identity namespace "default" is not the group's namespace`},
		{"service account mismatch", e.reg, otherSA, `identity service account "db" is not the group's service account "web-sa"`},
		{"token bound to another group", e.reg, bound, `the credential is bound to WorkloadGroup "other"`},
		{"no address", e.reg, noAddr, "no address"},
		{"unauthenticated", insecure, anon, "connect on the secure port (15012)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.reg.Connect(context.Background(), tc.conn)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrRefused with %q", err, tc.want)
			}
		})
	}
	if n := len(e.entries()); n != 0 {
		t.Fatalf("refusals registered %d entries", n)
	}
	// The token bound to this group is accepted.
	ok := vm("vm-1", "10.1.2.3")
	ok.Identity.WorkloadGroup = "web"
	if err := e.reg.Connect(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentConnectsMakeOneEntry(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two proxies (think: two weftd replicas serving the same host's
			// reconnects) racing on one address.
			errs <- e.reg.Connect(context.Background(), vm([]string{"vm-a", "vm-b"}[i%2], "10.1.2.3"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e.only()
	// Restart: still one entry in the store.
	e.start()
	e.only()
}

func TestHealthReports(t *testing.T) {
	e := newEnv(t)
	c := Conn{ProxyID: "p-1", Namespace: "shop", Group: "probed", Address: "10.9.9.9", Identity: &Identity{Namespace: "shop", ServiceAccount: "x"}}
	if err := e.reg.Connect(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	key := e.only().Key()
	if h, ok := e.reg.Health(key); !ok || h != model.Unhealthy {
		t.Fatalf("a group with a probe starts unhealthy: %v %v", h, ok)
	}
	before := e.kicks.Load()
	e.reg.SetHealth("p-1", true, "")
	if h, ok := e.reg.Health(key); !ok || h != model.Healthy {
		t.Fatalf("after a healthy report: %v %v", h, ok)
	}
	if e.kicks.Load() == before {
		t.Error("health change did not signal a change")
	}
	e.reg.SetHealth("p-1", false, "GET /ready: 503")
	if h, _ := e.reg.Health(key); h != model.Unhealthy {
		t.Fatalf("after an unhealthy report: %v", h)
	}
	kicks := e.kicks.Load()
	e.reg.SetHealth("p-1", false, "GET /ready: 503")
	if e.kicks.Load() != kicks {
		t.Error("an unchanged report signalled a change")
	}
}

func TestEntryName(t *testing.T) {
	for _, tc := range []struct{ group, addr, network, want string }{
		{"web", "10.0.0.1", "", "web-10-0-0-1"},
		{"web", "fd00::1", "", "web-fd00--1"},
		{"web", "FD00:0:0::1", "", "web-fd00--1"},
		{"web", "fd00::", "n1", "web-fd00--0-n1"},
	} {
		if got := EntryName(tc.group, tc.addr, tc.network); got != tc.want {
			t.Errorf("EntryName(%q, %q, %q) = %q, want %q", tc.group, tc.addr, tc.network, got, tc.want)
		}
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
