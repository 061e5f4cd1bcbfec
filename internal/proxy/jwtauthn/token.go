package jwtauthn

// Token handling: finding tokens in a request, verifying them against a
// provider (signature, issuer, time, audience) and shaping the outputs.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/weftmesh/weft/internal/proxy/runtime/route"
)

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

// extract finds the distinct tokens in the locations of provs (at most
// maxTokens; more are ignored).
func (f *Filter) extract(req Request, provs []*provider, out []found) []found {
	for _, p := range provs {
		for _, loc := range p.locations {
			tok, ok := lookup(req, loc)
			if !ok || tok == "" {
				continue
			}
			dup := false
			for i := range out {
				if out[i].token == tok {
					dup = true
					break
				}
			}
			if !dup && len(out) < cap(out) {
				out = append(out, found{token: tok, loc: loc})
			}
		}
	}
	return out
}

func lookup(req Request, loc location) (string, bool) {
	switch loc.kind {
	case locHeader:
		v, ok := req.Header(loc.name)
		if !ok || !hasPrefix(v, loc.prefix) {
			return "", false
		}
		return string(bytes.TrimSpace(v[len(loc.prefix):])), true
	case locParam:
		v, ok := route.QueryParam(req.RawQuery(), loc.name)
		return string(v), ok
	case locCookie:
		c, ok := req.Header("cookie")
		if !ok {
			return "", false
		}
		return cookie(c, loc.name)
	}
	return "", false
}

// cookie returns the value of cookie name in a Cookie header.
func cookie(h []byte, name string) (string, bool) {
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ';'); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		part = bytes.TrimSpace(part)
		if k, v, ok := bytes.Cut(part, []byte("=")); ok && string(k) == name {
			return string(bytes.Trim(v, `"`)), true
		}
	}
	return "", false
}

// payloadOf returns the base64url payload segment of a compact JWS as
// Envoy's forward_payload_header sends it (unpadded).
func payloadOf(tok string) string {
	parts := strings.SplitN(tok, ".", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// claimString returns a claim (dot path for nested claims) as a header
// value: strings as they are, numbers and booleans formatted.
func claimString(claims map[string]any, name string) (string, bool) {
	v, ok := lookupClaim(claims, name)
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

func lookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	for _, k := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// normalize returns claims with the space-delimited claims (Envoy's
// normalize_payload_in_metadata; Istio adds "scope" and "permission")
// split into lists. claims may be shared with the token cache, so maps on
// a changed path are copied, never modified.
func normalize(claims map[string]any, spaceDelimited []string) map[string]any {
	out, copied := claims, false
	for _, name := range spaceDelimited {
		path := []string{name}
		if _, top := out[name]; !top {
			path = strings.Split(name, ".") // a nested claim
		}
		if m, changed := splitClaim(out, path, !copied); changed {
			out, copied = m, true
		}
	}
	return out
}

// splitClaim returns m with the string at path replaced by its
// space-separated fields; m itself is copied first when mustCopy.
func splitClaim(m map[string]any, path []string, mustCopy bool) (map[string]any, bool) {
	v, ok := m[path[0]]
	if !ok {
		return m, false
	}
	var nv any
	if len(path) == 1 {
		s, ok := v.(string)
		if !ok {
			return m, false
		}
		list := []any{}
		for _, f := range strings.Fields(s) {
			list = append(list, f)
		}
		nv = list
	} else {
		sub, ok := v.(map[string]any)
		if !ok {
			return m, false
		}
		ns, changed := splitClaim(sub, path[1:], true)
		if !changed {
			return m, false
		}
		nv = ns
	}
	if mustCopy {
		c := make(map[string]any, len(m))
		for k, x := range m {
			c[k] = x
		}
		m = c
	}
	m[path[0]] = nv
	return m, true
}

// Algorithms accepted in JWS headers. "none" and HMAC are refused: a JWKS
// holds public keys.
var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// maxTokenBytes bounds a token's length before any parsing.
const maxTokenBytes = 16 << 10

// verifyToken finds the providers for a token (issuer and location) and
// verifies it with each until one succeeds (several RequestAuthentications
// may configure one issuer). prov is the provider that verified it, or the
// first it failed with (nil for an unknown issuer or a malformed token).
func verifyToken(tok string, loc location, provs []*provider, now time.Time) (Status, *provider, map[string]any) {
	if len(tok) > maxTokenBytes || strings.Count(tok, ".") != 2 {
		return StatusBadFormat, nil, nil
	}
	// A token seen before is found without decoding it again.
	for _, p := range provs {
		if p.hasLocation(loc) {
			if claims, ok := p.cache.get(tok, now); ok && p.checkClaims(claims, now) == StatusOK {
				return StatusOK, p, claims
			}
		}
	}
	iss, ok := unverifiedIssuer(tok)
	if !ok {
		return StatusBadFormat, nil, nil
	}
	st, failed := StatusUnknownIssuer, (*provider)(nil)
	for _, p := range provs {
		if p.issuer != iss || !p.hasLocation(loc) {
			continue
		}
		s, claims := p.verify(tok, now)
		if s == StatusOK {
			return StatusOK, p, claims
		}
		if failed == nil {
			st, failed = s, p
		}
	}
	return st, failed, nil
}

// verify checks tok's signature (or finds it in the cache) and claims.
func (p *provider) verify(tok string, now time.Time) (Status, map[string]any) {
	claims, ok := p.cache.get(tok, now)
	if !ok {
		var st Status
		if st, claims = p.verifySignature(tok); st != StatusOK {
			return st, nil
		}
	}
	if st := p.checkClaims(claims, now); st != StatusOK {
		return st, nil
	}
	p.cache.put(tok, claims, now)
	return StatusOK, claims
}

func (p *provider) hasLocation(loc location) bool {
	for _, l := range p.locations {
		if l == loc {
			return true
		}
	}
	return false
}

// unverifiedIssuer reads "iss" from the payload without verifying it, to
// pick the provider.
func unverifiedIssuer(tok string) (string, bool) {
	seg := tok[strings.IndexByte(tok, '.')+1:]
	seg = seg[:strings.IndexByte(seg, '.')]
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return "", false
	}
	return c.Iss, true
}

func (p *provider) verifySignature(tok string) (Status, map[string]any) {
	jws, err := jose.ParseSignedCompact(tok, algorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return StatusVerificationFails, nil
	}
	ks, err := p.keys.keys()
	if err != nil {
		return StatusFetchFailed, nil
	}
	hdr := jws.Signatures[0].Protected
	matched := false
	for i := range ks.keys {
		k := &ks.keys[i]
		if hdr.KeyID != "" && k.KeyID != hdr.KeyID || k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		matched = true
		payload, err := jws.Verify(k)
		if err != nil {
			continue
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			return StatusVerificationFails, nil
		}
		return StatusOK, claims
	}
	if !matched {
		return StatusNoMatchingKey, nil
	}
	return StatusVerificationFails, nil
}

// checkClaims checks iss, exp, nbf (with the clock skew) and aud.
func (p *provider) checkClaims(c map[string]any, now time.Time) Status {
	if iss, _ := c["iss"].(string); iss != p.issuer {
		return StatusUnknownIssuer
	}
	exp, hasExp := c["exp"].(float64)
	switch {
	case hasExp && now.After(time.Unix(int64(exp), 0).Add(p.clockSkew)):
		return StatusExpired
	case !hasExp && p.requireExp:
		return StatusExpired
	}
	if nbf, ok := c["nbf"].(float64); ok && now.Add(p.clockSkew).Before(time.Unix(int64(nbf), 0)) {
		return StatusNotYetValid
	}
	if len(p.audiences) == 0 {
		return StatusOK
	}
	switch aud := c["aud"].(type) {
	case string:
		for _, a := range p.audiences {
			if a == aud {
				return StatusOK
			}
		}
	case []any:
		for _, x := range aud {
			if s, ok := x.(string); ok {
				for _, a := range p.audiences {
					if a == s {
						return StatusOK
					}
				}
			}
		}
	}
	return StatusAudienceNotAllowed
}
