package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// File names of Istio's plugged-in CA layout (the "cacerts" secret).
const (
	CACertFile    = "ca-cert.pem"    // the signing (intermediate) certificate
	CAKeyFile     = "ca-key.pem"     // its private key
	RootCertFile  = "root-cert.pem"  // the root(s) workloads trust
	CertChainFile = "cert-chain.pem" // ca-cert up to the root
)

// FileSigner signs with a CA certificate and key loaded from Istio's cacerts
// files. Leaves chain through cert-chain.pem to root-cert.pem.
type FileSigner struct {
	cert   *x509.Certificate
	key    crypto.Signer
	chain  []*x509.Certificate // issuer chain appended to every leaf: ca-cert, intermediates..., root
	bundle []*x509.Certificate // every root in root-cert.pem
	now    func() time.Time
}

var _ Signer = (*FileSigner)(nil)

// LoadCACerts loads dir/{ca-cert,ca-key,root-cert,cert-chain}.pem. The chain
// must verify from ca-cert to a root in root-cert.pem; cert-chain.pem may be
// missing when ca-cert is issued directly by the root. root-cert.pem may
// hold several roots (operator-driven rotation); all go into the bundle.
// now may be nil.
func LoadCACerts(dir string, now func() time.Time) (*FileSigner, error) {
	if now == nil {
		now = time.Now
	}
	read := func(name string, optional bool) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ca: cacerts: %w", err)
		}
		return b, nil
	}
	certPEM, err := read(CACertFile, false)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(CAKeyFile, false)
	if err != nil {
		return nil, err
	}
	rootPEM, err := read(RootCertFile, false)
	if err != nil {
		return nil, err
	}
	chainPEM, err := read(CertChainFile, true)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: cacerts: %s: %w", CACertFile, err)
	}
	caCert := certs[0]
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: cacerts: %s: %w", CAKeyFile, err)
	}
	roots, err := ParseCerts(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: cacerts: %s: %w", RootCertFile, err)
	}
	var chain []*x509.Certificate
	if chainPEM != nil {
		if chain, err = ParseCerts(chainPEM); err != nil {
			return nil, fmt.Errorf("ca: cacerts: %s: %w", CertChainFile, err)
		}
	}
	if !caCert.IsCA || caCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: cacerts: %s is not a CA certificate allowed to sign certificates", CACertFile)
	}
	if !publicKeysEqual(caCert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("ca: cacerts: %s does not match the key in %s", CAKeyFile, CACertFile)
	}
	// Istio's cert-chain.pem usually starts with ca-cert itself and ends with
	// the root; accept it with or without either.
	if len(chain) > 0 && bytes.Equal(chain[0].Raw, caCert.Raw) {
		chain = chain[1:]
	}
	rootPool, interPool := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range chain {
		interPool.AddCert(c)
	}
	verified, err := caCert.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: interPool, CurrentTime: now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("ca: cacerts: %s does not chain to %s through %s: %w", CACertFile, RootCertFile, CertChainFile, err)
	}
	// Use the verified path so the issued chain is exactly ca-cert → root.
	return &FileSigner{cert: caCert, key: key, chain: verified[0], bundle: roots, now: now}, nil
}

// Sign issues a leaf: [leaf, ca-cert, intermediates..., root]. When ca-cert
// is the root itself the chain is [leaf, root].
func (f *FileSigner) Sign(_ context.Context, req SignRequest) ([]*x509.Certificate, error) {
	leaf, err := issueLeaf(f.cert, f.key, req, f.now())
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{leaf}, f.chain...), nil
}

// TrustBundle returns the roots in root-cert.pem.
func (f *FileSigner) TrustBundle() []*x509.Certificate {
	return append([]*x509.Certificate(nil), f.bundle...)
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue // e.g. "EC PARAMETERS" written by openssl ecparam
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return a.(equaler).Equal(b)
	}
	return false
}
