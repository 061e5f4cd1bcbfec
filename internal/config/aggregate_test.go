package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeSource is a Source whose contents the test sets; it syncs when told.
type fakeSource struct {
	name string
	mu   sync.Mutex
	c    Contents
	// sync is closed to let Run make its initial changed() call.
	sync    chan struct{}
	changed chan struct{}
	fail    chan error
}

func newFake(name string, objs ...*Object) *fakeSource {
	return &fakeSource{name: name, c: Contents{Objects: objs}, sync: make(chan struct{}), changed: make(chan struct{}, 100), fail: make(chan error, 1)}
}

func (f *fakeSource) Name() string { return f.name }

func (f *fakeSource) Contents() Contents {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.c
}

func (f *fakeSource) set(objs ...*Object) {
	f.mu.Lock()
	f.c = Contents{Objects: objs}
	f.mu.Unlock()
	f.changed <- struct{}{}
}

func (f *fakeSource) Run(ctx context.Context, changed func()) error {
	select {
	case <-f.sync:
	case <-ctx.Done():
		return nil
	}
	changed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-f.fail:
			return err
		case <-f.changed:
			changed()
		}
	}
}

func startAggregator(t *testing.T, srcs ...Source) (*Aggregator, chan error) {
	t.Helper()
	agg := NewAggregator(AggregatorConfig{Sources: srcs, Logger: quietLogger(), Debounce: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return agg, done
}

func recv(t *testing.T, ch <-chan *Snapshot) *Snapshot {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot")
		return nil
	}
}

func TestAggregatorWaitsForInitialSync(t *testing.T) {
	a := newFake("a", named(t, KindSidecar, "ns", "x", "a", 1, "egress: [{hosts: ['./*']}]"))
	b := newFake("b", named(t, KindSidecar, "ns", "x", "b", 1, "egress: [{hosts: ['*/*']}]"),
		named(t, KindSidecar, "ns", "y", "b", 1, "egress: [{hosts: ['*/*']}]"))
	agg, _ := startAggregator(t, a, b)
	sub := agg.Subscribe()

	close(a.sync)
	time.Sleep(100 * time.Millisecond) // several debounce periods: b has not synced, nothing may appear
	if agg.Current() != nil {
		t.Fatal("snapshot published before every source synced")
	}
	close(b.sync)
	s := recv(t, sub)
	if s.Version != 1 || s.Len() != 2 {
		t.Fatalf("snapshot v%d with %d objects, want v1 with 2", s.Version, s.Len())
	}
	if o, _ := s.Get(Key{Kind: KindSidecar, Namespace: "ns", Name: "x"}); o.Origin.Source != "a" {
		t.Errorf("duplicate key served from %s, want the earlier source a", o.Origin.Source)
	}
	if agg.ErrorCount() != 1 || len(s.Diagnostics) != 1 {
		t.Errorf("ErrorCount = %d, diagnostics %v; want the duplicate reported", agg.ErrorCount(), s.Diagnostics)
	}
	if agg.Current() != s {
		t.Error("Current is not the published snapshot")
	}
}

func TestAggregatorLatestWins(t *testing.T) {
	a := newFake("a")
	close(a.sync)
	agg, _ := startAggregator(t, a)
	sub := agg.Subscribe()
	first := recv(t, sub)

	// Many changes without reading: the subscriber must end up with the
	// latest state, and the aggregator must not block on it.
	for i := 0; i < 5; i++ {
		a.set(named(t, KindSidecar, "ns", "s"+string(rune('a'+i)), "a", 1, "egress: [{hosts: ['./*']}]"))
		time.Sleep(40 * time.Millisecond)
	}
	waitFor(t, "last change", func() bool {
		c := agg.Current()
		_, ok := c.Get(Key{Kind: KindSidecar, Namespace: "ns", Name: "se"})
		return ok
	})
	latest := agg.Current()
	got := recv(t, sub)
	if got != latest {
		t.Errorf("subscriber got v%d, want latest v%d", got.Version, latest.Version)
	}
	if latest.Version <= first.Version {
		t.Errorf("versions did not increase: %d -> %d", first.Version, latest.Version)
	}
	select {
	case s := <-sub:
		t.Errorf("stale extra snapshot v%d", s.Version)
	default:
	}
	// A late subscriber gets the current snapshot at once.
	if s := recv(t, agg.Subscribe()); s != latest {
		t.Error("late subscriber did not get the current snapshot")
	}
}

func TestAggregatorDebounces(t *testing.T) {
	a := newFake("a")
	close(a.sync)
	agg := NewAggregator(AggregatorConfig{Sources: []Source{a}, Logger: quietLogger(), Debounce: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go agg.Run(ctx)
	waitFor(t, "first snapshot", func() bool { return agg.Current() != nil })
	for i := 0; i < 10; i++ {
		a.set()
	}
	waitFor(t, "burst snapshot", func() bool { return agg.Current().Version >= 2 })
	time.Sleep(300 * time.Millisecond)
	if v := agg.Current().Version; v != 2 {
		t.Errorf("a burst of 10 changes produced version %d, want exactly one more snapshot (2)", v)
	}
}

func TestAggregatorSourceFailure(t *testing.T) {
	a := newFake("a")
	close(a.sync)
	_, done := startAggregator(t, a)
	boom := errors.New("boom")
	a.fail <- boom
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want wrapped boom", err)
		}
		done <- nil // let cleanup finish
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return on source failure")
	}
}

func TestAggregatorDirAndStore(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bookinfo.yaml"), mustRead(t, "testdata/bookinfo.yaml"))
	store := openTestStore(t, filepath.Join(t.TempDir(), "weft.db"))
	defer store.Close()
	dirSrc := NewDirSource(DirConfig{Dir: dir, Logger: quietLogger()})
	agg, _ := startAggregator(t, dirSrc, store)
	sub := agg.Subscribe()
	s := recv(t, sub)
	if s.Len() != 5 || len(s.List(KindDestinationRule)) != 2 {
		t.Fatalf("initial snapshot has %d objects", s.Len())
	}
	// A store write referencing a missing subset shows up with a warning.
	vs := mustObject(t, KindVirtualService, "hosts: [ratings]\nhttp: [{route: [{destination: {host: ratings, subset: v9}}]}]")
	vs.Namespace, vs.Name = "bookinfo", "ratings"
	if _, err := store.Apply(context.Background(), []*Object{vs}); err != nil {
		t.Fatal(err)
	}
	s = recv(t, sub)
	if s.Len() != 6 || len(s.Diagnostics) != 1 || s.Diagnostics[0].Severity != SeverityWarning {
		t.Fatalf("after apply: %d objects, diagnostics %v", s.Len(), s.Diagnostics)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
