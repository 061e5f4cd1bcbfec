package jwtauthn

import (
	"testing"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

// FuzzVerify: whatever a client sends as a token, cookie or query, Verify
// answers (pass or a failure status) and never panics.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, jose.ES256, "k")
	p := localProvider(s.jwks)
	p.FromCookies = []string{"session"}
	p.FromParams = []string{"token"}
	p.FromHeaders = []*jwtv3.JwtHeader{{Name: "authorization", ValuePrefix: "Bearer "}}
	filter, err := Compile(istioShape(p), nil)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Add("Bearer "+s.token(f, claims(now)), "session="+s.token(f, claims(now)), "token=a.b.c")
	f.Add("Bearer a.b.c", "session=\"x\"; a=b", "token=")
	f.Add("Bearer ..", ";;=;", "token=%zz&token")
	f.Add("Bearer eyJ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.x", "", "")
	f.Fuzz(func(t *testing.T, auth, cookie, query string) {
		r := newReq("/?"+query, "Authorization", auth, "Cookie", cookie)
		res, fail := filter.Verify(r, now)
		if fail != nil && (fail.Code != 401 && fail.Code != 403 || fail.Body == "") {
			t.Fatalf("failure %+v", fail)
		}
		if fail == nil && res.Metadata != nil && res.Metadata[issuer] == nil {
			t.Fatalf("metadata without the provider's key: %v", res.Metadata)
		}
	})
}
