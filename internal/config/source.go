package config

import (
	"context"
	"sort"
)

// Contents is what a source holds right now: the last good objects it can
// serve and the problems it currently sees. A file that fails to parse keeps
// its last good objects in Objects and its error in Diagnostics.
type Contents struct {
	Objects     []*Object
	Diagnostics Diagnostics
}

// Source is one origin of config objects. Every consumer reads config through
// a Snapshot built from Sources, so a new origin (Kubernetes, auto-registered
// WorkloadEntries) is one more Source and nothing downstream changes.
type Source interface {
	// Name is short and stable ("dir", "store", "kube", "autoregistration").
	Name() string
	// Run watches for changes until ctx is done, calling changed after each
	// change of Contents. Run must call changed once after its initial load,
	// even when it found nothing: that call is the source's initial sync, and
	// the Aggregator publishes no snapshot until every source has made it
	// (so weftd never pushes an empty config at start). changed must be cheap
	// and may be called from any goroutine. Run returns when ctx is done or
	// the source fails.
	Run(ctx context.Context, changed func()) error
	// Contents returns the current objects and diagnostics. It must be cheap
	// and safe to call concurrently with Run; returned objects are immutable.
	Contents() Contents
}

// Writer is implemented by sources that accept writes (the embedded store).
type Writer interface {
	// Apply creates or replaces objects. It validates them first and writes
	// nothing if any has an error-level diagnostic.
	Apply(ctx context.Context, objs []*Object) (Diagnostics, error)
	// Delete removes an object; deleting a missing object returns ErrNotFound.
	Delete(ctx context.Context, key Key) error
}

// Snapshot is an immutable, versioned view of all config from all sources,
// after per-object and cross-object validation. Consumers never see a
// half-applied change: a new Snapshot replaces the old one atomically.
type Snapshot struct {
	// Version increases with every published snapshot.
	Version uint64
	// Diagnostics holds every current problem across sources.
	Diagnostics Diagnostics
	byKind      map[Kind][]*Object
	byKey       map[Key]*Object
}

// NewSnapshot builds a snapshot from objects (sorted by key; later duplicates
// of the same key are ignored, the caller resolves conflicts first).
func NewSnapshot(version uint64, objs []*Object, diags Diagnostics) *Snapshot {
	s := &Snapshot{Version: version, Diagnostics: diags, byKind: map[Kind][]*Object{}, byKey: map[Key]*Object{}}
	sorted := append([]*Object(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Key().Less(sorted[j].Key()) })
	for _, o := range sorted {
		k := o.Key()
		if _, dup := s.byKey[k]; dup {
			continue
		}
		s.byKey[k] = o
		s.byKind[o.Kind] = append(s.byKind[o.Kind], o)
	}
	return s
}

// List returns the objects of kind sorted by namespace and name.
func (s *Snapshot) List(kind Kind) []*Object {
	if s == nil {
		return nil
	}
	return s.byKind[kind]
}

// Get returns one object.
func (s *Snapshot) Get(k Key) (*Object, bool) {
	if s == nil {
		return nil, false
	}
	o, ok := s.byKey[k]
	return o, ok
}

// All returns every object sorted by key.
func (s *Snapshot) All() []*Object {
	if s == nil {
		return nil
	}
	var out []*Object
	for _, k := range Kinds() {
		out = append(out, s.byKind[k.Kind]...)
	}
	return out
}

// Len is the number of objects.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byKey)
}
