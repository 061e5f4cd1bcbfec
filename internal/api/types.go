// Package api is weftd's config API, used by weftctl: the HTTP handlers that
// weftd mounts and the client weftctl calls. Objects travel as the same YAML
// users write, so what `weftctl get -o yaml` prints can be applied again.
package api

import (
	"time"

	"github.com/weftmesh/weft/internal/config"
)

// Paths served under the monitoring listener.
const (
	PathObjects     = "/api/v1/objects"
	PathApply       = "/api/v1/apply"
	PathDelete      = "/api/v1/delete"
	PathDiagnostics = "/api/v1/diagnostics"
	PathProxies     = "/api/v1/proxies"
	PathVersion     = "/api/v1/version"
	PathTokens      = "/api/v1/tokens"
	PathCABundle    = "/api/v1/ca/bundle"
	PathCARotate    = "/api/v1/ca/rotate"
	PathCARetire    = "/api/v1/ca/retire"
)

// Object is one config object as the API returns it.
type Object struct {
	Kind            config.Kind   `json:"kind"`
	Namespace       string        `json:"namespace,omitempty"`
	Name            string        `json:"name"`
	ResourceVersion string        `json:"resourceVersion,omitempty"`
	Created         time.Time     `json:"created"`
	Origin          config.Origin `json:"origin"`
	// YAML is the object as a Kubernetes-style document.
	YAML string `json:"yaml"`
}

// ObjectList is the answer of GET PathObjects.
type ObjectList struct {
	// ConfigVersion is the version of the config snapshot the list comes from.
	ConfigVersion uint64   `json:"configVersion"`
	Objects       []Object `json:"objects"`
}

// ApplyResult says what happened to one applied object.
type ApplyResult struct {
	Kind      config.Kind `json:"kind"`
	Namespace string      `json:"namespace,omitempty"`
	Name      string      `json:"name"`
	// Action is "created", "configured" or "unchanged" (with dryRun: what would happen).
	Action string `json:"action"`
}

// ApplyResponse is the answer of POST PathApply.
type ApplyResponse struct {
	Results     []ApplyResult      `json:"results,omitempty"`
	Diagnostics config.Diagnostics `json:"diagnostics,omitempty"`
	DryRun      bool               `json:"dryRun,omitempty"`
}

// DeleteRequest is the body of POST PathDelete.
type DeleteRequest struct {
	Keys []config.Key `json:"keys"`
}

// DeleteResponse lists what was deleted and what could not be.
type DeleteResponse struct {
	Deleted []config.Key `json:"deleted,omitempty"`
	Errors  []string     `json:"errors,omitempty"`
}

// DiagnosticList is the answer of GET PathDiagnostics: every current config problem.
type DiagnosticList struct {
	ConfigVersion uint64             `json:"configVersion"`
	Diagnostics   config.Diagnostics `json:"diagnostics"`
}

// Error is the JSON body of every non-2xx answer.
type Error struct {
	Message     string             `json:"message"`
	Diagnostics config.Diagnostics `json:"diagnostics,omitempty"`
}

// Version describes the server.
type Version struct {
	Version      string `json:"version"`
	TrustDomain  string `json:"trustDomain"`
	DomainSuffix string `json:"domainSuffix,omitempty"`
	// SecureAddr is where the CA and TLS xDS listen (empty: off); XDSAddr the plaintext xDS (empty: off).
	SecureAddr string `json:"secureAddr,omitempty"`
	XDSAddr    string `json:"xdsAddr,omitempty"`
}
