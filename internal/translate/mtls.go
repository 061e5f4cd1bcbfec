package translate

import (
	"cmp"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	securityv1 "istio.io/api/security/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// MTLSMode is the effective PeerAuthentication mode of one inbound port.
type MTLSMode int

// Effective modes (UNSET never survives resolution).
const (
	// MTLSPermissive accepts mesh mTLS and plaintext (Istio's default).
	MTLSPermissive MTLSMode = iota
	// MTLSStrict accepts only mesh mTLS.
	MTLSStrict
	// MTLSDisable accepts only plaintext.
	MTLSDisable
)

func (m MTLSMode) String() string {
	switch m {
	case MTLSStrict:
		return "STRICT"
	case MTLSDisable:
		return "DISABLE"
	}
	return "PERMISSIVE"
}

// TransportProtocolTLS is what Envoy's tls_inspector (and weft-proxy's first-byte
// peek) reports for a connection that starts with a TLS record.
const TransportProtocolTLS = "tls"

// inboundMTLSALPN is offered by inbound mTLS chains: Istio's mesh protocols
// first, then what an application-level client may negotiate.
var inboundMTLSALPN = []string{"istio-peer-exchange", "istio", "h2", "http/1.1"}

// permissiveMTLSALPN is what a mesh client (Envoy, weft-proxy) offers in its
// ClientHello. On a PERMISSIVE port only TLS with one of these is taken as
// mesh mTLS; TLS without them is the application's own TLS and goes to the
// plaintext chain untouched, as in Istio.
var permissiveMTLSALPN = []string{"istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"}

// EffectiveMTLS resolves the PeerAuthentication mode for workload port
// port of proxy p with Istio's precedence: the workload-selector policy in
// the proxy's namespace (its portLevelMtls entry for port, then its mtls)
// > the namespace-wide policy > the mesh-wide policy in the root namespace
// > PERMISSIVE. UNSET at a level inherits from the next one. When several
// policies compete at one level the oldest wins (then by name), as in Istio.
//
// port is the workload (target) port, which is what portLevelMtls keys on.
func EffectiveMTLS(m *model.Snapshot, p *model.Proxy, port uint32) MTLSMode {
	var workload, namespace, mesh *securityv1.PeerAuthentication
	pick := func(cur **securityv1.PeerAuthentication, o *config.Object) {
		if *cur == nil {
			*cur = o.Spec.(*securityv1.PeerAuthentication)
		}
	}
	root := m.Mesh.RootNamespace
	for _, o := range sortedPeerAuthentications(m) {
		pa, ok := o.Spec.(*securityv1.PeerAuthentication)
		if !ok {
			continue
		}
		selected := len(pa.GetSelector().GetMatchLabels()) > 0
		switch {
		case selected && o.Namespace == p.Namespace:
			if model.LabelsMatch(pa.GetSelector().GetMatchLabels(), p.Labels) {
				pick(&workload, o)
			}
		case !selected && o.Namespace == p.Namespace && o.Namespace != root:
			pick(&namespace, o)
		case !selected && o.Namespace == root:
			pick(&mesh, o)
		}
	}
	levels := []*securityv1.PeerAuthentication_MutualTLS{}
	if workload != nil {
		if pl, ok := workload.GetPortLevelMtls()[port]; ok {
			levels = append(levels, pl)
		}
		levels = append(levels, workload.GetMtls())
	}
	if namespace != nil {
		levels = append(levels, namespace.GetMtls())
	}
	if mesh != nil {
		levels = append(levels, mesh.GetMtls())
	}
	for _, l := range levels {
		switch l.GetMode() {
		case securityv1.PeerAuthentication_MutualTLS_STRICT:
			return MTLSStrict
		case securityv1.PeerAuthentication_MutualTLS_DISABLE:
			return MTLSDisable
		case securityv1.PeerAuthentication_MutualTLS_PERMISSIVE:
			return MTLSPermissive
		}
	}
	return MTLSPermissive
}

// sortedPeerAuthentications orders policies oldest first, then by
// namespace and name, so the winner of a level is deterministic.
func sortedPeerAuthentications(m *model.Snapshot) []*config.Object {
	pas := slices.Clone(m.PeerAuthentications())
	slices.SortStableFunc(pas, func(a, b *config.Object) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return pas
}

// inboundMTLSSocket terminates mesh mTLS on an inbound chain: the workload
// certificate (SDS "default"), peers verified against the mesh roots (SDS
// "ROOTCA") and required to present a SPIFFE ID of our trust domain.
func inboundMTLSSocket(trustDomain string) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  inboundMTLSALPN,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{cdsSDSSecret(cdsSDSCertSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_URI,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + trustDomain + "/"}},
						}},
					},
					ValidationContextSdsSecretConfig: cdsSDSSecret(cdsSDSRootSecret),
				},
			},
		},
	}
	a, err := anypb.New(ctx)
	if err != nil {
		panic("translate: marshal DownstreamTlsContext: " + err.Error()) // static message: cannot fail
	}
	return &corev3.TransportSocket{Name: cdsTLSSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

// inboundChains returns the filter chains of one inbound port for mode:
// STRICT one chain that always terminates TLS (a plaintext client fails the
// handshake; it must never fall through to the passthrough chain),
// PERMISSIVE a TLS chain for connections the tls_inspector marks "tls" with
// a mesh ALPN, a plaintext-filter chain for other TLS (the application's
// own) and the plaintext one; DISABLE the plaintext chain only. newFilters builds the
// network filters, the terminal one last (called once per chain: chains do not share messages).
func inboundChains(mode MTLSMode, name string, port uint32, trustDomain string, newFilters func() []*listenerv3.Filter) []*listenerv3.FilterChain {
	plain := &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
		Filters:          newFilters(),
	}
	switch mode {
	case MTLSStrict:
		plain.TransportSocket = inboundMTLSSocket(trustDomain)
		return []*listenerv3.FilterChain{plain}
	case MTLSDisable:
		return []*listenerv3.FilterChain{plain}
	}
	tls := &listenerv3.FilterChain{
		Name: name + "|mtls",
		FilterChainMatch: &listenerv3.FilterChainMatch{
			DestinationPort: wrapperspb.UInt32(port), TransportProtocol: TransportProtocolTLS, ApplicationProtocols: permissiveMTLSALPN,
		},
		Filters:         newFilters(),
		TransportSocket: inboundMTLSSocket(trustDomain),
	}
	// The application's own TLS: as specific as mesh TLS on transport
	// protocol, so it must have a chain of its own or it would fall to the
	// passthrough default when the mesh ALPN does not match.
	appTLS := &listenerv3.FilterChain{
		Name:             name + "|tls",
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: TransportProtocolTLS},
		Filters:          newFilters(),
	}
	return []*listenerv3.FilterChain{tls, appTLS, plain}
}

// meshHTTPALPN is what an Istio client announces in its ClientHello when it
// carries HTTP inside mesh mTLS (Istio's ALPN override); meshTCPALPN is what
// it announces otherwise. weft-proxy clients always send meshTCPALPN: on
// sniffed ports weft-proxy sniffs the decrypted stream and moves HTTP to the
// chain matching meshHTTPALPN (docs/proxy.md).
var (
	meshHTTPALPN = []string{"istio-http/1.0", "istio-http/1.1", "istio-h2"}
	meshTCPALPN  = []string{"istio-peer-exchange", "istio"}
)

// sniffedInboundChains are inboundChains for a port whose protocol is not
// declared (Istio's inbound protocol sniffing): each chain that would carry
// one terminal filter comes as an HTTP chain, matched by the application
// protocol the listener's inspectors report, and a TCP chain for the rest.
//
//   - PERMISSIVE: mesh mTLS announcing HTTP (HCM), other mesh mTLS (TCP),
//     the application's own TLS (TCP), plaintext HTTP (HCM), plaintext (TCP);
//   - STRICT: mesh mTLS announcing HTTP (HCM), then one chain that always
//     terminates TLS (TCP), so plaintext still fails the handshake;
//   - DISABLE: plaintext HTTP (HCM), plaintext (TCP).
func sniffedInboundChains(mode MTLSMode, name string, port uint32, trustDomain string, httpFilters, tcpFilters func() []*listenerv3.Filter) []*listenerv3.FilterChain {
	chain := func(suffix, transport string, alpn []string, filters []*listenerv3.Filter, mtls bool) *listenerv3.FilterChain {
		fc := &listenerv3.FilterChain{
			Name:             name + suffix,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transport, ApplicationProtocols: alpn},
			Filters:          filters,
		}
		if mtls {
			fc.TransportSocket = inboundMTLSSocket(trustDomain)
		}
		return fc
	}
	plainHTTP := func() *listenerv3.FilterChain {
		return chain("|http", "", plaintextHTTPProtocols, httpFilters(), false)
	}
	switch mode {
	case MTLSStrict:
		return []*listenerv3.FilterChain{
			chain("|mtls|http", "", meshHTTPALPN, httpFilters(), true),
			chain("", "", nil, tcpFilters(), true),
		}
	case MTLSDisable:
		return []*listenerv3.FilterChain{plainHTTP(), chain("", "", nil, tcpFilters(), false)}
	}
	return []*listenerv3.FilterChain{
		chain("|mtls|http", TransportProtocolTLS, meshHTTPALPN, httpFilters(), true),
		chain("|mtls", TransportProtocolTLS, meshTCPALPN, tcpFilters(), true),
		chain("|tls", TransportProtocolTLS, nil, tcpFilters(), false),
		plainHTTP(),
		chain("", "", nil, tcpFilters(), false),
	}
}
