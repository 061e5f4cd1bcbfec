package ca

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// KV locations of token state.
const (
	kvKeyTokenKey     = "token-hmac-key"
	kvBucketUsedToken = "ca-used-tokens"
	tokenPrefix       = "weft1."
)

// Token lifetimes.
const (
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 365 * 24 * time.Hour
)

// TokenSpec describes a bootstrap token: who may hold it and for how long.
type TokenSpec struct {
	Namespace      string
	ServiceAccount string
	// WorkloadGroup optionally binds the token to a WorkloadGroup (same
	// namespace) for auto-registration; the CA only passes it on in Grant.
	WorkloadGroup string
	// TTL is how long the token is accepted (0 → 1h, at most 365 days).
	TTL time.Duration
	// SingleUse tokens are accepted for exactly one certificate.
	SingleUse bool
}

// TokenClaims is the signed content of a token.
type TokenClaims struct {
	ID             string `json:"jti"`
	TrustDomain    string `json:"td"`
	Namespace      string `json:"ns"`
	ServiceAccount string `json:"sa"`
	WorkloadGroup  string `json:"wg,omitempty"`
	IssuedAt       int64  `json:"iat"`
	Expires        int64  `json:"exp"`
	SingleUse      bool   `json:"su,omitempty"`
}

// SPIFFEID returns the identity the token grants.
func (c TokenClaims) SPIFFEID() spiffe.ID {
	return spiffe.ID{TrustDomain: c.TrustDomain, Namespace: c.Namespace, ServiceAccount: c.ServiceAccount}
}

// TokensConfig configures NewTokens.
type TokensConfig struct {
	KV          KV
	TrustDomain string
	Now         func() time.Time
}

// Tokens issues and validates bootstrap tokens: HMAC-SHA256 over a JSON
// claim set, keyed by a 256-bit secret generated on first start and kept in
// the KV store. Only weftd verifies them, so a shared secret suffices.
//
// Single use is enforced by recording consumed token IDs in the KV store
// under a process-wide lock; the embedded store is opened by one weftd at
// a time (bbolt file lock), so that is exact. Replicas sharing a store
// would need an atomic insert-if-absent there.
type Tokens struct {
	kv  KV
	td  string
	key []byte
	now func() time.Time

	useMu sync.Mutex // serialises check-and-record of single-use IDs
}

var _ Authenticator = (*Tokens)(nil)

// NewTokens loads the signing key from cfg.KV, creating it on first use.
func NewTokens(cfg TokensConfig) (*Tokens, error) {
	if cfg.KV == nil {
		return nil, errors.New("ca: tokens need a KV store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	key, ok, err := cfg.KV.GetKV(kvBucketCA, kvKeyTokenKey)
	if err != nil {
		return nil, fmt.Errorf("ca: load token key: %w", err)
	}
	if !ok {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := cfg.KV.PutKV(kvBucketCA, kvKeyTokenKey, key); err != nil {
			return nil, fmt.Errorf("ca: store token key: %w", err)
		}
	}
	if len(key) < 32 {
		return nil, errors.New("ca: stored token key is too short")
	}
	return &Tokens{kv: cfg.KV, td: cfg.TrustDomain, key: key, now: cfg.Now}, nil
}

// Issue mints a token for spec. The token string is a secret: hand it to
// the workload only, never log it.
func (t *Tokens) Issue(spec TokenSpec) (string, TokenClaims, error) {
	if spec.TTL == 0 {
		spec.TTL = DefaultTokenTTL
	}
	if spec.TTL < 0 || spec.TTL > MaxTokenTTL {
		return "", TokenClaims{}, fmt.Errorf("ca: token TTL %s outside (0, %s]", spec.TTL, MaxTokenTTL)
	}
	id := spiffe.ID{TrustDomain: t.td, Namespace: spec.Namespace, ServiceAccount: spec.ServiceAccount}
	if err := id.Validate(); err != nil {
		return "", TokenClaims{}, fmt.Errorf("ca: token: %w", err)
	}
	if spec.WorkloadGroup != "" && strings.ContainsAny(spec.WorkloadGroup, "/ ") {
		return "", TokenClaims{}, fmt.Errorf("ca: token: invalid WorkloadGroup name %q", spec.WorkloadGroup)
	}
	rnd := make([]byte, 16)
	if _, err := rand.Read(rnd); err != nil {
		return "", TokenClaims{}, err
	}
	now := t.now()
	c := TokenClaims{
		ID: hex.EncodeToString(rnd), TrustDomain: t.td, Namespace: spec.Namespace, ServiceAccount: spec.ServiceAccount,
		WorkloadGroup: spec.WorkloadGroup, IssuedAt: now.Unix(), Expires: now.Add(spec.TTL).Unix(), SingleUse: spec.SingleUse,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", TokenClaims{}, err
	}
	signed := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(t.mac(signed)), c, nil
}

func (t *Tokens) mac(signed string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Verify checks a token's signature, expiry and trust domain, and for a
// single-use token that it was not used yet. It does not consume it.
// Errors wrap ErrInvalidToken and never contain the token.
func (t *Tokens) Verify(token string) (TokenClaims, error) {
	signed, sig, ok := strings.Cut(strings.TrimPrefix(token, tokenPrefix), ".")
	if !strings.HasPrefix(token, tokenPrefix) || !ok {
		return TokenClaims{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(mac, t.mac(tokenPrefix+signed)) {
		return TokenClaims{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(signed)
	if err != nil {
		return TokenClaims{}, fmt.Errorf("%w: malformed payload", ErrInvalidToken)
	}
	var c TokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return TokenClaims{}, fmt.Errorf("%w: malformed payload", ErrInvalidToken)
	}
	if !t.now().Before(time.Unix(c.Expires, 0)) {
		return c, fmt.Errorf("%w: token %s expired at %s", ErrInvalidToken, c.ID, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	if c.TrustDomain != t.td {
		return c, fmt.Errorf("%w: token %s is for trust domain %q", ErrInvalidToken, c.ID, c.TrustDomain)
	}
	if c.SingleUse {
		used, err := t.used(c.ID)
		if err != nil {
			return c, err
		}
		if used {
			return c, fmt.Errorf("%w: single-use token %s was already used", ErrInvalidToken, c.ID)
		}
	}
	return c, nil
}

func (t *Tokens) used(id string) (bool, error) {
	_, ok, err := t.kv.GetKV(kvBucketUsedToken, id)
	if err != nil {
		return false, fmt.Errorf("ca: token %s: read consumed IDs: %w", id, err)
	}
	return ok, nil
}

// consume records a single-use token as used; exactly one of several
// concurrent callers for the same ID succeeds.
func (t *Tokens) consume(c TokenClaims) error {
	t.useMu.Lock()
	defer t.useMu.Unlock()
	used, err := t.used(c.ID)
	if err != nil {
		return err
	}
	if used {
		return fmt.Errorf("%w: single-use token %s was already used", ErrInvalidToken, c.ID)
	}
	if err := t.kv.PutKV(kvBucketUsedToken, c.ID, []byte(time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("ca: token %s: record use: %w", c.ID, err)
	}
	return nil
}

// Authenticate implements Authenticator for "authorization: Bearer" tokens.
func (t *Tokens) Authenticate(_ context.Context, c Caller) (*Grant, error) {
	if c.Token == "" {
		return nil, fmt.Errorf("%w (no bearer token)", ErrNoCredential)
	}
	claims, err := t.Verify(c.Token)
	if err != nil {
		return nil, err
	}
	g := &Grant{ID: claims.SPIFFEID(), Method: "token", CredentialID: claims.ID, WorkloadGroup: claims.WorkloadGroup}
	if claims.SingleUse {
		g.Commit = func() error { return t.consume(claims) }
	}
	return g, nil
}
