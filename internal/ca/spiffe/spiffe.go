// Package spiffe parses and formats the SPIFFE workload IDs Weft issues,
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. It has no
// dependencies beyond the standard library so the proxy and the CA share it.
package spiffe

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ID is a workload identity in Istio's SPIFFE layout.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String returns spiffe://<td>/ns/<ns>/sa/<sa>.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the ID as a URL, the form x509 URI SANs take.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate reports whether every part is present and well-formed.
func (id ID) Validate() error {
	if err := validTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := validSegment("namespace", id.Namespace); err != nil {
		return err
	}
	return validSegment("service account", id.ServiceAccount)
}

// Parse parses s as spiffe://<td>/ns/<ns>/sa/<sa>.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("spiffe: parse %q: %w", s, err)
	}
	return FromURL(u)
}

// FromURL converts a URI SAN into an ID, rejecting anything that is not a
// SPIFFE ID in Istio's ns/sa layout.
func FromURL(u *url.URL) (ID, error) {
	if u == nil {
		return ID{}, errors.New("spiffe: nil URI")
	}
	if u.Scheme != "spiffe" {
		return ID{}, fmt.Errorf("spiffe: %q is not a SPIFFE ID (scheme %q)", u.String(), u.Scheme)
	}
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return ID{}, fmt.Errorf("spiffe: %q: SPIFFE IDs carry no userinfo, port, query or fragment", u.String())
	}
	parts := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("spiffe: %q: path must be /ns/<namespace>/sa/<service-account>", u.String())
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("spiffe: %q: %w", u.String(), err)
	}
	return id, nil
}

func validTrustDomain(td string) error {
	if td == "" {
		return errors.New("empty trust domain")
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: only lowercase letters, digits, '.', '-' and '_' are allowed", td)
		}
	}
	return nil
}

func validSegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%s %q is not allowed", what, s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%s %q: only letters, digits, '.', '-' and '_' are allowed", what, s)
		}
	}
	return nil
}
