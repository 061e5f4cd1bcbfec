package model

import "strings"

// MeshConfig holds mesh-wide settings every component agrees on.
type MeshConfig struct {
	// TrustDomain is the SPIFFE trust domain ("cluster.local" by default, as Istio).
	TrustDomain string
	// DomainSuffix completes short hosts: "reviews" in namespace "default"
	// becomes "reviews.default.svc.<DomainSuffix>".
	DomainSuffix string
	// RootNamespace holds mesh-wide policy (PeerAuthentication, Sidecar,
	// DestinationRule defaults). Istio's default, "istio-system", is kept so
	// existing config works unchanged.
	RootNamespace string
}

// DefaultMeshConfig returns Istio-compatible defaults.
func DefaultMeshConfig() MeshConfig {
	return MeshConfig{TrustDomain: "cluster.local", DomainSuffix: "cluster.local", RootNamespace: "istio-system"}
}

// ResolveHost turns a host as written in config in namespace ns into a fully
// qualified name: "reviews" -> "reviews.ns.svc.<suffix>". Hosts containing a
// dot and wildcards ("*", "*.example.com") are returned as written.
func (m MeshConfig) ResolveHost(host, ns string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") {
		return host
	}
	if ns == "" {
		ns = "default"
	}
	return host + "." + ns + ".svc." + m.DomainSuffix
}

// HostMatches reports whether host (a concrete or wildcard host) is matched by
// pattern, where pattern may be "*" or "*.suffix" (Istio wildcard semantics:
// "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com").
func HostMatches(pattern, host string) bool {
	if pattern == "*" || pattern == host {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		suffix := pattern[1:] // ".example.com"
		if strings.HasPrefix(host, "*") {
			// wildcard host matched by a wider wildcard pattern
			return strings.HasSuffix(host[1:], suffix)
		}
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return false
}

// MostSpecific returns the pattern among patterns that best matches host:
// an exact match wins, then the longest wildcard. ok is false if none matches.
func MostSpecific(host string, patterns []string) (string, bool) {
	best, found := "", false
	for _, p := range patterns {
		if !HostMatches(p, host) {
			continue
		}
		if p == host {
			return p, true
		}
		if !found || len(p) > len(best) {
			best, found = p, true
		}
	}
	return best, found
}
