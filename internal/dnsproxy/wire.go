package dnsproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// The wire format is the protojson encoding of Istio's
// istio.networking.nds.v1.NameTable, so a table produced by istiod decodes
// here and weftd can later carry it unchanged inside a generic xDS resource:
//
//	{"table": {"reviews.default.svc.cluster.local": {
//	    "ips": ["10.96.0.12", "fd00::12"], "registry": "Kubernetes",
//	    "shortname": "reviews", "namespace": "default",
//	    "altHosts": ["reviews.default"]}}}
//
// The table carries canonical hosts only; each proxy expands short names
// itself with [BuildTable] because they depend on the proxy's namespace.
type wireTable struct {
	Table map[string]wireInfo `json:"table"`
}

type wireInfo struct {
	IPs []string `json:"ips"`
	// Registry ("Kubernetes", "External") is accepted for compatibility and
	// ignored: short names depend on the host's shape, not its registry.
	Registry string `json:"registry,omitempty"`
	// Shortname is accepted and checked against the host's first label.
	Shortname string `json:"shortname,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// AltHosts are extra names answered with the same addresses.
	AltHosts []string `json:"altHosts,omitempty"`
}

// maxTableBytes bounds a pushed table; a mesh with 100k hosts stays far
// below it.
const maxTableBytes = 64 << 20

// DecodeNameTable parses and validates a pushed name table. Any bad host or
// address makes the whole push fail with an error naming the host, so the
// xDS client can NACK it and keep serving the previous table. Alt hosts
// become entries of their own.
func DecodeNameTable(b []byte) (*NameTable, error) {
	if len(b) > maxTableBytes {
		return nil, fmt.Errorf("dnsproxy: name table: %d bytes exceeds limit of %d", len(b), maxTableBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w wireTable
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("dnsproxy: name table: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("dnsproxy: name table: trailing data after JSON object")
	}
	t := &NameTable{Hosts: make(map[string]HostEntry, len(w.Table))}
	names := make([]string, 0, len(w.Table))
	for name := range w.Table {
		names = append(names, name)
	}
	slices.Sort(names) // the first error reported is stable
	for _, raw := range names {
		info := w.Table[raw]
		name, e, err := decodeInfo(raw, info)
		if err != nil {
			return nil, fmt.Errorf("dnsproxy: name table: %w", err)
		}
		if err := add(t, name, e); err != nil {
			return nil, fmt.Errorf("dnsproxy: name table: %w", err)
		}
		for _, alt := range info.AltHosts {
			altName, err := checkHost(alt, false)
			if err != nil {
				return nil, fmt.Errorf("dnsproxy: name table: host %q: alt host: %w", raw, err)
			}
			ae := e
			ae.Wildcard = strings.HasPrefix(altName, "*.")
			if err := add(t, altName, ae); err != nil {
				return nil, fmt.Errorf("dnsproxy: name table: %w", err)
			}
		}
	}
	return t, nil
}

func decodeInfo(raw string, info wireInfo) (string, HostEntry, error) {
	name, err := checkHost(raw, false)
	if err != nil {
		return "", HostEntry{}, err
	}
	if len(info.IPs) == 0 {
		return "", HostEntry{}, fmt.Errorf("host %q: no ips", raw)
	}
	var e HostEntry
	for _, s := range info.IPs {
		a, err := netip.ParseAddr(s)
		if err == nil {
			a, err = checkAddr(a)
		}
		if err != nil {
			return "", HostEntry{}, fmt.Errorf("host %q: ip %q: %w", raw, s, err)
		}
		if a.Is4() {
			e.IPv4 = append(e.IPv4, a)
		} else {
			e.IPv6 = append(e.IPv6, a)
		}
	}
	if info.Shortname != "" {
		first, _, _ := strings.Cut(name, ".")
		if !strings.EqualFold(info.Shortname, first) {
			return "", HostEntry{}, fmt.Errorf("host %q: shortname %q is not its first label", raw, info.Shortname)
		}
	}
	if info.Namespace != "" {
		if _, err := checkHost(info.Namespace, false); err != nil || strings.Contains(info.Namespace, ".") {
			return "", HostEntry{}, fmt.Errorf("host %q: bad namespace %q", raw, info.Namespace)
		}
	}
	e.Namespace = strings.ToLower(info.Namespace)
	e.Wildcard = strings.HasPrefix(name, "*.")
	return name, normalizeEntry(e), nil
}

// add inserts an entry; the same name twice (two spellings of one host, or
// an alt host colliding with a host) is an error rather than a silent merge
// because it means the control plane disagrees with itself.
func add(t *NameTable, name string, e HostEntry) error {
	if _, ok := t.Hosts[name]; ok {
		return fmt.Errorf("host %q: duplicate name", name)
	}
	t.Hosts[name] = e
	return nil
}

// EncodeNameTable is the control plane's side of [DecodeNameTable]. Output is
// deterministic (sorted names and addresses) so unchanged tables hash the
// same and do not trigger pushes.
func EncodeNameTable(t *NameTable) ([]byte, error) {
	w := wireTable{Table: map[string]wireInfo{}}
	if t != nil {
		for _, h := range t.List() {
			name, err := checkHost(h.Name, h.Wildcard)
			if err != nil {
				return nil, fmt.Errorf("dnsproxy: encode name table: %w", err)
			}
			e := normalizeEntry(h.HostEntry)
			info := wireInfo{Namespace: e.Namespace}
			for _, a := range slices.Concat(e.IPv4, e.IPv6) {
				if _, err := checkAddr(a); err != nil {
					return nil, fmt.Errorf("dnsproxy: encode name table: host %q: ip %q: %w", h.Name, a, err)
				}
				info.IPs = append(info.IPs, a.String())
			}
			if len(info.IPs) == 0 {
				return nil, fmt.Errorf("dnsproxy: encode name table: host %q: no ips", h.Name)
			}
			if _, ok := w.Table[name]; ok {
				return nil, fmt.Errorf("dnsproxy: encode name table: host %q: duplicate name", h.Name)
			}
			w.Table[name] = info
		}
	}
	return json.Marshal(w)
}
