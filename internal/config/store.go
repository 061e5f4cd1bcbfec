package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// ErrNotFound is returned by Delete for a key the store does not hold.
var ErrNotFound = errors.New("config: object not found")

// ErrInvalid is returned by Apply when any object has an error-level
// diagnostic; the diagnostics say which and why, and nothing was written.
var ErrInvalid = errors.New("config: invalid objects")

// StoreConfig configures the embedded store.
type StoreConfig struct {
	// Path of the database file, e.g. <data-dir>/weft.db. Created if missing.
	Path   string
	Logger *slog.Logger
}

// Bucket names. User KV buckets get a prefix so no subsystem can clobber
// the config objects by picking an unlucky name.
var (
	bucketObjects = []byte("objects")
	bucketVIPs    = []byte("vips")
)

const kvBucketPrefix = "kv/"

// Store is the embedded, persistent config store (bbolt, one file). It is a
// Source named "store" and a Writer: `weftctl apply` lands here.
type Store struct {
	db  *bolt.DB
	log *slog.Logger
	now func() time.Time

	writeMu sync.Mutex // one Apply/Delete at a time, so cache and DB agree

	mu       sync.RWMutex
	objects  map[Key]*Object
	loadDiag Diagnostics // stored objects that no longer decode
	contents Contents
	changed  func()
}

var (
	_ Source = (*Store)(nil)
	_ Writer = (*Store)(nil)
)

// OpenStore opens (or creates) the store at cfg.Path and loads its objects.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("config: open store: path is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// The timeout turns "another weftd holds the file lock" into an error
	// instead of a silent hang at startup.
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("config: open store %s: %w", cfg.Path, err)
	}
	s := &Store{db: db, log: log.With("component", "config", "source", "store"), now: time.Now, objects: map[Key]*Object{}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketObjects, bucketVIPs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketObjects).ForEach(func(k, v []byte) error {
			objs, diags := Decode(v, Origin{Source: "store"})
			for i := range diags {
				diags[i].Message = fmt.Sprintf("stored object %s no longer decodes: %s", k, diags[i].Message)
			}
			s.loadDiag = append(s.loadDiag, diags...)
			for _, o := range objs {
				o.Origin = Origin{Source: "store"}
				s.objects[o.Key()] = o
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("config: open store %s: load: %w", cfg.Path, err)
	}
	s.rebuild()
	return s, nil
}

// Close releases the database file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("config: close store: %w", err)
	}
	return nil
}

// Name implements Source.
func (s *Store) Name() string { return "store" }

// Contents implements Source.
func (s *Store) Contents() Contents {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.contents
}

// Run implements Source: the store is loaded at Open, so Run signals the
// initial sync at once and then relays writes until ctx is done.
func (s *Store) Run(ctx context.Context, changed func()) error {
	s.mu.Lock()
	s.changed = changed
	s.mu.Unlock()
	changed()
	<-ctx.Done()
	s.mu.Lock()
	s.changed = nil
	s.mu.Unlock()
	return nil
}

// rebuild recomputes Contents from the cache; callers hold no lock.
func (s *Store) rebuild() {
	s.mu.Lock()
	objs := make([]*Object, 0, len(s.objects))
	for _, o := range s.objects {
		objs = append(objs, o)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key().Less(objs[j].Key()) })
	s.contents = Contents{Objects: objs, Diagnostics: append(Diagnostics(nil), s.loadDiag...)}
	s.mu.Unlock()
}

func (s *Store) notify() {
	s.mu.RLock()
	changed := s.changed
	s.mu.RUnlock()
	if changed != nil {
		changed()
	}
}

func storageKey(k Key) []byte {
	return []byte(string(k.Kind) + "/" + k.Namespace + "/" + k.Name)
}

// Apply implements Writer. Every object is validated first; if any has an
// error nothing is written and ErrInvalid is returned with the diagnostics.
// Written objects get a new ResourceVersion, Generation+1 when the spec
// changed, and keep their CreationTimestamp across updates. An object
// identical to the stored one is left untouched.
func (s *Store) Apply(ctx context.Context, objs []*Object) (Diagnostics, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("config: store apply: %w", err)
	}
	var diags Diagnostics
	prepared := make([]*Object, 0, len(objs))
	seen := map[Key]int{}
	for i, in := range objs {
		if in == nil || in.Spec == nil {
			diags = append(diags, Diagnostic{Severity: SeverityError, Field: fmt.Sprintf("objects[%d]", i), Message: "object or spec is nil"})
			continue
		}
		o := cloneObject(in)
		if o.Namespace == "" {
			o.Namespace = "default"
		}
		if msg := dns1123Subdomain(o.Name); msg != "" {
			diags = append(diags, Diagnostic{Severity: SeverityError, Origin: o.Origin, Key: o.Key(), Field: "metadata.name", Message: fmt.Sprintf("invalid name %q: %s", o.Name, msg)})
		}
		if msg := dns1123Label(o.Namespace); msg != "" {
			diags = append(diags, Diagnostic{Severity: SeverityError, Origin: o.Origin, Key: o.Key(), Field: "metadata.namespace", Message: fmt.Sprintf("invalid namespace %q: %s", o.Namespace, msg)})
		}
		if j, dup := seen[o.Key()]; dup {
			diags = append(diags, Diagnostic{Severity: SeverityError, Origin: o.Origin, Key: o.Key(), Field: "metadata.name", Message: fmt.Sprintf("%s appears twice in one apply (objects %d and %d)", o.Key(), j, i)})
		}
		seen[o.Key()] = i
		diags = append(diags, Validate(o)...)
		prepared = append(prepared, o)
	}
	if diags.HasErrors() {
		return diags, fmt.Errorf("config: store apply: %w: %d error(s), nothing written", ErrInvalid, len(diags.Errors()))
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	now := s.now().UTC().Truncate(time.Second)
	var written []*Object
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketObjects)
		written = written[:0]
		for _, o := range prepared {
			s.mu.RLock()
			old := s.objects[o.Key()]
			s.mu.RUnlock()
			if old != nil && sameObject(old, o) {
				continue
			}
			rv, err := b.NextSequence()
			if err != nil {
				return err
			}
			o.ResourceVersion = strconv.FormatUint(rv, 10)
			o.Origin = Origin{Source: "store"}
			if old == nil {
				o.Generation, o.CreationTimestamp = 1, now
			} else {
				o.Generation, o.CreationTimestamp = old.Generation, old.CreationTimestamp
				if !proto.Equal(old.Spec, o.Spec) {
					o.Generation++
				}
			}
			data, err := Encode(o)
			if err != nil {
				return err
			}
			if err := b.Put(storageKey(o.Key()), data); err != nil {
				return err
			}
			written = append(written, o)
		}
		return nil
	})
	if err != nil {
		return diags, fmt.Errorf("config: store apply: %w", err)
	}
	if len(written) == 0 {
		return diags, nil
	}
	s.mu.Lock()
	for _, o := range written {
		s.objects[o.Key()] = o
	}
	s.mu.Unlock()
	s.rebuild()
	s.log.Info("objects applied", "count", len(written))
	s.notify()
	return diags, nil
}

// sameObject reports whether applying o over old would change nothing.
func sameObject(old, o *Object) bool {
	return old.APIVersion == o.APIVersion && proto.Equal(old.Spec, o.Spec) &&
		equalMaps(old.Labels, o.Labels) && equalMaps(old.Annotations, o.Annotations)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// cloneObject copies o deeply enough that the store can set metadata
// without touching the caller's object.
func cloneObject(o *Object) *Object {
	c := *o
	c.Spec = proto.Clone(o.Spec)
	c.Labels = cloneMap(o.Labels)
	c.Annotations = cloneMap(o.Annotations)
	if c.APIVersion == "" {
		if info, ok := LookupKind(c.Kind); ok {
			c.APIVersion = info.APIVersion()
		}
	}
	return &c
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

// Delete implements Writer.
func (s *Store) Delete(ctx context.Context, key Key) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("config: store delete %s: %w", key, err)
	}
	if key.Namespace == "" {
		key.Namespace = "default"
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketObjects)
		if b.Get(storageKey(key)) == nil {
			return ErrNotFound
		}
		return b.Delete(storageKey(key))
	})
	if err != nil {
		return fmt.Errorf("config: store delete %s: %w", key, err)
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	s.rebuild()
	s.log.Info("object deleted", "key", key.String())
	s.notify()
	return nil
}

// LoadVIPs returns the persisted host -> virtual IP assignments, so service
// VIPs stay stable across restarts.
func (s *Store) LoadVIPs() (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVIPs).ForEach(func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("config: load vips: %w", err)
	}
	return out, nil
}

// SaveVIPs replaces the persisted VIP assignments with vips.
func (s *Store) SaveVIPs(vips map[string]string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketVIPs); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		b, err := tx.CreateBucket(bucketVIPs)
		if err != nil {
			return err
		}
		for host, vip := range vips {
			if err := b.Put([]byte(host), []byte(vip)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("config: save vips: %w", err)
	}
	return nil
}

func kvBucket(bucket string) ([]byte, error) {
	if bucket == "" || strings.ContainsRune(bucket, 0) {
		return nil, fmt.Errorf("config: invalid kv bucket name %q", bucket)
	}
	return []byte(kvBucketPrefix + bucket), nil
}

// GetKV returns the value stored under bucket/key for other subsystems
// (admin credentials, CA material); ok is false when absent.
func (s *Store) GetKV(bucket, key string) (val []byte, ok bool, err error) {
	name, err := kvBucket(bucket)
	if err != nil {
		return nil, false, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(name)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			// bbolt memory is only valid inside the transaction.
			val, ok = append([]byte{}, v...), true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("config: kv get %s/%s: %w", bucket, key, err)
	}
	return val, ok, nil
}

// PutKV stores val under bucket/key.
func (s *Store) PutKV(bucket, key string, val []byte) error {
	name, err := kvBucket(bucket)
	if err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("config: kv put %s: empty key", bucket)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), val)
	})
	if err != nil {
		return fmt.Errorf("config: kv put %s/%s: %w", bucket, key, err)
	}
	return nil
}
