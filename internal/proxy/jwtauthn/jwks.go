package jwtauthn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keySet is a parsed JWKS: the usable public signing keys.
type keySet struct {
	keys    []jose.JSONWebKey
	fetched time.Time
}

// maxJWKSBytes bounds a JWKS document (inline, file or fetched).
const maxJWKSBytes = 1 << 20

// parseJWKS parses a JSON Web Key Set, keeping every public signing key
// go-jose understands and skipping the rest (an IdP may publish key types
// a verifier does not know; one of them must not void the whole set).
// A set with no usable key is an error.
func parseJWKS(b []byte) (*keySet, error) {
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS is %d bytes, more than %d", len(b), maxJWKSBytes)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("JWKS is not JSON: %v", err)
	}
	ks := &keySet{}
	var skipped []string
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: not a public signing key", i))
			continue
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("JWKS has no usable key (%s)", skipped[0])
		}
		return nil, errors.New("JWKS has no keys")
	}
	return ks, nil
}

// keySource returns the keys a provider verifies with.
type keySource interface {
	// keys returns the current keys, or an error when none are available
	// (a remote set that could not be fetched yet).
	keys() (*keySet, error)
}

// staticKeys is a JWKS from the config (inline or a file read at compile time).
type staticKeys struct{ ks *keySet }

func (s staticKeys) keys() (*keySet, error) { return s.ks, nil }

// KeyCache fetches remote JWKS (remote_jwks.http_uri) directly over
// HTTP(S) and caches them per URI, shared by every snapshot built from the
// same xDS stream so an LDS update does not refetch.
//
// Keys are fetched as soon as a config referencing the URI is compiled
// (Envoy's async_fetch), then again once cache_duration has passed, on the
// first request that needs them: requests keep using the previous keys
// while the refresh runs (a failed refresh keeps them too and is retried
// after minRefetch). Only a request that finds no keys at all waits, at
// most the URI's timeout, for the first fetch.
type KeyCache struct {
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*remoteKeys
}

// KeyCacheConfig configures a KeyCache.
type KeyCacheConfig struct {
	// Client fetches the key sets; nil uses a client with the system roots
	// that dials directly (HTTP_PROXY is for the application, not for
	// the proxy's own fetches).
	Client *http.Client
	// Logger receives fetch failures (component jwt).
	Logger *slog.Logger
	// Now is the clock (tests); defaults to time.Now.
	Now func() time.Time
}

// NewKeyCache returns an empty KeyCache.
func NewKeyCache(cfg KeyCacheConfig) *KeyCache {
	c := &KeyCache{client: cfg.Client, log: cfg.Logger, now: cfg.Now, entries: map[string]*remoteKeys{}}
	if c.client == nil {
		c.client = &http.Client{Transport: &http.Transport{
			Proxy: nil, ForceAttemptHTTP2: true, MaxIdleConns: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		}}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "jwt")
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

const (
	// DefaultCacheDuration is Envoy's remote_jwks cache_duration default.
	DefaultCacheDuration = 10 * time.Minute
	// minRefetch spaces out fetch attempts of one URI after a failure
	// (Envoy's async_fetch failed_refetch_duration default is 1s).
	minRefetch = time.Second
	// unusedTTL drops URIs no compiled config has asked for in this long.
	unusedTTL = time.Hour
)

// remoteKeys is one URI's cached key set and fetch state.
type remoteKeys struct {
	c   *KeyCache
	uri string

	cur      atomic.Pointer[keySet]
	timeout  atomic.Int64 // ns
	duration atomic.Int64 // ns
	used     atomic.Int64 // unix ns of the last compile or lookup

	mu          sync.Mutex
	inflight    chan struct{} // closed when the running fetch ends; nil when idle
	lastAttempt time.Time
	lastErr     error
}

// remote returns the cache entry for uri (creating it and starting its
// first fetch), with the latest timeout and cache duration.
func (c *KeyCache) remote(uri string, timeout, cacheDuration time.Duration) *remoteKeys {
	now := c.now()
	c.mu.Lock()
	for u, e := range c.entries {
		if now.Sub(time.Unix(0, e.used.Load())) > unusedTTL {
			delete(c.entries, u)
		}
	}
	e := c.entries[uri]
	if e == nil {
		e = &remoteKeys{c: c, uri: uri}
		c.entries[uri] = e
	}
	c.mu.Unlock()
	e.timeout.Store(int64(timeout))
	e.duration.Store(int64(cacheDuration))
	e.used.Store(now.UnixNano())
	if e.cur.Load() == nil {
		e.startFetch(now)
	}
	return e
}

func (e *remoteKeys) keys() (*keySet, error) {
	now := e.c.now()
	e.used.Store(now.UnixNano())
	ks := e.cur.Load()
	if ks != nil {
		if now.Sub(ks.fetched) >= time.Duration(e.duration.Load()) {
			e.startFetch(now) // stale: refresh in the background, serve these meanwhile
		}
		return ks, nil
	}
	done := e.startFetch(now)
	if done != nil {
		t := time.NewTimer(time.Duration(e.timeout.Load()))
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	if ks := e.cur.Load(); ks != nil {
		return ks, nil
	}
	e.mu.Lock()
	err := e.lastErr
	e.mu.Unlock()
	if err == nil {
		err = errors.New("not fetched yet")
	}
	return nil, err
}

// startFetch starts a fetch unless one is running or the last attempt
// was less than minRefetch ago; it returns the channel closed when the
// running fetch ends (nil when none runs).
func (e *remoteKeys) startFetch(now time.Time) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inflight != nil {
		return e.inflight
	}
	if !e.lastAttempt.IsZero() && now.Sub(e.lastAttempt) < minRefetch {
		return nil
	}
	e.lastAttempt = now
	done := make(chan struct{})
	e.inflight = done
	go e.fetch(done)
	return done
}

// fetch runs on its own goroutine, bounded by the URI's timeout.
func (e *remoteKeys) fetch(done chan struct{}) {
	ks, err := e.get()
	e.mu.Lock()
	e.lastErr = err
	e.inflight = nil
	e.mu.Unlock()
	if err != nil {
		e.c.log.Warn("JWKS fetch failed; keeping the previous keys", "uri", e.uri, "err", err)
	} else {
		ks.fetched = e.c.now()
		e.cur.Store(ks)
		e.c.log.Debug("JWKS fetched", "uri", e.uri, "keys", len(ks.keys))
	}
	close(done)
}

func (e *remoteKeys) get() (*keySet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(e.timeout.Load()))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := e.c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", e.uri, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	return parseJWKS(b)
}
