package config

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	networkingv1 "istio.io/api/networking/v1"
	securityv1 "istio.io/api/security/v1"
	telemetryv1 "istio.io/api/telemetry/v1"
)

// Kind is an Istio config kind, e.g. "VirtualService".
type Kind string

// The kinds Weft accepts.
const (
	KindServiceEntry          Kind = "ServiceEntry"
	KindWorkloadEntry         Kind = "WorkloadEntry"
	KindWorkloadGroup         Kind = "WorkloadGroup"
	KindVirtualService        Kind = "VirtualService"
	KindDestinationRule       Kind = "DestinationRule"
	KindGateway               Kind = "Gateway"
	KindSidecar               Kind = "Sidecar"
	KindPeerAuthentication    Kind = "PeerAuthentication"
	KindAuthorizationPolicy   Kind = "AuthorizationPolicy"
	KindRequestAuthentication Kind = "RequestAuthentication"
	KindWasmPlugin            Kind = "WasmPlugin"
	KindTelemetry             Kind = "Telemetry"
)

// KindInfo describes one accepted kind.
type KindInfo struct {
	Kind  Kind
	Group string
	// Version is the canonical version; Aliases are other versions accepted on input.
	Version string
	Aliases []string
	// Plural is the lower-case plural used on the CLI and in API paths.
	Plural string
	// Short names accepted by `weftctl get` (e.g. "vs", "dr", "se").
	Short []string
	// New returns an empty spec message for this kind.
	New func() proto.Message
}

// APIVersion returns the canonical group/version.
func (k KindInfo) APIVersion() string { return k.Group + "/" + k.Version }

var kinds = []KindInfo{
	{Kind: KindServiceEntry, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "serviceentries", Short: []string{"se"}, New: func() proto.Message { return &networkingv1.ServiceEntry{} }},
	{Kind: KindWorkloadEntry, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "workloadentries", Short: []string{"we"}, New: func() proto.Message { return &networkingv1.WorkloadEntry{} }},
	{Kind: KindWorkloadGroup, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "workloadgroups", Short: []string{"wg"}, New: func() proto.Message { return &networkingv1.WorkloadGroup{} }},
	{Kind: KindVirtualService, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "virtualservices", Short: []string{"vs"}, New: func() proto.Message { return &networkingv1.VirtualService{} }},
	{Kind: KindDestinationRule, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "destinationrules", Short: []string{"dr"}, New: func() proto.Message { return &networkingv1.DestinationRule{} }},
	{Kind: KindGateway, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "gateways", Short: []string{"gw"}, New: func() proto.Message { return &networkingv1.Gateway{} }},
	{Kind: KindSidecar, Group: "networking.istio.io", Version: "v1", Aliases: []string{"v1beta1", "v1alpha3"}, Plural: "sidecars", New: func() proto.Message { return &networkingv1.Sidecar{} }},
	{Kind: KindPeerAuthentication, Group: "security.istio.io", Version: "v1", Aliases: []string{"v1beta1"}, Plural: "peerauthentications", Short: []string{"pa"}, New: func() proto.Message { return &securityv1.PeerAuthentication{} }},
	{Kind: KindAuthorizationPolicy, Group: "security.istio.io", Version: "v1", Aliases: []string{"v1beta1"}, Plural: "authorizationpolicies", Short: []string{"ap"}, New: func() proto.Message { return &securityv1.AuthorizationPolicy{} }},
	{Kind: KindRequestAuthentication, Group: "security.istio.io", Version: "v1", Aliases: []string{"v1beta1"}, Plural: "requestauthentications", Short: []string{"ra"}, New: func() proto.Message { return &securityv1.RequestAuthentication{} }},
	{Kind: KindWasmPlugin, Group: "extensions.istio.io", Version: "v1alpha1", Plural: "wasmplugins", New: func() proto.Message { return &extensionsv1alpha1.WasmPlugin{} }},
	{Kind: KindTelemetry, Group: "telemetry.istio.io", Version: "v1", Aliases: []string{"v1alpha1"}, Plural: "telemetries", New: func() proto.Message { return &telemetryv1.Telemetry{} }},
}

// Kinds returns every accepted kind, sorted by name.
func Kinds() []KindInfo {
	out := append([]KindInfo(nil), kinds...)
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// LookupKind returns the info of kind.
func LookupKind(kind Kind) (KindInfo, bool) {
	for _, k := range kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

// LookupAPIVersion returns the kind info for apiVersion and kind as written in
// a document, accepting version aliases.
func LookupAPIVersion(apiVersion string, kind string) (KindInfo, bool) {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return KindInfo{}, false
	}
	for _, k := range kinds {
		if string(k.Kind) != kind || k.Group != group {
			continue
		}
		if k.Version == version {
			return k, true
		}
		for _, a := range k.Aliases {
			if a == version {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

// ResolveKindName maps what a user types on the CLI ("vs", "virtualservice",
// "VirtualServices", "virtualservices.networking.istio.io") to a kind.
func ResolveKindName(name string) (KindInfo, bool) {
	n := strings.ToLower(name)
	if base, _, ok := strings.Cut(n, "."); ok {
		n = base
	}
	for _, k := range kinds {
		if n == strings.ToLower(string(k.Kind)) || n == k.Plural {
			return k, true
		}
		for _, s := range k.Short {
			if n == s {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}
