package config

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write then rename so the source never reads a half-written file in
	// the happy-path steps; TestDirSourceTruncatedFile covers partial files.
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func sidecarYAML(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: %s\n  namespace: ns\nspec:\n  egress:\n  - hosts: ['./*']\n", n)
	}
	return b.String()
}

func names(c Contents) string {
	var s []string
	for _, o := range c.Objects {
		s = append(s, o.Name)
	}
	return strings.Join(s, ",")
}

func startDir(t *testing.T, dir string) (*DirSource, *atomic.Int32) {
	t.Helper()
	// A long poll proves fsnotify does the work; the safety net has its own test.
	src := NewDirSource(DirConfig{Dir: dir, Poll: time.Hour, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var calls atomic.Int32
	go func() { done <- src.Run(ctx, func() { calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "initial sync", func() bool { return calls.Load() > 0 })
	return src, &calls
}

func TestDirSourceLifecycle(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "sub", "b.yml")
	writeFile(t, a, sidecarYAML("one", "two"))
	writeFile(t, filepath.Join(dir, "notes.txt"), "not config")
	src, calls := startDir(t, dir)

	if got := names(src.Contents()); got != "one,two" {
		t.Fatalf("initial objects = %q, want one,two", got)
	}
	first := src.Contents().Objects[0]
	if first.Origin.Source != "dir" || first.Origin.File != a || first.Origin.Doc != 0 || first.Origin.Line != 2 {
		t.Errorf("origin = %+v", first.Origin)
	}
	created := first.CreationTimestamp
	if created.IsZero() {
		t.Fatal("CreationTimestamp not set")
	}

	// A new file in a subdirectory is picked up.
	before := calls.Load()
	writeFile(t, b, sidecarYAML("three"))
	waitFor(t, "new file in subdir", func() bool { return names(src.Contents()) == "one,two,three" })
	if calls.Load() == before {
		t.Error("changed was not called")
	}

	// Breaking a.yaml keeps its last good objects and reports the error with file and doc.
	writeFile(t, a, sidecarYAML("one")+"---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: two, namespace: ns}\nspec:\n  egress: [{hosts: [nonamespace]}]\n")
	waitFor(t, "diagnostic for broken file", func() bool { return src.Contents().Diagnostics.HasErrors() })
	c := src.Contents()
	if got := names(c); got != "one,two,three" {
		t.Errorf("objects after break = %q, want last good one,two,three", got)
	}
	d := c.Diagnostics.Errors()[0]
	if d.Origin.File != a || d.Origin.Doc != 1 || d.Field != "spec.egress[0].hosts[0]" {
		t.Errorf("diagnostic = %+v", d)
	}

	// Malformed YAML also keeps the last good objects.
	writeFile(t, a, "apiVersion: [\n")
	waitFor(t, "malformed YAML diagnostic", func() bool {
		ds := src.Contents().Diagnostics.Errors()
		return len(ds) == 1 && strings.Contains(ds[0].Message, "malformed YAML")
	})
	if got := names(src.Contents()); got != "one,two,three" {
		t.Errorf("objects after malformed YAML = %q", got)
	}

	// Fixing it serves the new content and clears the error; creation time is stable.
	writeFile(t, a, sidecarYAML("one", "four"))
	waitFor(t, "fixed file", func() bool { return names(src.Contents()) == "one,four,three" })
	c = src.Contents()
	if len(c.Diagnostics) != 0 {
		t.Errorf("diagnostics after fix: %v", c.Diagnostics)
	}
	if !c.Objects[0].CreationTimestamp.Equal(created) {
		t.Errorf("creation time changed across edits: %v -> %v", created, c.Objects[0].CreationTimestamp)
	}

	// Deleting a file removes its objects.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deleted file", func() bool { return names(src.Contents()) == "three" })
}

func TestDirSourceDuplicateKeyAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), sidecarYAML("same"))
	writeFile(t, filepath.Join(dir, "b.yaml"), sidecarYAML("same", "other"))
	src, _ := startDir(t, dir)
	c := src.Contents()
	if got := names(c); got != "same,other" {
		t.Fatalf("objects = %q", got)
	}
	if c.Objects[0].Origin.File != filepath.Join(dir, "a.yaml") {
		t.Errorf("first file should win, got %s", c.Objects[0].Origin.File)
	}
	errs := c.Diagnostics.Errors()
	if len(errs) != 1 || errs[0].Origin.File != filepath.Join(dir, "b.yaml") || errs[0].Key.Name != "same" {
		t.Errorf("want one error on b.yaml, got %v", errs)
	}
}

func TestDirSourceFirstLoadFailure(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.json"), `{"apiVersion":"networking.istio.io/v1","kind":"Nope","metadata":{"name":"x"}}`)
	src, _ := startDir(t, dir)
	c := src.Contents()
	if len(c.Objects) != 0 || len(c.Diagnostics.Errors()) != 1 || c.Diagnostics[0].Field != "kind" {
		t.Fatalf("contents = %s %v", names(c), c.Diagnostics)
	}
}

func TestDirSourceTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.yaml")
	full := sidecarYAML("one", "two")
	writeFile(t, p, full)
	src, _ := startDir(t, dir)
	// Simulate an editor writing in place: every prefix of the file is seen.
	for n := len(full) - 1; n >= 0; n -= 7 {
		if err := os.WriteFile(p, []byte(full[:n]), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = src.rescan()
	}
	writeFile(t, p, full)
	waitFor(t, "recovered file", func() bool {
		c := src.Contents()
		return names(c) == "one,two" && len(c.Diagnostics) == 0
	})
}

func TestDirSourceMissingDirAndPollFallback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	src := NewDirSource(DirConfig{Dir: dir, Poll: 50 * time.Millisecond, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	synced := make(chan struct{}, 100)
	go func() { _ = src.Run(ctx, func() { synced <- struct{}{} }) }()
	<-synced
	if !src.Contents().Diagnostics.HasErrors() {
		t.Fatal("missing directory should be reported")
	}
	// The directory appears later; the periodic rescan finds it.
	writeFile(t, filepath.Join(dir, "a.yaml"), sidecarYAML("late"))
	waitFor(t, "directory created later", func() bool {
		c := src.Contents()
		return names(c) == "late" && len(c.Diagnostics) == 0
	})

	// The directory disappearing keeps the last loaded objects, with an error.
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "directory error", func() bool { return src.Contents().Diagnostics.HasErrors() })
	if got := names(src.Contents()); got != "late" {
		t.Errorf("objects while directory is missing = %q, want last loaded", got)
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "directory back", func() bool {
		c := src.Contents()
		return names(c) == "late" && len(c.Diagnostics) == 0
	})
}

func TestDirSourceConfigMapLayout(t *testing.T) {
	// Kubernetes ConfigMap volumes: a.yaml -> ..data/a.yaml, ..data -> ..2026_01_01.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2026_01_01", "a.yaml"), sidecarYAML("cm"))
	if err := os.Symlink("..2026_01_01", filepath.Join(dir, "..data")); err != nil {
		t.Skip("symlinks unsupported:", err)
	}
	if err := os.Symlink(filepath.Join("..data", "a.yaml"), filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	src, _ := startDir(t, dir)
	if got := names(src.Contents()); got != "cm" {
		t.Fatalf("objects = %q, want cm read once through the symlink", got)
	}
}
