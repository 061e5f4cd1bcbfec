package ca_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
)

func recv(t *testing.T, ch <-chan []*x509.Certificate) []*x509.Certificate {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no bundle update")
		return nil
	}
}

func TestRootRotation(t *testing.T) {
	e := newEnv(t)
	bundles, cancel := e.ca.WatchBundle()
	defer cancel()
	if b := recv(t, bundles); len(b) != 1 {
		t.Fatalf("initial bundle has %d roots", len(b))
	}
	tok := e.token(ca.TokenSpec{Namespace: "shop", ServiceAccount: "cart"})
	oldCert, oldChain := e.issue(id("shop", "cart"), tok, time.Hour)
	oldRoot := e.ca.TrustBundle()[0]

	if err := e.ca.RotateRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	during := recv(t, bundles)
	if len(during) != 2 || during[0].Equal(oldRoot) || !during[1].Equal(oldRoot) {
		t.Fatalf("bundle during overlap = %v, want [new, old]", subjects(during))
	}
	newCert, newChain := e.issue(id("shop", "cart"), tok, time.Hour)
	if !newChain[1].Equal(during[0]) {
		t.Fatal("new leaf is not signed by the new root")
	}
	for name, c := range map[string][]*x509.Certificate{"old": oldChain, "new": newChain} {
		if err := verifies(c[0], nil, during, e.clock.Now()); err != nil {
			t.Errorf("%s leaf does not verify against the overlap bundle: %v", name, err)
		}
	}
	// A workload still holding an old-root cert can renew during the overlap.
	k, _ := caclient.GenerateKey()
	if _, err := caclient.Request(context.Background(), e.dial(oldCert), csrFor(t, k, id("shop", "cart")), time.Hour, ""); err != nil {
		t.Fatalf("renewal with old-root cert during overlap: %v", err)
	}

	if err := e.ca.RetireRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := recv(t, bundles)
	if len(after) != 1 || !after[0].Equal(during[0]) {
		t.Fatalf("bundle after retire = %v, want the new root only", subjects(after))
	}
	if err := verifies(oldChain[0], nil, after, e.clock.Now()); err == nil {
		t.Error("old leaf still verifies after retire")
	}
	if err := verifies(newChain[0], nil, after, e.clock.Now()); err != nil {
		t.Errorf("new leaf: %v", err)
	}
	// e.dial trusts only the new root now, so this also proves weftd's
	// serving certificate was reissued from it.
	if _, err := caclient.Request(context.Background(), e.dial(newCert), csrFor(t, k, id("shop", "cart")), time.Hour, ""); err != nil {
		t.Fatalf("renewal with new cert after retire: %v", err)
	}
	if _, err := caclient.Request(context.Background(), e.dial(oldCert), csrFor(t, k, id("shop", "cart")), time.Hour, ""); err == nil {
		t.Fatal("old-root cert accepted after retire")
	}
}

// TestRootOverlapEndsOnItsOwn: without RetireRoot the old root leaves the
// bundle once every leaf it could have signed has expired.
func TestRootOverlapEndsOnItsOwn(t *testing.T) {
	kv := newMemKV()
	clock := newFakeClock()
	s, err := ca.NewSelfSigned(ca.SelfSignedConfig{KV: kv, TrustDomain: td, Now: clock.Now, MaxLeafTTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.TrustBundle()); n != 2 {
		t.Fatalf("bundle has %d roots after rotation", n)
	}
	if got, want := s.NextRetirement(), clock.Now().Add(48*time.Hour); !got.Equal(want) {
		t.Errorf("NextRetirement = %s, want %s", got, want)
	}
	// The overlap survives a restart.
	s2, err := ca.NewSelfSigned(ca.SelfSignedConfig{KV: kv, TrustDomain: td, Now: clock.Now, MaxLeafTTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s2.TrustBundle()); n != 2 {
		t.Fatalf("bundle has %d roots after restart", n)
	}
	clock.Advance(48*time.Hour + time.Second)
	if n := len(s2.TrustBundle()); n != 1 {
		t.Fatalf("bundle has %d roots after the overlap", n)
	}
	if !s2.NextRetirement().IsZero() {
		t.Error("a retirement is still pending")
	}
}
