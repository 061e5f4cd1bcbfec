package translate

import (
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/model"
)

// Names shared with the SDS generator, the listener generator and the
// proxy's certificate manager. The shared ones carry a cds prefix and stay
// unexported until they move to names.go, so that generators written in
// parallel in this package cannot declare the same identifier twice.
const (
	// cdsTLSSocketName is Envoy's (and grpc-go's) TLS transport socket.
	cdsTLSSocketName = "envoy.transport_sockets.tls"
	// cdsRawBufferSocketName is plaintext.
	cdsRawBufferSocketName = "envoy.transport_sockets.raw_buffer"
	// cdsSDSCertSecret is the workload certificate secret (Istio's "default").
	cdsSDSCertSecret = "default"
	// cdsSDSRootSecret is the mesh root CA bundle secret (Istio's "ROOTCA").
	cdsSDSRootSecret = "ROOTCA"
	// cdsSDSCASuffix is appended to a credentialName to name its CA bundle (Istio's "-cacert").
	cdsSDSCASuffix = "-cacert"
	// cdsGRPCCertProvider is the certificate provider instance proxyless
	// gRPC bootstraps define (Istio's grpc bootstrap names it "default").
	cdsGRPCCertProvider = "default"

	// cdsTLSModeLabel marks a workload whose proxy terminates Istio mTLS.
	cdsTLSModeLabel = "security.istio.io/tlsMode"
	// TransportSocketMatchKey is the endpoint filter metadata Envoy matches
	// transport_socket_matches against.
	TransportSocketMatchKey = "envoy.transport_socket_match"
	// AutoMTLSMatchName names the auto-mTLS transport socket match, as Istio.
	AutoMTLSMatchName = "tlsMode-istio"
	// SystemCABundle verifies SIMPLE/MUTUAL upstreams when the
	// DestinationRule names no CA (Debian/Alpine path, as in Istio's proxy image).
	SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"
)

// cdsIstioALPN is offered on ISTIO_MUTUAL upstream connections.
var cdsIstioALPN = []string{"istio-peer-exchange", "istio"}

// IstioSNI is the SNI Istio sends on mTLS connections to a cluster:
// "outbound_.PORT_.SUBSET_.HOST". Servers (and east-west gateways) route on it.
func IstioSNI(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}

// cdsSpiffeID returns "spiffe://TRUSTDOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT".
func cdsSpiffeID(trustDomain, ns, sa string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, ns, sa)
}

// applyTLS sets the upstream transport: the DestinationRule's tls settings,
// or, when they are absent and the service is inside the mesh, auto-mTLS
// (ISTIO_MUTUAL towards endpoints labelled tlsMode=istio, plaintext to the rest).
func (p *policyApplier) applyTLS(t *networkingv1.ClientTLSSettings) {
	if t == nil {
		p.applyAutoMTLS()
		return
	}
	var ctx *tlsv3.UpstreamTlsContext
	switch t.GetMode() {
	case networkingv1.ClientTLSSettings_DISABLE:
		return
	case networkingv1.ClientTLSSettings_ISTIO_MUTUAL:
		sans := t.GetSubjectAltNames()
		if len(sans) == 0 {
			sans = p.meshSANs()
		}
		ctx = p.istioMutual(sans)
		if t.GetSni() != "" {
			ctx.Sni = t.GetSni()
		}
	case networkingv1.ClientTLSSettings_SIMPLE, networkingv1.ClientTLSSettings_MUTUAL:
		if p.grpc {
			// grpc-go takes certificates only from certificate provider
			// instances: files would be NACKed, and plaintext would be a
			// silent downgrade, so the cluster is left out and reported.
			p.w.add("%s: tls mode %s is not supported for grpc clients; cluster left out", p.where(), t.GetMode())
			p.drop = true
			return
		}
		ctx = p.originTLS(t)
	}
	if ctx == nil {
		return
	}
	p.c.TransportSocket = p.tlsSocket(ctx)
}

func (p *policyApplier) tlsSocket(ctx *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
	a, err := anypb.New(ctx)
	if err != nil {
		p.w.add("%s: marshal UpstreamTlsContext: %v", p.where(), err)
		return nil
	}
	return &corev3.TransportSocket{Name: cdsTLSSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

// istioMutual builds the mesh mTLS context: workload certificate and root CA
// over SDS for Envoy-style proxies, certificate provider instances for grpc.
func (p *policyApplier) istioMutual(sans []string) *tlsv3.UpstreamTlsContext {
	sni := IstioSNI(p.spec.port.Number, p.spec.subsetName(), p.spec.svc.Hostname)
	if p.grpc {
		return &tlsv3.UpstreamTlsContext{
			Sni: sni,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
					InstanceName: cdsGRPCCertProvider, CertificateName: cdsSDSCertSecret,
				},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
						InstanceName: cdsGRPCCertProvider, CertificateName: cdsSDSRootSecret,
					},
					MatchSubjectAltNames: cdsExactSANs(sans),
				}},
			},
		}
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  cdsIstioALPN,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{cdsSDSSecret(cdsSDSCertSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchSubjectAltNames: cdsExactSANs(sans)},
					ValidationContextSdsSecretConfig: cdsSDSSecret(cdsSDSRootSecret),
				},
			},
		},
	}
}

func cdsSDSSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: cdsADS()}
}

// originTLS builds SIMPLE/MUTUAL TLS to a server outside the mesh's identity
// system: certificates from files, or from SDS when credentialName is set
// (cert under credentialName, CA under credentialName+"-cacert", as Istio).
func (p *policyApplier) originTLS(t *networkingv1.ClientTLSSettings) *tlsv3.UpstreamTlsContext {
	common := &tlsv3.CommonTlsContext{}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: t.GetSni()}
	if ctx.Sni == "" && !cdsIsWildcardHost(p.spec.svc.Hostname) {
		// Without an explicit sni, present the service host name: TLS
		// origination to external hosts almost always needs it.
		ctx.Sni = p.spec.svc.Hostname
	}
	mutual := t.GetMode() == networkingv1.ClientTLSSettings_MUTUAL
	sans := t.GetSubjectAltNames()
	if len(sans) == 0 {
		sans = p.spec.svc.SubjectAltNames
	}
	skipVerify := t.GetInsecureSkipVerify().GetValue()

	var vc *tlsv3.CertificateValidationContext
	if !skipVerify {
		vc = &tlsv3.CertificateValidationContext{MatchSubjectAltNames: cdsExactSANs(sans)}
		if t.GetCaCertificates() != "" {
			vc.TrustedCa = cdsFile(t.GetCaCertificates())
		}
		if t.GetCaCrl() != "" {
			vc.Crl = cdsFile(t.GetCaCrl())
		}
	}
	if name := t.GetCredentialName(); name != "" {
		if mutual {
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{cdsSDSSecret(name)}
		}
		if vc != nil {
			common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         vc,
					ValidationContextSdsSecretConfig: cdsSDSSecret(name + cdsSDSCASuffix),
				},
			}
		}
		if t.GetClientCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" {
			p.w.add("%s: tls.credentialName overrides clientCertificate/privateKey/caCertificates", p.where())
		}
		return ctx
	}
	if mutual {
		if t.GetClientCertificate() == "" || t.GetPrivateKey() == "" {
			p.w.add("%s: tls mode MUTUAL without clientCertificate and privateKey; no client certificate sent", p.where())
		} else {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: cdsFile(t.GetClientCertificate()),
				PrivateKey:       cdsFile(t.GetPrivateKey()),
			}}
		}
	}
	if vc != nil {
		if vc.TrustedCa == nil {
			// Envoy verifies nothing without trusted_ca (and does not
			// implement system_root_certs), so point it at the OS bundle,
			// as Istio does with VERIFY_CERTIFICATE_AT_CLIENT.
			vc.TrustedCa = cdsFile(SystemCABundle)
		}
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	return ctx
}

func cdsFile(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// applyAutoMTLS is Istio's auto mTLS: a mesh-internal service without DR tls
// gets two transport socket matches, mTLS for endpoints carrying
// {"tlsMode":"istio"} metadata (see endpointTLSMode) and plaintext for the
// rest. grpc-go rejects transport_socket_matches, so grpc clusters stay
// plaintext unless the DestinationRule asks for ISTIO_MUTUAL.
func (p *policyApplier) applyAutoMTLS() {
	if p.grpc || p.spec.svc.MeshExternal || p.spec.typ == clusterv3.Cluster_ORIGINAL_DST {
		return
	}
	ts := p.tlsSocket(p.istioMutual(p.meshSANs()))
	if ts == nil {
		return
	}
	raw, err := anypb.New(&rawbufferv3.RawBuffer{})
	if err != nil {
		return
	}
	match, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	p.c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: AutoMTLSMatchName, Match: match, TransportSocket: ts},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{
			Name: cdsRawBufferSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: raw},
		}},
	}
}

// meshSANs are the identities an mTLS peer of the cluster may present: the
// ServiceEntry's subjectAltNames, else the SPIFFE IDs of the service
// accounts of the endpoints the cluster selects (endpoints without a
// service account contribute none).
func (p *policyApplier) meshSANs() []string {
	if len(p.spec.svc.SubjectAltNames) > 0 {
		return p.spec.svc.SubjectAltNames
	}
	seen := map[string]bool{}
	var out []string
	td := p.in.Model.Mesh.TrustDomain
	for _, e := range p.spec.endpoints(p.in.Model) {
		if e.ServiceAccount == "" {
			continue
		}
		ns := e.Workload.Namespace
		if ns == "" {
			ns = p.spec.svc.Namespace
		}
		id := cdsSpiffeID(td, ns, e.ServiceAccount)
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func cdsExactSANs(sans []string) []*matcherv3.StringMatcher {
	if len(sans) == 0 {
		return nil
	}
	out := make([]*matcherv3.StringMatcher, 0, len(sans))
	for _, s := range sans {
		out = append(out, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}})
	}
	return out
}

// endpointTLSMode reports whether an endpoint terminates Istio mTLS. The
// rule: an explicit security.istio.io/tlsMode label decides ("istio" or
// anything else, e.g. "disabled"); without the label, endpoints from a
// WorkloadEntry are mesh workloads (Weft proxies always run next to them)
// and plain ServiceEntry addresses are not.
func endpointTLSMode(e *model.Endpoint) bool {
	if v, ok := e.Labels[cdsTLSModeLabel]; ok {
		return v == "istio"
	}
	return e.Workload.Name != ""
}

func cdsIsWildcardHost(host string) bool { return len(host) > 0 && host[0] == '*' }
