package config

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// unimplementedFields lists, per kind, the spec fields Weft accepts (so Istio
// YAML keeps working) but does not act on yet. Paths are relative to spec and
// use protojson (lowerCamelCase) names; "[]" stands for any list index or map
// key. Keep this honest: when a field becomes implemented, delete it here and
// docs and warnings follow.
var unimplementedFields = map[Kind][]string{
	KindServiceEntry: {
		"endpoints[].network",
	},
	KindWorkloadEntry: {
		"network",
	},
	KindVirtualService: {
		"http[].delegate",
		"tcp[].match[].sourceSubnet",
	},
	KindDestinationRule: {
		"trafficPolicy.tunnel",
		"trafficPolicy.proxyProtocol",
		"trafficPolicy.loadBalancer.zoneAwareLbSetting",
		"subsets[].trafficPolicy.tunnel",
		"subsets[].trafficPolicy.proxyProtocol",
	},
	KindGateway: {
		"servers[].tls.credentialNames",
		"servers[].tls.verifyCertificateSpki",
		"servers[].tls.verifyCertificateHash",
	},
	KindSidecar: {
		"egress[].captureMode",
		"egress[].port",
		"egress[].bind",
		"ingress",
		"outboundTrafficPolicy.mode",
		"inboundConnectionPool",
		"outboundTrafficPolicy.egressProxy",
	},
	KindAuthorizationPolicy: {
		"targetRef",
		"targetRefs",
	},
	KindRequestAuthentication: {
		"targetRef",
		"targetRefs",
	},
	KindTelemetry: {
		"targetRef",
		"targetRefs",
		"tracing",
		"metrics[].overrides[].tagOverrides",
		"accessLogging[].filter",
	},
}

func init() {
	// WasmPlugin objects are accepted and stored so weftctl and the store
	// round-trip them, but nothing enforces them yet: every field is listed,
	// derived from the schema so the list cannot drift.
	info, _ := LookupKind(KindWasmPlugin)
	fields := info.New().ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		unimplementedFields[KindWasmPlugin] = append(unimplementedFields[KindWasmPlugin], fields.Get(i).JSONName())
	}
}

// UnimplementedFields returns the spec field paths of kind that Weft accepts
// and ignores (sorted; relative to spec, "[]" for any index or key), for
// documentation.
func UnimplementedFields(kind Kind) []string {
	out := append([]string(nil), unimplementedFields[kind]...)
	sort.Strings(out)
	return out
}

// unimplemented warns for every set field of spec listed in the table.
func (v *validator) unimplemented(kind Kind, spec proto.Message) {
	table := unimplementedFields[kind]
	if len(table) == 0 {
		return
	}
	set := make(map[string]bool, len(table))
	prefixes := map[string]bool{}
	for _, p := range table {
		set[p] = true
		// Every ancestor of a listed path is worth descending into.
		for i := range p {
			if p[i] == '.' {
				prefixes[strings.TrimSuffix(p[:i], "[]")] = true
			}
		}
		prefixes[strings.TrimSuffix(p, "[]")] = true
	}
	v.walkUnimplemented(spec.ProtoReflect(), "", "", set, prefixes)
}

func (v *validator) walkUnimplemented(m protoreflect.Message, generic, concrete string, set, prefixes map[string]bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		g := joinPath(generic, fd.JSONName())
		c := joinPath(concrete, fd.JSONName())
		if set[g] {
			v.warnf("spec."+c, "field not implemented by Weft yet; it is accepted and ignored")
			return true
		}
		if !prefixes[g] || fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				v.walkUnimplemented(l.Get(i).Message(), g+"[]", idx(c, i), set, prefixes)
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				v.walkUnimplemented(mv.Message(), g+"[]", mapIdx(c, k.String()), set, prefixes)
				return true
			})
		default:
			v.walkUnimplemented(val.Message(), g, c, set, prefixes)
		}
		return true
	})
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
