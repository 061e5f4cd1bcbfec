package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"
)

// KV location of the self-signed root material.
const (
	kvBucketCA     = "ca"
	kvKeySelfRoots = "selfsigned-roots"
)

// DefaultRootTTL is the lifetime of a generated root.
const DefaultRootTTL = 10 * 365 * 24 * time.Hour

// SelfSignedConfig configures NewSelfSigned.
type SelfSignedConfig struct {
	// KV persists the roots so a restart reuses them. Required.
	KV KV
	// TrustDomain becomes the root's organisation, like Istio's self-signed CA.
	TrustDomain string
	// RootTTL is the lifetime of generated roots (0 → 10 years).
	RootTTL time.Duration
	// MaxLeafTTL bounds how long a leaf signed before a restart may live; it
	// decides how long an old root stays in the bundle after RotateRoot
	// (0 → DefaultMaxTTL). Use the CA's MaxTTL.
	MaxLeafTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SelfSigned signs leaves directly with a root it generated (ECDSA P-256)
// and keeps in the KV store. It supports root rotation with an overlap.
type SelfSigned struct {
	kv      KV
	td      string
	rootTTL time.Duration
	maxLeaf time.Duration
	now     func() time.Time
	loaded  time.Time // leaves signed before this may live until loaded+maxLeaf

	mu    sync.Mutex
	roots []*rootEntry // roots[0] is active (has a key); the rest are old
}

type rootEntry struct {
	cert         *x509.Certificate
	key          crypto.Signer // nil for old roots: they sign nothing
	retireAfter  time.Time     // zero for the active root
	lastNotAfter time.Time     // latest leaf expiry signed in this process
}

// storedRoot is the KV form. The active root's key is stored unencrypted,
// protected only by the data dir's permissions (see docs/identity.md).
type storedRoot struct {
	Cert        string    `json:"cert"`
	Key         string    `json:"key,omitempty"`
	RetireAfter time.Time `json:"retireAfter,omitzero"`
}

var (
	_ Signer      = (*SelfSigned)(nil)
	_ RootRotator = (*SelfSigned)(nil)
)

// NewSelfSigned loads the roots from cfg.KV, generating one on first start.
func NewSelfSigned(cfg SelfSignedConfig) (*SelfSigned, error) {
	if cfg.KV == nil {
		return nil, errors.New("ca: self-signed signer needs a KV store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RootTTL <= 0 {
		cfg.RootTTL = DefaultRootTTL
	}
	if cfg.MaxLeafTTL <= 0 {
		cfg.MaxLeafTTL = DefaultMaxTTL
	}
	s := &SelfSigned{kv: cfg.KV, td: cfg.TrustDomain, rootTTL: cfg.RootTTL, maxLeaf: cfg.MaxLeafTTL, now: cfg.Now, loaded: cfg.Now()}
	raw, ok, err := cfg.KV.GetKV(kvBucketCA, kvKeySelfRoots)
	if err != nil {
		return nil, fmt.Errorf("ca: load self-signed root: %w", err)
	}
	if ok {
		if err := s.decode(raw); err != nil {
			return nil, fmt.Errorf("ca: load self-signed root: %w", err)
		}
		return s, nil
	}
	root, err := s.generateRoot()
	if err != nil {
		return nil, err
	}
	s.roots = []*rootEntry{root}
	if err := s.persistLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *SelfSigned) generateRoot() (*rootEntry, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{s.td}, CommonName: "Weft root CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(s.rootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &rootEntry{cert: cert, key: key}, nil
}

func (s *SelfSigned) decode(raw []byte) error {
	var stored []storedRoot
	if err := json.Unmarshal(raw, &stored); err != nil {
		return err
	}
	if len(stored) == 0 || stored[0].Key == "" {
		return errors.New("no active root with a key")
	}
	for i, st := range stored {
		certs, err := ParseCerts([]byte(st.Cert))
		if err != nil {
			return fmt.Errorf("root %d: %w", i, err)
		}
		e := &rootEntry{cert: certs[0], retireAfter: st.RetireAfter}
		if i == 0 {
			e.key, err = parsePrivateKey([]byte(st.Key))
			if err != nil {
				return fmt.Errorf("root key: %w", err)
			}
		}
		s.roots = append(s.roots, e)
	}
	return nil
}

func (s *SelfSigned) persistLocked() error {
	stored := make([]storedRoot, 0, len(s.roots))
	for _, r := range s.roots {
		st := storedRoot{Cert: string(EncodeCerts([]*x509.Certificate{r.cert})), RetireAfter: r.retireAfter}
		if r.key != nil {
			der, err := x509.MarshalPKCS8PrivateKey(r.key)
			if err != nil {
				return fmt.Errorf("ca: marshal root key: %w", err)
			}
			st.Key = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}
		stored = append(stored, st)
	}
	raw, err := json.Marshal(stored)
	if err != nil {
		return err
	}
	if err := s.kv.PutKV(kvBucketCA, kvKeySelfRoots, raw); err != nil {
		return fmt.Errorf("ca: persist self-signed roots: %w", err)
	}
	return nil
}

// Sign issues a leaf signed directly by the active root: [leaf, root].
func (s *SelfSigned) Sign(_ context.Context, req SignRequest) ([]*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	active := s.roots[0]
	leaf, err := issueLeaf(active.cert, active.key, req, s.now())
	if err != nil {
		return nil, err
	}
	if leaf.NotAfter.After(active.lastNotAfter) {
		active.lastNotAfter = leaf.NotAfter
	}
	return []*x509.Certificate{leaf, active.cert}, nil
}

// TrustBundle returns the active root, then old roots still in overlap.
func (s *SelfSigned) TrustBundle() []*x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := []*x509.Certificate{s.roots[0].cert}
	for _, r := range s.roots[1:] {
		if now.Before(r.retireAfter) {
			out = append(out, r.cert)
		}
	}
	return out
}

// RotateRoot generates a new active root. The old one stays in the bundle
// until every leaf it may have signed has expired: the latest expiry this
// process issued, or, for leaves issued before the last restart, the load
// time plus the max leaf TTL.
func (s *SelfSigned) RotateRoot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := s.generateRoot()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.roots[0]
	retire := s.loaded.Add(s.maxLeaf)
	if old.lastNotAfter.After(retire) {
		retire = old.lastNotAfter
	}
	if old.cert.NotAfter.Before(retire) {
		retire = old.cert.NotAfter
	}
	prev, oldKey := s.roots, old.key
	old.retireAfter, old.key = retire, nil
	s.roots = append([]*rootEntry{root}, s.prunedLocked(prev)...)
	if err := s.persistLocked(); err != nil {
		s.roots, old.retireAfter, old.key = prev, time.Time{}, oldKey
		return err
	}
	return nil
}

// RetireRoot removes every old root from the bundle now.
func (s *SelfSigned) RetireRoot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.roots
	s.roots = s.roots[:1:1]
	if err := s.persistLocked(); err != nil {
		s.roots = prev
		return err
	}
	return nil
}

// NextRetirement returns when the next old root drops out of the bundle.
func (s *SelfSigned) NextRetirement() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var next time.Time
	for _, r := range s.roots[1:] {
		if r.retireAfter.After(now) && (next.IsZero() || r.retireAfter.Before(next)) {
			next = r.retireAfter
		}
	}
	return next
}

// prunedLocked keeps roots still inside their overlap; expired ones are
// dropped from storage too.
func (s *SelfSigned) prunedLocked(roots []*rootEntry) []*rootEntry {
	now := s.now()
	var out []*rootEntry
	for _, r := range roots {
		if r.key == nil && !now.Before(r.retireAfter) {
			continue
		}
		out = append(out, r)
	}
	return out
}
