// Package config owns Istio-API configuration objects inside Weft: the kinds
// Weft accepts, how they are decoded and validated, the sources they come from
// (a watched directory, the embedded store, later Kubernetes) and the single
// immutable Snapshot that merges every source.
package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// Key identifies one config object across all sources.
type Key struct {
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (k Key) String() string {
	if k.Namespace == "" {
		return fmt.Sprintf("%s %s", k.Kind, k.Name)
	}
	return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name)
}

// Less orders keys by kind, namespace, name.
func (k Key) Less(o Key) bool {
	if k.Kind != o.Kind {
		return k.Kind < o.Kind
	}
	if k.Namespace != o.Namespace {
		return k.Namespace < o.Namespace
	}
	return k.Name < o.Name
}

// Origin says where an object (or a diagnostic) came from, so errors can point
// a user at the exact file and document.
type Origin struct {
	// Source is the name of the Source that produced the object ("dir", "store", ...).
	Source string `json:"source,omitempty"`
	// File is the path of the file, when the source is file based.
	File string `json:"file,omitempty"`
	// Doc is the zero-based index of the YAML document inside File.
	Doc int `json:"doc,omitempty"`
	// Line is the one-based line where the document starts in File (0: unknown).
	Line int `json:"line,omitempty"`
}

func (o Origin) String() string {
	var b strings.Builder
	switch {
	case o.File != "" && o.Line > 0:
		fmt.Fprintf(&b, "%s:%d", o.File, o.Line)
	case o.File != "":
		b.WriteString(o.File)
	case o.Source != "":
		b.WriteString(o.Source)
	}
	if o.File != "" {
		fmt.Fprintf(&b, " (document %d)", o.Doc)
	}
	return b.String()
}

// Meta is the Kubernetes-style metadata Weft keeps for each object.
type Meta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp,omitempty"`
}

// Object is one validated Istio config object. Objects are immutable once
// they are handed to a Snapshot: consumers must not modify Spec.
type Object struct {
	Kind Kind
	// APIVersion is the group/version the user wrote (an accepted alias is kept
	// as written so `weftctl get -o yaml` round-trips it).
	APIVersion string
	Meta
	// Spec is the istio.io/api message for Kind, e.g. *networkingv1.VirtualService.
	Spec   proto.Message
	Origin Origin
}

// Key returns the identity of the object.
func (o *Object) Key() Key { return Key{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name} }

// Severity of a diagnostic.
type Severity int

const (
	// SeverityError means the object (or document) was rejected.
	SeverityError Severity = iota
	// SeverityWarning means the object is in effect but something about it
	// deserves attention (for example a field Weft does not implement yet).
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// MarshalText makes severities readable in JSON output.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "error":
		*s = SeverityError
	case "warning":
		*s = SeverityWarning
	default:
		return fmt.Errorf("config: unknown severity %q", b)
	}
	return nil
}

// Diagnostic is a precise validation or source problem: where, which object,
// which field and what is wrong.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	Origin   Origin   `json:"origin"`
	// Key is the object concerned; zero when the document could not be decoded far enough.
	Key Key `json:"key"`
	// Field is the path inside the object, e.g. "spec.http[0].route[1].weight".
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (d Diagnostic) Error() string {
	var parts []string
	if s := d.Origin.String(); s != "" {
		parts = append(parts, s)
	}
	if d.Key.Kind != "" || d.Key.Name != "" {
		parts = append(parts, d.Key.String())
	}
	if d.Field != "" {
		parts = append(parts, d.Field)
	}
	parts = append(parts, d.Message)
	return d.Severity.String() + ": " + strings.Join(parts, ": ")
}

// Diagnostics is a list of problems; it implements error when it holds at least one error.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error (not just a warning).
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Errors returns only the error-level diagnostics.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == SeverityError {
			out = append(out, d)
		}
	}
	return out
}

// Sort orders diagnostics by file, document, key and field, for stable output.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.Origin.File != b.Origin.File {
			return a.Origin.File < b.Origin.File
		}
		if a.Origin.Doc != b.Origin.Doc {
			return a.Origin.Doc < b.Origin.Doc
		}
		if a.Key != b.Key {
			return a.Key.Less(b.Key)
		}
		return a.Field < b.Field
	})
}
