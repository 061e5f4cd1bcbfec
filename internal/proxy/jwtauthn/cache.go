package jwtauthn

import (
	"sync"
	"time"
)

// tokenCache remembers the claims of tokens whose signature verified, so a
// client that sends the same token on every request pays for one signature
// check (Envoy's jwt_cache_config does the same). exp/nbf/aud are still
// checked on every request; an entry lives at most tokenCacheTTL, which
// bounds how long a token verified with a since-rotated key keeps working.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	claims map[string]any
	until  time.Time
}

const (
	tokenCacheSize = 256
	tokenCacheTTL  = 5 * time.Minute
)

func newTokenCache() *tokenCache { return &tokenCache{m: map[string]cachedToken{}} }

func (c *tokenCache) get(tok string, now time.Time) (map[string]any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[tok]
	if !ok || now.After(e.until) {
		return nil, false
	}
	return e.claims, true
}

func (c *tokenCache) put(tok string, claims map[string]any, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[tok]; ok {
		return
	}
	if len(c.m) >= tokenCacheSize {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[tok] = cachedToken{claims: claims, until: now.Add(tokenCacheTTL)}
}
