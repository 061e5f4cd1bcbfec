package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DirConfig configures a DirSource.
type DirConfig struct {
	// Dir is the directory watched recursively for *.yaml, *.yml and *.json.
	// Files and directories whose name starts with "." are ignored, which
	// also skips the "..data" indirection of Kubernetes ConfigMap volumes
	// while still reading the files linked from it.
	Dir string
	// Poll is the interval of the full rescan that backs up fsnotify, which
	// misses events on some filesystems (NFS, some container overlays).
	// Default 10s.
	Poll time.Duration
	// Debounce groups a burst of file events into one rescan. Default 100ms.
	Debounce time.Duration
	Logger   *slog.Logger
}

// DirSource serves config objects from files in a directory. Each file is
// all-or-nothing: when it fails to decode or validate, its last good objects
// keep serving and its errors are reported in Contents().Diagnostics. If the
// directory itself becomes unreadable, all last loaded files keep serving.
type DirSource struct {
	cfg DirConfig
	log *slog.Logger
	now func() time.Time

	scanMu    sync.Mutex // serialises rescans
	files     map[string]*fileState
	firstSeen map[Key]time.Time
	dirDiag   *Diagnostic // problem with the directory itself

	mu       sync.RWMutex
	contents Contents
}

// fileState is what one file currently contributes.
type fileState struct {
	sum   [sha256.Size]byte
	objs  []*Object // last good objects
	diags Diagnostics
}

var _ Source = (*DirSource)(nil)

// NewDirSource returns a source for cfg.Dir; nothing is read until Run.
func NewDirSource(cfg DirConfig) *DirSource {
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Second
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &DirSource{
		cfg:       cfg,
		log:       log.With("component", "config", "source", "dir", "dir", cfg.Dir),
		now:       time.Now,
		files:     map[string]*fileState{},
		firstSeen: map[Key]time.Time{},
	}
}

// Name implements Source.
func (d *DirSource) Name() string { return "dir" }

// Contents implements Source.
func (d *DirSource) Contents() Contents {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.contents
}

// Run implements Source. It loads the directory, calls changed once (the
// initial sync), then calls changed after every rescan that changed Contents.
func (d *DirSource) Run(ctx context.Context, changed func()) error {
	watcher, err := fsnotify.NewWatcher()
	poll := d.cfg.Poll
	if err != nil {
		// Without inotify (limits exhausted, unsupported FS) polling still
		// meets the "picked up within a second" promise, at some CPU cost.
		d.log.Warn("file watching unavailable, polling instead", "err", err)
		watcher, poll = nil, min(poll, time.Second)
	} else {
		defer watcher.Close()
	}
	watched := map[string]bool{}
	addWatches := func() {
		if watcher == nil {
			return
		}
		_ = filepath.WalkDir(d.cfg.Dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			if path != d.cfg.Dir && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir
			}
			if !watched[path] {
				if err := watcher.Add(path); err != nil {
					d.log.Warn("cannot watch directory", "path", path, "err", err)
					return nil
				}
				watched[path] = true
			}
			return nil
		})
	}

	addWatches()
	d.rescan()
	changed()

	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	var (
		debounce *time.Timer
		fire     <-chan time.Time
		events   <-chan fsnotify.Event
		errs     <-chan error
	)
	if watcher != nil {
		events, errs = watcher.Events, watcher.Errors
	}
	arm := func() {
		if fire == nil {
			debounce = time.NewTimer(d.cfg.Debounce)
			fire = debounce.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			if debounce != nil {
				debounce.Stop()
			}
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Create) {
				// A new subdirectory needs its own watch; files in it are
				// found by the rescan.
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					addWatches()
				}
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				delete(watched, ev.Name)
			}
			arm()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			d.log.Warn("file watch error, rescanning", "err", err)
			arm()
		case <-ticker.C:
			addWatches()
			if d.rescan() {
				changed()
			}
		case <-fire:
			fire = nil
			if d.rescan() {
				changed()
			}
		}
	}
}

// configFile reports whether name is a config file by extension.
func configFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// listFiles returns the config files under dir, sorted by path.
func (d *DirSource) listFiles() ([]string, error) {
	var files []string
	err := filepath.WalkDir(d.cfg.Dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if path == d.cfg.Dir {
				return err
			}
			return nil // a file vanished under us; the next scan sees the truth
		}
		if path == d.cfg.Dir {
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() || !configFile(e.Name()) {
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 {
			// ConfigMap volumes link each key into ..data; follow to a regular file only.
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !e.Type().IsRegular() {
			return nil
		}
		files = append(files, path)
		return nil
	})
	sort.Strings(files)
	return files, err
}

// rescan reads every config file, updates per-file state and rebuilds
// Contents. It reports whether Contents changed.
func (d *DirSource) rescan() bool {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()

	dirty := false
	paths, err := d.listFiles()
	var dirDiag *Diagnostic
	if err != nil {
		// Keep serving what was loaded: a directory that vanishes for a
		// moment (remount, ConfigMap swap, NFS hiccup) must not push an
		// empty config to every proxy. Deleting files, not the directory,
		// is how config is removed.
		dirDiag = &Diagnostic{Severity: SeverityError, Origin: Origin{Source: "dir", File: d.cfg.Dir},
			Message: fmt.Sprintf("cannot read config directory, serving last loaded files: %v", err)}
		paths = paths[:0]
		for p := range d.files {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		changedDiag := d.dirDiag == nil || d.dirDiag.Message != dirDiag.Message
		d.dirDiag = dirDiag
		if changedDiag {
			d.publish(paths)
		}
		return changedDiag
	}
	if (dirDiag == nil) != (d.dirDiag == nil) || (dirDiag != nil && dirDiag.Message != d.dirDiag.Message) {
		dirty = true
	}
	d.dirDiag = dirDiag

	present := map[string]bool{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted between listing and reading: treat as gone
		}
		present[p] = true
		st := d.files[p]
		if err != nil {
			diag := Diagnostic{Severity: SeverityError, Origin: Origin{Source: "dir", File: p}, Message: fmt.Sprintf("cannot read file: %v", err)}
			if st == nil {
				st = &fileState{}
				d.files[p] = st
			}
			st.diags, st.sum = Diagnostics{diag}, [sha256.Size]byte{}
			dirty = true
			continue
		}
		sum := sha256.Sum256(data)
		if st != nil && st.sum == sum {
			continue
		}
		dirty = true
		if st == nil {
			st = &fileState{}
			d.files[p] = st
		}
		st.sum = sum
		d.loadFile(p, data, st)
	}
	for p := range d.files {
		if !present[p] {
			delete(d.files, p)
			dirty = true
			d.log.Info("config file removed", "file", p)
		}
	}
	if !dirty {
		return false
	}
	d.publish(paths)
	return true
}

// loadFile decodes and validates one file. On any error the file's last
// good objects stay in st.objs.
func (d *DirSource) loadFile(path string, data []byte, st *fileState) {
	origin := Origin{Source: "dir", File: path}
	objs, diags := Decode(data, origin)
	for _, o := range objs {
		diags = append(diags, Validate(o)...)
	}
	if diags.HasErrors() {
		st.diags = diags
		d.log.Warn("config file rejected, keeping its last good objects", "file", path,
			"errors", len(diags.Errors()), "first", diags.Errors()[0].Error(), "kept", len(st.objs))
		return
	}
	now := d.now()
	for _, o := range objs {
		if ts, ok := d.firstSeen[o.Key()]; ok {
			o.CreationTimestamp = ts
		} else {
			o.CreationTimestamp = now
			d.firstSeen[o.Key()] = now
		}
	}
	st.objs, st.diags = objs, diags
	d.log.Info("config file loaded", "file", path, "objects", len(objs), "warnings", len(diags))
}

// publish rebuilds Contents from file states in path order; a key defined by
// two files is served from the first path and reported on the later one.
func (d *DirSource) publish(paths []string) {
	var (
		objs  []*Object
		diags Diagnostics
		owner = map[Key]*Object{}
	)
	if d.dirDiag != nil {
		diags = append(diags, *d.dirDiag)
	}
	for _, p := range paths {
		st := d.files[p]
		if st == nil {
			continue
		}
		diags = append(diags, st.diags...)
		for _, o := range st.objs {
			if first, dup := owner[o.Key()]; dup {
				diags = append(diags, Diagnostic{Severity: SeverityError, Origin: o.Origin, Key: o.Key(), Field: "metadata.name",
					Message: fmt.Sprintf("%s is already defined in %s; this copy is ignored", o.Key(), first.Origin)})
				continue
			}
			owner[o.Key()] = o
			objs = append(objs, o)
		}
	}
	// Forget creation times of keys no file defines any more, so a deleted
	// and recreated object is new again.
	for k := range d.firstSeen {
		if _, ok := owner[k]; !ok {
			delete(d.firstSeen, k)
		}
	}
	diags.Sort()
	d.mu.Lock()
	d.contents = Contents{Objects: objs, Diagnostics: diags}
	d.mu.Unlock()
}
