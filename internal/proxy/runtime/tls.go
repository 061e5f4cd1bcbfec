package runtime

import (
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// SDS secret names weft-proxy serves from its own certificate manager
// (Istio's names): the workload certificate and the mesh trust bundle.
const (
	SecretWorkloadCert = "default"
	SecretRootCA       = "ROOTCA"
)

// DownstreamTLS is the compiled DownstreamTlsContext of an inbound filter
// chain. Certificates are not in it: the only supported secrets are the
// workload certificate and the mesh roots, which the listener takes from the
// proxy's certificate manager at handshake time.
type DownstreamTLS struct {
	// RequireClientCertificate: the peer must present a certificate that
	// verifies against the mesh roots.
	RequireClientCertificate bool
	// ALPN offered, in order of preference.
	ALPN []string
	// URISANPrefixes, when set, are what a peer's URI SAN must start with
	// (match_typed_subject_alt_names of type URI with a prefix matcher).
	URISANPrefixes []string
}

// buildDownstreamTLS decodes and checks a listener chain's TLS transport
// socket. The returned field is relative to the transport_socket.
func buildDownstreamTLS(ctx *tlsv3.DownstreamTlsContext) (*DownstreamTLS, string, error) {
	const cc = ".typed_config.common_tls_context"
	out := &DownstreamTLS{RequireClientCertificate: ctx.GetRequireClientCertificate().GetValue()}
	c := ctx.GetCommonTlsContext()
	if c == nil {
		return nil, ".typed_config.common_tls_context", errf("required")
	}
	out.ALPN = c.GetAlpnProtocols()
	if len(c.GetTlsCertificates()) > 0 {
		return nil, cc + ".tls_certificates", errf("inline certificates are not supported; use SDS secret %q", SecretWorkloadCert)
	}
	if c.GetTlsCertificateProviderInstance() != nil {
		return nil, cc + ".tls_certificate_provider_instance", errf("not supported; use SDS secret %q", SecretWorkloadCert)
	}
	sds := c.GetTlsCertificateSdsSecretConfigs()
	if len(sds) != 1 {
		return nil, cc + ".tls_certificate_sds_secret_configs", errf("exactly one SDS secret %q is required, got %d", SecretWorkloadCert, len(sds))
	}
	if n := sds[0].GetName(); n != SecretWorkloadCert {
		return nil, cc + ".tls_certificate_sds_secret_configs[0].name", errf("SDS secret %q is not supported (only %q and %q)", n, SecretWorkloadCert, SecretRootCA)
	}
	if src := sds[0].GetSdsConfig(); src != nil && src.GetAds() == nil && src.GetConfigSourceSpecifier() != nil {
		return nil, cc + ".tls_certificate_sds_secret_configs[0].sds_config", errf("only ADS config sources are supported")
	}
	var vc *tlsv3.CertificateValidationContext
	switch v := c.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if n := v.ValidationContextSdsSecretConfig.GetName(); n != SecretRootCA {
			return nil, cc + ".validation_context_sds_secret_config.name", errf("SDS secret %q is not supported (only %q and %q)", n, SecretWorkloadCert, SecretRootCA)
		}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		if n := v.CombinedValidationContext.GetValidationContextSdsSecretConfig().GetName(); n != SecretRootCA {
			return nil, cc + ".combined_validation_context.validation_context_sds_secret_config.name", errf("SDS secret %q is not supported (only %q and %q)", n, SecretWorkloadCert, SecretRootCA)
		}
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
	default:
		return nil, cc + ".validation_context_type", errf("%T is not supported; use SDS secret %q", v, SecretRootCA)
	}
	if out.RequireClientCertificate && c.GetValidationContextType() == nil {
		return nil, cc + ".validation_context_type", errf("require_client_certificate needs the %q validation context", SecretRootCA)
	}
	if vc != nil {
		const f = cc + ".combined_validation_context.default_validation_context"
		if vc.GetTrustedCa() != nil || len(vc.GetVerifyCertificateHash()) > 0 || len(vc.GetVerifyCertificateSpki()) > 0 || len(vc.GetMatchSubjectAltNames()) > 0 {
			return nil, f, errf("only match_typed_subject_alt_names (URI prefix) is supported")
		}
		for i, m := range vc.GetMatchTypedSubjectAltNames() {
			p := m.GetMatcher().GetPrefix()
			if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI || p == "" || !strings.HasPrefix(p, "spiffe://") {
				return nil, f + ".match_typed_subject_alt_names[" + itoa(i) + "]", errf("only URI SAN prefix matchers on spiffe:// IDs are supported")
			}
			out.URISANPrefixes = append(out.URISANPrefixes, p)
		}
	}
	if ctx.GetRequireSni().GetValue() {
		return nil, ".typed_config.require_sni", errf("not supported")
	}
	if ctx.GetSessionTicketKeys() != nil || ctx.GetSessionTicketKeysSdsSecretConfig() != nil {
		return nil, ".typed_config.session_ticket_keys", errf("not supported")
	}
	return out, "", nil
}
