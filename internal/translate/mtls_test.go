package translate

import (
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	securityv1 "istio.io/api/security/v1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/weftmesh/weft/internal/config"
)

func paObj(ns, name string, age int, sel map[string]string, mode securityv1.PeerAuthentication_MutualTLS_Mode, ports map[uint32]securityv1.PeerAuthentication_MutualTLS_Mode) *config.Object {
	pa := &securityv1.PeerAuthentication{}
	if mode != -1 {
		pa.Mtls = &securityv1.PeerAuthentication_MutualTLS{Mode: mode}
	}
	if sel != nil {
		pa.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
	}
	for p, m := range ports {
		if pa.PortLevelMtls == nil {
			pa.PortLevelMtls = map[uint32]*securityv1.PeerAuthentication_MutualTLS{}
		}
		pa.PortLevelMtls[p] = &securityv1.PeerAuthentication_MutualTLS{Mode: m}
	}
	o := rtObj(config.KindPeerAuthentication, ns, name, age, pa)
	o.APIVersion = "security.istio.io/v1"
	return o
}

const (
	paUnset      = securityv1.PeerAuthentication_MutualTLS_UNSET
	paStrict     = securityv1.PeerAuthentication_MutualTLS_STRICT
	paPermissive = securityv1.PeerAuthentication_MutualTLS_PERMISSIVE
	paDisable    = securityv1.PeerAuthentication_MutualTLS_DISABLE
	paNoMTLS     = securityv1.PeerAuthentication_MutualTLS_Mode(-1) // spec.mtls absent
)

func TestEffectiveMTLSPrecedence(t *testing.T) {
	pp := map[string]string{"app": "productpage"}
	tests := []struct {
		name string
		pas  []*config.Object
		port uint32
		want MTLSMode
	}{
		{"no policy: PERMISSIVE", nil, 9080, MTLSPermissive},
		{"mesh-wide STRICT", []*config.Object{paObj("istio-system", "default", 0, nil, paStrict, nil)}, 9080, MTLSStrict},
		{"mesh-wide in another namespace is not mesh-wide",
			[]*config.Object{paObj("other", "default", 0, nil, paStrict, nil)}, 9080, MTLSPermissive},
		{"namespace beats mesh", []*config.Object{
			paObj("istio-system", "default", 0, nil, paStrict, nil),
			paObj("default", "ns", 0, nil, paDisable, nil)}, 9080, MTLSDisable},
		{"namespace UNSET inherits mesh", []*config.Object{
			paObj("istio-system", "default", 0, nil, paStrict, nil),
			paObj("default", "ns", 0, nil, paUnset, nil)}, 9080, MTLSStrict},
		{"workload beats namespace", []*config.Object{
			paObj("default", "ns", 0, nil, paStrict, nil),
			paObj("default", "pp", 0, pp, paPermissive, nil)}, 9080, MTLSPermissive},
		{"workload selector not matching is ignored", []*config.Object{
			paObj("default", "ns", 0, nil, paStrict, nil),
			paObj("default", "ratings", 0, map[string]string{"app": "ratings"}, paDisable, nil)}, 9080, MTLSStrict},
		{"workload selector in another namespace is ignored", []*config.Object{
			paObj("other", "pp", 0, pp, paStrict, nil)}, 9080, MTLSPermissive},
		{"workload selector in the root namespace is not mesh-wide", []*config.Object{
			paObj("istio-system", "pp", 0, pp, paStrict, nil)}, 9080, MTLSPermissive},
		{"port level beats workload", []*config.Object{
			paObj("default", "pp", 0, pp, paStrict, map[uint32]securityv1.PeerAuthentication_MutualTLS_Mode{9080: paDisable})}, 9080, MTLSDisable},
		{"port level for another port does not apply", []*config.Object{
			paObj("default", "pp", 0, pp, paStrict, map[uint32]securityv1.PeerAuthentication_MutualTLS_Mode{9999: paDisable})}, 9080, MTLSStrict},
		{"port level UNSET inherits workload", []*config.Object{
			paObj("default", "pp", 0, pp, paDisable, map[uint32]securityv1.PeerAuthentication_MutualTLS_Mode{9080: paUnset})}, 9080, MTLSDisable},
		{"workload without mtls inherits namespace", []*config.Object{
			paObj("default", "ns", 0, nil, paStrict, nil),
			paObj("default", "pp", 0, pp, paNoMTLS, map[uint32]securityv1.PeerAuthentication_MutualTLS_Mode{9999: paDisable})}, 9080, MTLSStrict},
		{"everything UNSET: PERMISSIVE", []*config.Object{
			paObj("istio-system", "default", 0, nil, paUnset, nil),
			paObj("default", "ns", 0, nil, paUnset, nil),
			paObj("default", "pp", 0, pp, paUnset, nil)}, 9080, MTLSPermissive},
		{"oldest of two namespace policies wins", []*config.Object{
			paObj("default", "a-newer", 10, nil, paDisable, nil),
			paObj("default", "z-older", 1, nil, paStrict, nil)}, 9080, MTLSStrict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := rtModel(t, append(bookinfoObjects(), tc.pas...)...)
			if got := EffectiveMTLS(snap, productpageProxy(), tc.port); got != tc.want {
				t.Fatalf("EffectiveMTLS = %s, want %s", got, tc.want)
			}
		})
	}
}

// simulateInbound picks the virtualInbound chain for a connection the way
// Envoy (and weft-proxy) do for the criteria the inbound listener uses:
// destination port, then transport protocol, then application protocols,
// most specific wins; no match falls to the default (passthrough) chain.
func simulateInbound(l *listenerv3.Listener, port uint32, transport string, alpn ...string) *listenerv3.FilterChain {
	var cand []*listenerv3.FilterChain
	best := -1
	for _, fc := range l.GetFilterChains() {
		s := 0
		if dp := fc.GetFilterChainMatch().GetDestinationPort(); dp != nil {
			if dp.GetValue() != port {
				continue
			}
			s = 1
		}
		if s > best {
			best, cand = s, nil
		}
		if s == best {
			cand = append(cand, fc)
		}
	}
	var next []*listenerv3.FilterChain
	best = -1
	for _, fc := range cand {
		s := 0
		if tp := fc.GetFilterChainMatch().GetTransportProtocol(); tp != "" {
			if tp != transport {
				continue
			}
			s = 1
		}
		if s > best {
			best, next = s, nil
		}
		if s == best {
			next = append(next, fc)
		}
	}
	var out *listenerv3.FilterChain
	best = -1
	for _, fc := range next {
		s := 0
		if aps := fc.GetFilterChainMatch().GetApplicationProtocols(); len(aps) > 0 {
			if !slices.ContainsFunc(aps, func(a string) bool { return slices.Contains(alpn, a) }) {
				continue
			}
			s = 1
		}
		if s > best {
			best, out = s, fc
		}
	}
	if out == nil {
		return l.GetDefaultFilterChain()
	}
	return out
}

func TestInboundMTLSChains(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mode        securityv1.PeerAuthentication_MutualTLS_Mode
		wantInspect bool
		// does the chosen chain terminate TLS for mesh TLS (ALPN istio),
		// plaintext, and the application's own TLS (no mesh ALPN)?
		tlsOnTLS, tlsOnPlain, tlsOnAppTLS bool
	}{
		{"STRICT", paStrict, false, true, true, true},
		{"PERMISSIVE", paPermissive, true, true, false, false},
		{"DISABLE", paDisable, false, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := rtModel(t, append(bookinfoObjects(), paObj("istio-system", "default", 0, nil, tc.mode, nil))...)
			listeners, _, _ := rtGenerate(t, snap, productpageProxy()) // ValidateAll inside
			vi := listeners[VirtualInboundListener].(*listenerv3.Listener)
			inspect := false
			for _, lf := range vi.GetListenerFilters() {
				inspect = inspect || lf.GetName() == "envoy.filters.listener.tls_inspector"
			}
			if inspect != tc.wantInspect {
				t.Errorf("tls_inspector present = %v, want %v", inspect, tc.wantInspect)
			}
			for _, conn := range []struct {
				transport string
				alpn      []string
				want      bool
			}{{"tls", []string{"istio-http/1.1", "istio"}, tc.tlsOnTLS}, {"raw_buffer", nil, tc.tlsOnPlain}, {"tls", []string{"h2", "http/1.1"}, tc.tlsOnAppTLS}} {
				transport, want := conn.transport, conn.want
				fc := simulateInbound(vi, 9080, transport, conn.alpn...)
				if got := chainTarget(fc); got != "inline:inbound|9080||" {
					t.Fatalf("%s on 9080 -> %s (never the passthrough)", transport, got)
				}
				if got := fc.GetTransportSocket() != nil; got != want {
					t.Errorf("%s on 9080: terminates TLS = %v, want %v", transport, got, want)
				}
				if fc.GetTransportSocket() == nil {
					continue
				}
				var dtc tlsv3.DownstreamTlsContext
				if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&dtc); err != nil {
					t.Fatal(err)
				}
				ctc := dtc.GetCommonTlsContext()
				cvc := ctc.GetCombinedValidationContext()
				if !dtc.GetRequireClientCertificate().GetValue() ||
					len(ctc.GetTlsCertificateSdsSecretConfigs()) != 1 || ctc.GetTlsCertificateSdsSecretConfigs()[0].GetName() != "default" ||
					cvc.GetValidationContextSdsSecretConfig().GetName() != "ROOTCA" ||
					cvc.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetPrefix() != "spiffe://cluster.local/" {
					t.Errorf("DownstreamTlsContext = %v", &dtc)
				}
				if got := ctc.GetAlpnProtocols(); len(got) != 4 || got[0] != "istio-peer-exchange" || got[3] != "http/1.1" {
					t.Errorf("ALPN = %v", got)
				}
			}
			if got := chainTarget(simulateInbound(vi, 12345, "raw_buffer")); got != InboundPassthroughCluster {
				t.Errorf("unknown port -> %s", got)
			}
		})
	}
}
