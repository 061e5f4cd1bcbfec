package tlsorigin

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/weftmesh/weft/internal/ca/spiffe"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// verifier checks a server's certificate for one context.
type verifier struct {
	o      *Origin
	v      upstream.Validation
	anchor func() *x509.CertPool // nil: no chain verification
	crls   []*x509.RevocationList
	mesh   bool
}

func (o *Origin) newVerifier(d *upstream.UpstreamTLS) (*verifier, error) {
	v := &verifier{o: o, v: d.Validation}
	switch d.Validation.Trust {
	case upstream.TrustMesh:
		v.mesh, v.anchor = true, o.cfg.Identity.Roots
	case upstream.TrustCA:
		b, err := o.read(d.Validation.CA)
		if err != nil {
			return nil, fmt.Errorf("tlsorigin: trusted_ca %s: %w", d.Validation.CA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tlsorigin: trusted_ca %s: no PEM certificates", d.Validation.CA)
		}
		v.anchor = func() *x509.CertPool { return pool }
	case upstream.TrustSystem:
		pool, err := o.cfg.SystemRoots()
		if err != nil {
			return nil, fmt.Errorf("tlsorigin: system roots: %w", err)
		}
		v.anchor = func() *x509.CertPool { return pool }
	}
	if !d.Validation.CRL.IsZero() {
		b, err := o.read(d.Validation.CRL)
		if err != nil {
			return nil, fmt.Errorf("tlsorigin: crl %s: %w", d.Validation.CRL, err)
		}
		if v.crls, err = parseCRLs(b); err != nil {
			return nil, fmt.Errorf("tlsorigin: crl %s: %w", d.Validation.CRL, err)
		}
	}
	return v, nil
}

// parseCRLs reads PEM "X509 CRL" blocks, or one DER CRL.
func parseCRLs(b []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		l, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, errors.New("no CRL in PEM or DER form")
		}
		out = append(out, l)
	}
	return out, nil
}

// verifyError is a server certificate we refused.
type verifyError struct {
	err              error
	unknownAuthority bool // the chain leads to no trusted root
	resumed          bool // on a resumed session (certificates of an earlier handshake)
}

func (e *verifyError) Error() string { return "server certificate: " + e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// verify is the tls.Config.VerifyConnection of a context.
func (v *verifier) verify(cs tls.ConnectionState) error {
	err := v.check(cs)
	if err == nil {
		return nil
	}
	var ua x509.UnknownAuthorityError
	return &verifyError{err: err, unknownAuthority: errors.As(err, &ua), resumed: cs.DidResume}
}

func (v *verifier) check(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if v.anchor != nil {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots: v.anchor(), Intermediates: inter, CurrentTime: v.o.cfg.Now(),
			// Envoy does not require an extended key usage upstream.
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return err
		}
		if len(v.crls) > 0 {
			if err := v.checkCRLs(chains[0]); err != nil {
				return err
			}
		}
	}
	if v.mesh {
		if len(leaf.URIs) != 1 {
			return fmt.Errorf("mesh peer presents %d URI SANs, want one SPIFFE ID", len(leaf.URIs))
		}
		id, err := spiffe.FromURL(leaf.URIs[0])
		if err != nil {
			return fmt.Errorf("mesh peer identity: %w", err)
		}
		if id.TrustDomain != v.o.cfg.TrustDomain {
			return fmt.Errorf("mesh peer %s is not in trust domain %q", id, v.o.cfg.TrustDomain)
		}
	}
	if len(v.v.SANs) > 0 && !matchSANs(leaf, v.v.SANs) {
		return fmt.Errorf("no subject alternative name of the server (%s) matches the %d allowed", sanList(leaf), len(v.v.SANs))
	}
	if len(v.v.CertHashes)+len(v.v.SPKIHashes) > 0 {
		h, s := sha256.Sum256(leaf.Raw), sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
		if !slices.ContainsFunc(v.v.CertHashes, func(b []byte) bool { return bytes.Equal(b, h[:]) }) &&
			!slices.ContainsFunc(v.v.SPKIHashes, func(b []byte) bool { return bytes.Equal(b, s[:]) }) {
			return errors.New("the server certificate matches no pinned hash")
		}
	}
	return nil
}

// matchSANs: any SAN of the leaf satisfies any matcher (Envoy's semantics).
func matchSANs(leaf *x509.Certificate, ms []upstream.SANMatcher) bool {
	for i := range ms {
		m := &ms[i]
		for _, u := range leaf.URIs {
			if m.Match(upstream.SANURI, u.String()) {
				return true
			}
		}
		for _, d := range leaf.DNSNames {
			if m.Match(upstream.SANDNS, d) {
				return true
			}
		}
		for _, e := range leaf.EmailAddresses {
			if m.Match(upstream.SANEmail, e) {
				return true
			}
		}
		for _, ip := range leaf.IPAddresses {
			if m.Match(upstream.SANIP, ip.String()) {
				return true
			}
		}
	}
	return false
}

func sanList(leaf *x509.Certificate) string {
	var out []string
	for _, u := range leaf.URIs {
		out = append(out, u.String())
	}
	out = append(out, leaf.DNSNames...)
	if len(out) == 0 {
		return "none"
	}
	if len(out) > 4 {
		out = append(out[:4], "...")
	}
	return fmt.Sprint(out)
}

// checkCRLs is Envoy's CRL check: every certificate of the chain but the
// root (the leaf only with only_verify_leaf_cert_crl) needs a current CRL
// signed by its issuer, and must not be listed in it.
func (v *verifier) checkCRLs(chain []*x509.Certificate) error {
	n := len(chain) - 1
	if v.v.CRLLeafOnly {
		n = min(n, 1)
	}
	now := v.o.cfg.Now()
	for i := 0; i < n; i++ {
		cert, issuer := chain[i], chain[i+1]
		var crl *x509.RevocationList
		for _, l := range v.crls {
			if bytes.Equal(l.RawIssuer, cert.RawIssuer) && l.CheckSignatureFrom(issuer) == nil {
				crl = l
				break
			}
		}
		if crl == nil {
			return fmt.Errorf("no CRL from %s (a CRL is configured, so every CA of the chain needs one)", issuer.Subject)
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return fmt.Errorf("the CRL from %s expired at %s", issuer.Subject, crl.NextUpdate)
		}
		for _, r := range crl.RevokedCertificateEntries {
			if r.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("certificate %s (serial %s) is revoked", cert.Subject, cert.SerialNumber)
			}
		}
	}
	return nil
}
