package ca_test

import (
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/ca/caclient"
)

// FuzzParseCSR: arbitrary input never panics, and anything accepted names
// an identity in the CA's trust domain.
func FuzzParseCSR(f *testing.F) {
	k, _ := caclient.GenerateKey()
	good, _ := caclient.BuildCSR(k, id("a", "b"))
	f.Add(good)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		_, got, err := ca.ParseCSR(in, td)
		if err == nil && (got.TrustDomain != td || got.Validate() != nil) {
			t.Fatalf("accepted %v", got)
		}
	})
}

// FuzzTokenVerify: only tokens this issuer minted verify.
func FuzzTokenVerify(f *testing.F) {
	tokens, err := ca.NewTokens(ca.TokensConfig{KV: newMemKV(), TrustDomain: td})
	if err != nil {
		f.Fatal(err)
	}
	good, _, _ := tokens.Issue(ca.TokenSpec{Namespace: "a", ServiceAccount: "b", TTL: time.Hour})
	f.Add(good)
	f.Add("weft1..")
	f.Add("weft1.e30.")
	f.Fuzz(func(t *testing.T, in string) {
		if _, err := tokens.Verify(in); err == nil && in != good {
			t.Fatalf("forged token %q verified", in)
		}
	})
}
