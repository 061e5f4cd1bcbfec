package rbac

import (
	"net/netip"
	"unsafe"

	"github.com/weftmesh/weft/internal/proxy/runtime/route"
)

type kind uint8

const (
	kindAny kind = iota
	kindAnd
	kindOr
	kindNot
	kindHeader
	kindURLPath
	kindDestinationIP
	kindDestinationPort
	kindDestinationPortRange
	kindDirectRemoteIP
	kindRemoteIP
	kindAuthenticated
	kindSNI
	kindMetadata
)

// node is one compiled permission or principal. A tagged struct rather
// than an interface per matcher: evaluation is a switch, children are
// stored inline, and nothing is allocated per request.
type node struct {
	kind     kind
	children []node
	str      *route.StringMatcher // url_path, principal_name (nil: any peer), SNI
	header   *headerMatch
	meta     *metaMatch
	prefix   netip.Prefix
	port     uint32 // destination_port, or the range start
	portEnd  uint32 // range end, exclusive
}

func anyMatch(ns []node, in *Input) bool {
	for i := range ns {
		if ns[i].match(in) {
			return true
		}
	}
	return false
}

func (n *node) match(in *Input) bool {
	switch n.kind {
	case kindAny:
		return true
	case kindAnd:
		for i := range n.children {
			if !n.children[i].match(in) {
				return false
			}
		}
		return true
	case kindOr:
		return anyMatch(n.children, in)
	case kindNot:
		return !n.children[0].match(in)
	case kindHeader:
		return n.header.match(in.HTTP)
	case kindURLPath:
		return in.HTTP != nil && n.str.Match(in.HTTP.Path())
	case kindDestinationIP:
		return contains(n.prefix, in.Destination.Addr())
	case kindDestinationPort:
		return in.Destination.IsValid() && uint32(in.Destination.Port()) == n.port
	case kindDestinationPortRange:
		p := uint32(in.Destination.Port())
		return in.Destination.IsValid() && p >= n.port && p < n.portEnd
	case kindDirectRemoteIP:
		return contains(n.prefix, in.Source)
	case kindRemoteIP:
		return contains(n.prefix, in.Remote)
	case kindAuthenticated:
		// Envoy: a principal_name-less authenticated matches any verified
		// peer certificate; weft-proxy's peers always carry a SPIFFE ID.
		if in.Principal == "" {
			return false
		}
		return n.str == nil || n.str.Match(view(in.Principal))
	case kindSNI:
		return n.str.Match(view(in.SNI))
	case kindMetadata:
		return n.meta.match(in.JWT)
	}
	return false
}

func contains(p netip.Prefix, a netip.Addr) bool {
	return a.IsValid() && p.Contains(a.Unmap())
}

// view returns s's bytes without copying; matchers only read them.
func view(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

func (h *headerMatch) match(req HTTPRequest) bool {
	if req == nil {
		return false // no request: no header can match (network filters refuse header matchers)
	}
	var v []byte
	ok := true
	switch h.pseudo {
	case pseudoMethod:
		v = req.Method()
	case pseudoAuthority:
		v = req.Host()
	case pseudoPath:
		v = req.Target()
	default:
		v, ok = req.Header(h.name)
	}
	var r bool
	switch {
	case h.present == 1:
		r = ok
	case h.present == -1:
		r = !ok
	case !ok && !h.missing:
		r = false
	default:
		r = h.str.Match(v)
	}
	return r != h.invert
}

func (m *metaMatch) match(md map[string]any) bool {
	var v any = md
	for _, k := range m.path {
		obj, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = obj[k]
	}
	return m.value.match(v) != m.invert
}

// match follows Envoy's ValueMatcher: string and bool matchers need a value
// of that type; present_match: true matches a primitive (string, number,
// bool) as documented, present_match: false matches nothing; list_match
// one_of needs a list with a matching element.
func (vm *valueMatch) match(v any) bool {
	switch vm.kind {
	case vString:
		s, ok := v.(string)
		return ok && vm.str.Match(view(s))
	case vPresent:
		switch v.(type) {
		case string, float64, bool, int64, int:
			return vm.present
		}
		return false
	case vBool:
		b, ok := v.(bool)
		return ok && b == vm.boolean
	case vList:
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range l {
			if vm.elems[0].match(e) {
				return true
			}
		}
		return false
	case vOr:
		for i := range vm.elems {
			if vm.elems[i].match(v) {
				return true
			}
		}
	}
	return false
}
