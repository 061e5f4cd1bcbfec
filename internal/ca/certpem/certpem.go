// Package certpem reads and writes PEM certificate lists (chains, trust
// bundles). It depends on the standard library only, so the CA, the proxy's
// CA client and the host bundle share one parser.
package certpem

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrNone is returned when data holds no CERTIFICATE block.
var ErrNone = errors.New("no PEM certificate found")

// Parse parses every CERTIFICATE block in data, in order; other block types
// are skipped.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrNone
	}
	return out, nil
}

// Encode PEM-encodes certs in order.
func Encode(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
