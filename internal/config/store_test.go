package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
)

func openTestStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenStore(StoreConfig{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bookinfoObjects(t *testing.T) []*Object {
	t.Helper()
	data, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, diags := Decode(data, Origin{Source: "cli"})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	return objs
}

func TestStoreApplyReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	s := openTestStore(t, path)
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }

	objs := bookinfoObjects(t)
	if _, err := s.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	c := s.Contents()
	if len(c.Objects) != len(objs) {
		t.Fatalf("got %d objects, want %d", len(c.Objects), len(objs))
	}
	versions := map[string]bool{}
	for _, o := range c.Objects {
		if o.Generation != 1 || !o.CreationTimestamp.Equal(clock) || o.Origin.Source != "store" {
			t.Errorf("%s: generation %d created %v origin %v", o.Key(), o.Generation, o.CreationTimestamp, o.Origin)
		}
		if o.ResourceVersion == "" || versions[o.ResourceVersion] {
			t.Errorf("%s: resourceVersion %q not unique", o.Key(), o.ResourceVersion)
		}
		versions[o.ResourceVersion] = true
	}
	if objs[0].ResourceVersion != "" {
		t.Error("Apply modified the caller's object")
	}

	// Update the VS spec: generation bumps, creation time stays, rv grows.
	vsKey := Key{Kind: KindVirtualService, Namespace: "bookinfo", Name: "reviews"}
	before := find(t, s.Contents(), vsKey)
	vs := cloneObject(before)
	vs.Spec.(*networkingv1.VirtualService).Http[1].Route[0].Weight = 80
	vs.Spec.(*networkingv1.VirtualService).Http[1].Route[1].Weight = 20
	clock = clock.Add(time.Hour)
	if _, err := s.Apply(ctx, []*Object{vs}); err != nil {
		t.Fatal(err)
	}
	after := find(t, s.Contents(), vsKey)
	if after.Generation != 2 || !after.CreationTimestamp.Equal(before.CreationTimestamp) || rv(t, after) <= rv(t, before) {
		t.Errorf("after update: gen %d created %v rv %s (before rv %s)", after.Generation, after.CreationTimestamp, after.ResourceVersion, before.ResourceVersion)
	}

	// Labels only: new rv, same generation. Identical re-apply: nothing changes.
	lbl := cloneObject(after)
	lbl.Labels = map[string]string{"team": "books"}
	if _, err := s.Apply(ctx, []*Object{lbl}); err != nil {
		t.Fatal(err)
	}
	labeled := find(t, s.Contents(), vsKey)
	if labeled.Generation != 2 || rv(t, labeled) <= rv(t, after) {
		t.Errorf("label change: gen %d rv %s", labeled.Generation, labeled.ResourceVersion)
	}
	if _, err := s.Apply(ctx, []*Object{cloneObject(labeled)}); err != nil {
		t.Fatal(err)
	}
	if again := find(t, s.Contents(), vsKey); again.ResourceVersion != labeled.ResourceVersion {
		t.Errorf("identical apply bumped rv %s -> %s", labeled.ResourceVersion, again.ResourceVersion)
	}

	want := s.Contents()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, path)
	defer s2.Close()
	got := s2.Contents()
	if len(got.Objects) != len(want.Objects) || len(got.Diagnostics) != 0 {
		t.Fatalf("after reopen: %d objects %v, want %d", len(got.Objects), got.Diagnostics, len(want.Objects))
	}
	for i, o := range got.Objects {
		w := want.Objects[i]
		if o.Key() != w.Key() || o.ResourceVersion != w.ResourceVersion || o.Generation != w.Generation ||
			!o.CreationTimestamp.Equal(w.CreationTimestamp) || !proto.Equal(o.Spec, w.Spec) || !equalMaps(o.Labels, w.Labels) {
			t.Errorf("object %d differs after reopen:\n got %+v\nwant %+v", i, o.Meta, w.Meta)
		}
	}
	// The counter survives reopen: the next write gets a larger version.
	next := cloneObject(find(t, got, vsKey))
	next.Labels = nil
	if _, err := s2.Apply(ctx, []*Object{next}); err != nil {
		t.Fatal(err)
	}
	if rv(t, find(t, s2.Contents(), vsKey)) <= rv(t, labeled) {
		t.Error("resourceVersion went backwards after reopen")
	}
}

func find(t *testing.T, c Contents, k Key) *Object {
	t.Helper()
	for _, o := range c.Objects {
		if o.Key() == k {
			return o
		}
	}
	t.Fatalf("%s not found", k)
	return nil
}

func rv(t *testing.T, o *Object) int {
	t.Helper()
	var n int
	for _, c := range o.ResourceVersion {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestStoreApplyRejectsWholeBatch(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "weft.db"))
	defer s.Close()
	good := mustObject(t, KindSidecar, "egress: [{hosts: ['./*']}]")
	bad := mustObject(t, KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}, weight: 101}]}]")
	diags, err := s.Apply(context.Background(), []*Object{good, bad})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if len(diags.Errors()) != 1 || diags.Errors()[0].Field != "spec.http[0].route[0].weight" {
		t.Errorf("diags = %v", diags)
	}
	if n := len(s.Contents().Objects); n != 0 {
		t.Errorf("%d objects written from a rejected batch", n)
	}
	// Duplicate keys in one batch are rejected too.
	if _, err := s.Apply(context.Background(), []*Object{good, good}); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate keys: err = %v", err)
	}
}

func TestStoreDeleteAndNotify(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openTestStore(t, filepath.Join(t.TempDir(), "weft.db"))
	defer s.Close()
	calls := make(chan struct{}, 10)
	go func() { _ = s.Run(ctx, func() { calls <- struct{}{} }) }()
	<-calls // initial sync

	o := mustObject(t, KindSidecar, "egress: [{hosts: ['./*']}]")
	if _, err := s.Apply(ctx, []*Object{o}); err != nil {
		t.Fatal(err)
	}
	<-calls
	if err := s.Delete(ctx, Key{Kind: KindSidecar, Namespace: "ns", Name: "missing"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete missing: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, o.Key()); err != nil {
		t.Fatal(err)
	}
	<-calls
	if n := len(s.Contents().Objects); n != 0 {
		t.Errorf("%d objects after delete", n)
	}
	if err := s.Delete(ctx, o.Key()); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
}

func TestStoreVIPsAndKV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	s := openTestStore(t, path)
	if err := s.SaveVIPs(map[string]string{"a.example.com": "240.240.0.1", "b.example.com": "240.240.0.2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveVIPs(map[string]string{"a.example.com": "240.240.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKV("admin", "password-hash", []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, path)
	defer s.Close()
	vips, err := s.LoadVIPs()
	if err != nil {
		t.Fatal(err)
	}
	if len(vips) != 1 || vips["a.example.com"] != "240.240.0.1" {
		t.Errorf("vips = %v; SaveVIPs should replace, not merge", vips)
	}
	v, ok, err := s.GetKV("admin", "password-hash")
	if err != nil || !ok || string(v) != "xyz" {
		t.Errorf("GetKV = %q %v %v", v, ok, err)
	}
	if _, ok, err := s.GetKV("admin", "nope"); ok || err != nil {
		t.Errorf("missing key: ok %v err %v", ok, err)
	}
	if _, ok, err := s.GetKV("ca", "root"); ok || err != nil {
		t.Errorf("missing bucket: ok %v err %v", ok, err)
	}
	// A KV bucket named like an internal bucket must not touch config objects.
	if err := s.PutKV("objects", "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if len(s.Contents().Diagnostics) != 0 {
		t.Error("kv write leaked into objects")
	}
}

func TestStoreUndecodableObjectIsReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	s := openTestStore(t, path)
	if _, err := s.Apply(context.Background(), []*Object{mustObject(t, KindSidecar, "egress: [{hosts: ['./*']}]")}); err != nil {
		t.Fatal(err)
	}
	// Simulate an object written by a future Weft with a field this one does not know.
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketObjects).Put([]byte("Sidecar/ns/future"),
			[]byte("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: future, namespace: ns}\nspec: {newField: 1}\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, path)
	defer s.Close()
	c := s.Contents()
	if len(c.Objects) != 1 || c.Objects[0].Name != "t" {
		t.Errorf("objects = %d, want the decodable one", len(c.Objects))
	}
	if len(c.Diagnostics) != 1 || c.Diagnostics[0].Field != "spec.newField" || !strings.Contains(c.Diagnostics[0].Message, "Sidecar/ns/future") {
		t.Errorf("diagnostics = %v", c.Diagnostics)
	}
}
