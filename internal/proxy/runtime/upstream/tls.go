package upstream

// Upstream TLS: a cluster's transport_socket and transport_socket_matches
// compiled into immutable descriptions that package tlsorigin turns into
// *tls.Config. Parsing is pure (no file or network I/O): files named by the
// context are read when the description is first used.

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// SDS secret names the proxy's certificate manager serves (Istio's names;
// runtime.SecretWorkloadCert and runtime.SecretRootCA are the same strings
// for listeners).
const (
	SecretWorkloadCert = "default"
	SecretRootCA       = "ROOTCA"
)

// SystemCABundle is the OS bundle path weftd points trusted_ca at when a
// DestinationRule asks for server verification without naming a CA. It
// stands for "the system roots", so weft-proxy uses Go's system pool for it
// (the same file on Debian, the right one elsewhere).
const SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// TransportSocketMatchKey is the endpoint (and locality) filter-metadata
// namespace transport_socket_matches are matched against.
const TransportSocketMatchKey = "envoy.transport_socket_match"

// UpstreamTLS is one compiled UpstreamTlsContext: what weft-proxy needs to
// originate TLS to an endpoint. It is immutable and shared by every endpoint
// whose transport socket selected it.
type UpstreamTLS struct {
	// Key identifies the content: equal contexts have equal keys, across
	// clusters and snapshots, so pooled connections and tls.Configs built for
	// one are reused. It is what the router puts in h1.Decision.UpstreamTLS.
	Key string
	// Match names the transport_socket_matches entry that carries this
	// context ("" for the cluster's transport_socket). Istio's auto mTLS is
	// such a match; see Opportunistic.
	Match string
	// SNI is sent in the ClientHello (none when empty, as in Envoy).
	SNI string
	// ALPN is offered in this order.
	ALPN []string
	// MinVersion and MaxVersion are crypto/tls versions (Envoy's defaults
	// for clients: TLS 1.2 to 1.2; tls_params widens them).
	MinVersion, MaxVersion uint16
	// Cert is the client certificate to present.
	Cert CertSource
	// Validation says how the server's certificate is checked.
	Validation Validation
	// MaxSessionKeys bounds cached sessions per endpoint for resumption
	// (Envoy's default 1; 0 disables resumption).
	MaxSessionKeys uint32
	// AllowRenegotiation accepts server-initiated renegotiation (TLS 1.2).
	AllowRenegotiation bool
	// Unavailable, when set, says why no connection can use this context
	// (an SDS secret weft-proxy has no source for, e.g. a DestinationRule
	// credentialName); requests to its endpoints are answered 503.
	Unavailable string
}

// Opportunistic reports a mesh mTLS context chosen by a transport socket
// match (Istio's auto mTLS: "mTLS when the endpoint can, else plaintext"): a
// proxy without a workload identity cannot present a certificate and speaks
// plaintext instead, which a PERMISSIVE peer accepts and a STRICT one
// refuses — as a client without a sidecar would.
func (t *UpstreamTLS) Opportunistic() bool {
	return t.Match != "" && t.Cert.Kind == CertWorkload
}

// CertKind is where the client certificate comes from.
type CertKind uint8

// Client certificate sources.
const (
	// CertNone presents no certificate (one-way TLS).
	CertNone CertKind = iota
	// CertWorkload is the proxy's workload certificate (SDS "default"),
	// read per handshake so rotation applies to the next connection.
	CertWorkload
	// CertFiles is a certificate chain and key from DataSources.
	CertFiles
)

// CertSource is the client certificate of an UpstreamTLS.
type CertSource struct {
	Kind       CertKind
	Chain, Key DataSource // CertFiles
}

// DataSource is a file path or inline bytes (Envoy's DataSource).
type DataSource struct {
	Path   string
	Inline []byte
}

// IsZero reports an empty source.
func (d DataSource) IsZero() bool { return d.Path == "" && d.Inline == nil }

// String names the source in errors (never the inline content).
func (d DataSource) String() string {
	if d.Path != "" {
		return d.Path
	}
	return "<inline>"
}

// TrustKind is what the server's chain is verified against.
type TrustKind uint8

// Trust sources.
const (
	// TrustNone accepts any server certificate: no validation context
	// (Envoy verifies nothing then; weftd sends none for
	// insecureSkipVerify) or trust_chain_verification ACCEPT_UNTRUSTED.
	TrustNone TrustKind = iota
	// TrustMesh is the mesh trust bundle (SDS "ROOTCA"), read per
	// handshake so a root rotation applies at once. The server must also
	// present exactly one SPIFFE ID in the proxy's trust domain.
	TrustMesh
	// TrustCA is trusted_ca from a DataSource.
	TrustCA
	// TrustSystem is the operating system's roots (system_root_certs, or
	// trusted_ca naming SystemCABundle).
	TrustSystem
)

// Validation is a compiled CertificateValidationContext.
type Validation struct {
	Trust TrustKind
	CA    DataSource // TrustCA
	// CRL, when set, revokes certificates of the server's chain; with
	// CRLLeafOnly only the leaf is checked (only_verify_leaf_cert_crl).
	CRL         DataSource
	CRLLeafOnly bool
	// SANs: when any is given, a SAN of the leaf must match one of them
	// (match_typed_subject_alt_names and the legacy match_subject_alt_names).
	SANs []SANMatcher
	// CertHashes (SHA-256 of the leaf's DER) and SPKIHashes (SHA-256 of its
	// SubjectPublicKeyInfo): when any is given, the leaf must match one.
	CertHashes [][]byte
	SPKIHashes [][]byte
}

// SANType is the kind of subject alternative name a matcher applies to.
type SANType uint8

// SAN types (SANAny is the legacy match_subject_alt_names: every type).
const (
	SANAny SANType = iota
	SANEmail
	SANDNS
	SANURI
	SANIP
)

func (t SANType) String() string {
	return [...]string{"any", "email", "dns", "uri", "ip"}[t]
}

// SANMatcher is one compiled subject alternative name matcher.
type SANMatcher struct {
	Type SANType
	m    stringMatcher
}

// Match reports whether a SAN of type t with value v satisfies m. For DNS
// SANs an exact matcher also accepts a wildcard certificate name
// ("*.example.com" matches "api.example.com", one label), as Envoy does.
func (m *SANMatcher) Match(t SANType, v string) bool {
	if m.Type != SANAny && m.Type != t {
		return false
	}
	if t == SANDNS && m.m.kind == strExact && strings.HasPrefix(v, "*.") {
		want := m.m.value
		if i := strings.IndexByte(want, '.'); i > 0 && m.m.fold(want[i:], v[1:]) {
			return true
		}
	}
	return m.m.match(v)
}

// String describes the matcher for error messages.
func (m *SANMatcher) String() string { return m.Type.String() + " " + m.m.String() }

// SANMatcherFor compiles an exact matcher on URI SANs (tests, callers that
// build descriptions by hand).
func SANMatcherFor(t SANType, exact string) SANMatcher {
	return SANMatcher{Type: t, m: stringMatcher{kind: strExact, value: exact}}
}

// upstreamTLS compiles a transport socket; nil, nil means plaintext
// (raw_buffer). Errors name fields relative to the transport socket. match
// is the transport_socket_matches name ("" for transport_socket).
func upstreamTLS(ts *corev3.TransportSocket, match string) (*UpstreamTLS, error) {
	switch ts.GetName() {
	case "envoy.transport_sockets.raw_buffer", "raw_buffer":
		return nil, nil
	case "envoy.transport_sockets.tls", "tls":
	default:
		return nil, fieldErr("name", "transport socket %q is not supported", ts.GetName())
	}
	var ctx tlsv3.UpstreamTlsContext
	if a := ts.GetTypedConfig(); a != nil {
		if err := a.UnmarshalTo(&ctx); err != nil {
			return nil, fieldErr("typed_config", "decode UpstreamTlsContext: %v", err)
		}
	}
	out, err := compileUpstreamTLS(&ctx)
	if err != nil {
		return nil, prefixed("typed_config.", err)
	}
	out.Match = match
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&ctx)
	if err != nil {
		return nil, fieldErr("typed_config", "marshal: %v", err)
	}
	h := sha256.New()
	h.Write(b)
	if out.Opportunistic() {
		h.Write([]byte{1}) // the plaintext fallback makes it a different transport
	}
	out.Key = "tls:" + hex.EncodeToString(h.Sum(nil)[:12])
	return out, nil
}

// compileUpstreamTLS checks every field of ctx: supported ones are compiled,
// anything else is refused with the field's path.
func compileUpstreamTLS(ctx *tlsv3.UpstreamTlsContext) (*UpstreamTLS, error) {
	e := fieldErr
	out := &UpstreamTLS{SNI: ctx.GetSni(), MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, MaxSessionKeys: 1,
		AllowRenegotiation: ctx.GetAllowRenegotiation()}
	if ctx.GetAutoHostSni() {
		return nil, e("auto_host_sni", "not supported; set sni")
	}
	if ctx.GetAutoSniSanValidation() {
		return nil, e("auto_sni_san_validation", "not supported; use match_typed_subject_alt_names")
	}
	if v := ctx.GetMaxSessionKeys(); v != nil {
		out.MaxSessionKeys = v.GetValue()
	}
	c := ctx.GetCommonTlsContext()
	const cc = "common_tls_context."
	if c == nil {
		return out, nil // TLS without certificate or verification, as Envoy
	}
	out.ALPN = c.GetAlpnProtocols()
	if p := c.GetTlsParams(); p != nil {
		if err := tlsParams(p, out); err != nil {
			return nil, prefixed(cc+"tls_params.", err)
		}
	}
	switch {
	case c.GetCustomHandshaker() != nil:
		return nil, e(cc+"custom_handshaker", "not supported")
	case c.GetKeyLog() != nil:
		return nil, e(cc+"key_log", "not supported")
	case c.GetCustomTlsCertificateSelector() != nil:
		return nil, e(cc+"custom_tls_certificate_selector", "not supported")
	case c.GetTlsCertificateProviderInstance() != nil:
		return nil, e(cc+"tls_certificate_provider_instance", "certificate provider instances are not supported; use SDS secret %q", SecretWorkloadCert)
	case c.GetTlsCertificateCertificateProvider() != nil || c.GetTlsCertificateCertificateProviderInstance() != nil:
		return nil, e(cc+"tls_certificate_certificate_provider", "not supported; use SDS secret %q", SecretWorkloadCert)
	}
	certs, sds := c.GetTlsCertificates(), c.GetTlsCertificateSdsSecretConfigs()
	switch {
	case len(certs)+len(sds) > 1:
		return nil, e(cc+"tls_certificates", "an upstream connection presents one certificate; got %d", len(certs)+len(sds))
	case len(certs) == 1:
		src, err := certFiles(certs[0])
		if err != nil {
			return nil, prefixed(cc+"tls_certificates[0].", err)
		}
		out.Cert = src
	case len(sds) == 1:
		if err := adsOnly(sds[0].GetSdsConfig()); err != nil {
			return nil, e(cc+"tls_certificate_sds_secret_configs[0].sds_config", "%v", err)
		}
		if n := sds[0].GetName(); n == SecretWorkloadCert {
			out.Cert.Kind = CertWorkload
		} else {
			out.unavailable("client certificate SDS secret %q has no source in weft-proxy (only %q, the workload certificate; weftd serves no SDS secrets for credentialName)", n, SecretWorkloadCert)
		}
	}
	var vc *tlsv3.CertificateValidationContext
	sdsRoot := ""
	switch v := c.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if err := adsOnly(v.ValidationContextSdsSecretConfig.GetSdsConfig()); err != nil {
			return nil, e(cc+"validation_context_sds_secret_config.sds_config", "%v", err)
		}
		sdsRoot = v.ValidationContextSdsSecretConfig.GetName()
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		cv := v.CombinedValidationContext
		const f = cc + "combined_validation_context."
		if cv.GetValidationContextCertificateProvider() != nil || cv.GetValidationContextCertificateProviderInstance() != nil {
			return nil, e(f+"validation_context_certificate_provider", "not supported; use SDS secret %q", SecretRootCA)
		}
		if err := adsOnly(cv.GetValidationContextSdsSecretConfig().GetSdsConfig()); err != nil {
			return nil, e(f+"validation_context_sds_secret_config.sds_config", "%v", err)
		}
		sdsRoot = cv.GetValidationContextSdsSecretConfig().GetName()
		if sdsRoot == "" {
			return nil, e(f+"validation_context_sds_secret_config.name", "required")
		}
		vc = cv.GetDefaultValidationContext()
		if vc.GetTrustedCa() != nil || vc.GetSystemRootCerts() != nil {
			return nil, e(f+"default_validation_context.trusted_ca", "the trust anchors come from SDS secret %q; a second source is ambiguous", sdsRoot)
		}
	default:
		return nil, e(cc+"validation_context_type", "%T is not supported", v)
	}
	field := cc + "validation_context."
	if sdsRoot != "" {
		field = cc + "combined_validation_context.default_validation_context."
		if sdsRoot == SecretRootCA {
			out.Validation.Trust = TrustMesh
		} else {
			out.unavailable("validation SDS secret %q has no source in weft-proxy (only %q, the mesh trust bundle; weftd serves no SDS secrets for credentialName)", sdsRoot, SecretRootCA)
			out.Validation.Trust = TrustMesh // never used: the context is unavailable
		}
	}
	if err := validation(vc, sdsRoot != "", &out.Validation); err != nil {
		return nil, prefixed(field, err)
	}
	return out, nil
}

func (t *UpstreamTLS) unavailable(format string, args ...any) {
	if t.Unavailable == "" {
		t.Unavailable = fmt.Sprintf(format, args...)
	}
}

// prefixed puts prefix in front of a FieldError's field.
func prefixed(prefix string, err error) error {
	if fe, ok := err.(*FieldError); ok {
		return &FieldError{Field: prefix + fe.Field, Msg: fe.Msg}
	}
	return err
}

func adsOnly(src *corev3.ConfigSource) error {
	if src != nil && src.GetAds() == nil && src.GetConfigSourceSpecifier() != nil {
		return errf("only ADS config sources are supported")
	}
	return nil
}

var tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLSv1_0: tls.VersionTLS10,
	tlsv3.TlsParameters_TLSv1_1: tls.VersionTLS11,
	tlsv3.TlsParameters_TLSv1_2: tls.VersionTLS12,
	tlsv3.TlsParameters_TLSv1_3: tls.VersionTLS13,
}

func tlsParams(p *tlsv3.TlsParameters, out *UpstreamTLS) error {
	if v := p.GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		if out.MinVersion = tlsVersions[v]; out.MinVersion == 0 {
			return fieldErr("tls_minimum_protocol_version", "unknown TLS version %d", v)
		}
	}
	if v := p.GetTlsMaximumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		if out.MaxVersion = tlsVersions[v]; out.MaxVersion == 0 {
			return fieldErr("tls_maximum_protocol_version", "unknown TLS version %d", v)
		}
	}
	if out.MinVersion < tls.VersionTLS12 {
		return fieldErr("tls_minimum_protocol_version", "TLS versions below 1.2 are not supported")
	}
	if out.MaxVersion < out.MinVersion {
		if p.GetTlsMaximumProtocolVersion() != tlsv3.TlsParameters_TLS_AUTO {
			return fieldErr("tls_maximum_protocol_version", "below tls_minimum_protocol_version")
		}
		out.MaxVersion = out.MinVersion // a TLSv1_3 minimum with the default maximum
	}
	switch {
	case len(p.GetCipherSuites()) > 0:
		return fieldErr("cipher_suites", "not supported (Go's TLS stack picks secure suites)")
	case len(p.GetEcdhCurves()) > 0:
		return fieldErr("ecdh_curves", "not supported")
	case len(p.GetSignatureAlgorithms()) > 0:
		return fieldErr("signature_algorithms", "not supported")
	case p.GetCompliancePolicies() != nil:
		return fieldErr("compliance_policies", "not supported")
	}
	return nil
}

func certFiles(c *tlsv3.TlsCertificate) (CertSource, error) {
	switch {
	case c.GetPassword() != nil:
		return CertSource{}, fieldErr("password", "encrypted private keys are not supported")
	case c.GetPrivateKeyProvider() != nil:
		return CertSource{}, fieldErr("private_key_provider", "not supported")
	case c.GetOcspStaple() != nil || len(c.GetSignedCertificateTimestamp()) > 0:
		return CertSource{}, fieldErr("ocsp_staple", "OCSP staples and SCTs are server-side; not supported upstream")
	case c.GetPkcs12() != nil:
		return CertSource{}, fieldErr("pkcs12", "not supported; use certificate_chain and private_key")
	}
	chain, err := dataSource(c.GetCertificateChain())
	if err != nil {
		return CertSource{}, fieldErr("certificate_chain", "%v", err)
	}
	key, err := dataSource(c.GetPrivateKey())
	if err != nil {
		return CertSource{}, fieldErr("private_key", "%v", err)
	}
	if chain.IsZero() || key.IsZero() {
		return CertSource{}, fieldErr("certificate_chain", "certificate_chain and private_key are both required")
	}
	return CertSource{Kind: CertFiles, Chain: chain, Key: key}, nil
}

func dataSource(d *corev3.DataSource) (DataSource, error) {
	switch s := d.GetSpecifier().(type) {
	case nil:
		return DataSource{}, nil
	case *corev3.DataSource_Filename:
		if s.Filename == "" {
			return DataSource{}, errf("empty filename")
		}
		return DataSource{Path: s.Filename}, nil
	case *corev3.DataSource_InlineBytes:
		return DataSource{Inline: s.InlineBytes}, nil
	case *corev3.DataSource_InlineString:
		return DataSource{Inline: []byte(s.InlineString)}, nil
	default:
		return DataSource{}, errf("%T is not supported (file or inline only)", s)
	}
}

// validation compiles a CertificateValidationContext into v. fromSDS: the
// trust anchors come from an SDS secret (v.Trust is set already).
func validation(vc *tlsv3.CertificateValidationContext, fromSDS bool, v *Validation) error {
	e := fieldErr
	if vc == nil {
		return nil
	}
	switch {
	case vc.GetCaCertificateProviderInstance() != nil:
		return e("ca_certificate_provider_instance", "not supported; use SDS secret %q", SecretRootCA)
	case vc.GetCustomValidatorConfig() != nil:
		return e("custom_validator_config", "not supported")
	case vc.GetRequireSignedCertificateTimestamp() != nil && vc.GetRequireSignedCertificateTimestamp().GetValue():
		return e("require_signed_certificate_timestamp", "not supported")
	case vc.GetAllowExpiredCertificate():
		return e("allow_expired_certificate", "not supported")
	case vc.GetMaxVerifyDepth() != nil:
		return e("max_verify_depth", "not supported")
	}
	if !fromSDS {
		ca, err := dataSource(vc.GetTrustedCa())
		if err != nil {
			return e("trusted_ca", "%v", err)
		}
		switch {
		case ca.Path == SystemCABundle:
			v.Trust = TrustSystem
		case !ca.IsZero():
			v.Trust, v.CA = TrustCA, ca
		case vc.GetSystemRootCerts() != nil:
			v.Trust = TrustSystem
		}
	}
	crl, err := dataSource(vc.GetCrl())
	if err != nil {
		return e("crl", "%v", err)
	}
	v.CRL, v.CRLLeafOnly = crl, vc.GetOnlyVerifyLeafCertCrl()
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		f := "match_typed_subject_alt_names[" + itoa(i) + "]"
		var t SANType
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_EMAIL:
			t = SANEmail
		case tlsv3.SubjectAltNameMatcher_DNS:
			t = SANDNS
		case tlsv3.SubjectAltNameMatcher_URI:
			t = SANURI
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			t = SANIP
		default:
			return e(f+".san_type", "%s is not supported", m.GetSanType())
		}
		sm, err := newStringMatcher(m.GetMatcher())
		if err != nil {
			return e(f+".matcher", "%v", err)
		}
		v.SANs = append(v.SANs, SANMatcher{Type: t, m: sm})
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		sm, err := newStringMatcher(m)
		if err != nil {
			return e("match_subject_alt_names["+itoa(i)+"]", "%v", err)
		}
		v.SANs = append(v.SANs, SANMatcher{Type: SANAny, m: sm})
	}
	for i, h := range vc.GetVerifyCertificateHash() {
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil || len(b) != sha256.Size {
			return e("verify_certificate_hash["+itoa(i)+"]", "want a hex SHA-256 digest")
		}
		v.CertHashes = append(v.CertHashes, b)
	}
	for i, h := range vc.GetVerifyCertificateSpki() {
		b, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return e("verify_certificate_spki["+itoa(i)+"]", "want a base64 SHA-256 digest")
		}
		v.SPKIHashes = append(v.SPKIHashes, b)
	}
	if vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED {
		v.Trust = TrustNone
		return nil
	}
	if v.Trust == TrustNone && (len(v.SANs) > 0 || !v.CRL.IsZero()) {
		// Envoy refuses this too: names checked on an unverified chain
		// prove nothing.
		return e("trusted_ca", "SAN matchers and CRLs need trust anchors (trusted_ca, system_root_certs or an SDS validation secret)")
	}
	return nil
}

// SocketMatch is one compiled transport_socket_matches entry.
type SocketMatch struct {
	Name string
	// Criteria must all be present, with equal values, in an endpoint's
	// envoy.transport_socket_match metadata; empty matches every endpoint.
	Criteria map[string]*structpb.Value
	// TLS is the match's transport (nil: plaintext).
	TLS *UpstreamTLS
}

// matches reports whether md (an endpoint's or locality's metadata) carries
// every criterion, Envoy's metadataLabelMatch.
func (m *SocketMatch) matches(md *corev3.Metadata) bool {
	if len(m.Criteria) == 0 {
		return true
	}
	fields := md.GetFilterMetadata()[TransportSocketMatchKey].GetFields()
	for k, want := range m.Criteria {
		got, ok := fields[k]
		if !ok || !proto.Equal(got, want) {
			return false
		}
	}
	return true
}

// TLSFor picks an endpoint's transport as Envoy does: the first
// transport_socket_matches entry whose criteria the endpoint metadata
// satisfies (then, per entry, the locality metadata), else the cluster's
// transport_socket. nil means plaintext.
func (c *Cluster) TLSFor(endpoint, locality *corev3.Metadata) *UpstreamTLS {
	for i := range c.SocketMatches {
		m := &c.SocketMatches[i]
		if m.matches(endpoint) || (locality != nil && m.matches(locality)) {
			return m.TLS
		}
	}
	return c.TLS
}

// PassthroughTLS is the transport of connections without an endpoint
// (ORIGINAL_DST clusters): what an endpoint without metadata would get.
func (c *Cluster) PassthroughTLS() *UpstreamTLS { return c.passthroughTLS }

// TLSContexts returns the cluster's distinct TLS descriptions (transport
// socket and matches), for building client configs ahead of use.
func (c *Cluster) TLSContexts() []*UpstreamTLS {
	var out []*UpstreamTLS
	add := func(t *UpstreamTLS) {
		if t == nil {
			return
		}
		for _, o := range out {
			if o.Key == t.Key {
				return
			}
		}
		out = append(out, t)
	}
	add(c.TLS)
	for i := range c.SocketMatches {
		add(c.SocketMatches[i].TLS)
	}
	return out
}

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher for SAN
// values. (package route has the request-path flavour; it imports this
// package, so the few lines are not shared.)
type stringMatcher struct {
	kind       strKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

func newStringMatcher(m *matcherv3.StringMatcher) (stringMatcher, error) {
	sm := stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.value = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.value = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.value = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.value = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return sm, errf("invalid RE2 regex %q: %v", p.SafeRegex.GetRegex(), err)
		}
		sm.kind, sm.value, sm.re = strRegex, p.SafeRegex.GetRegex(), re
	default:
		return sm, errf("match pattern %T is not supported", p)
	}
	if sm.ignoreCase {
		sm.value = strings.ToLower(sm.value)
	}
	return sm, nil
}

func (m *stringMatcher) match(v string) bool {
	if m.kind == strRegex {
		return m.re.MatchString(v)
	}
	if m.ignoreCase {
		v = strings.ToLower(v)
	}
	switch m.kind {
	case strExact:
		return v == m.value
	case strPrefix:
		return strings.HasPrefix(v, m.value)
	case strSuffix:
		return strings.HasSuffix(v, m.value)
	default:
		return strings.Contains(v, m.value)
	}
}

// fold compares a and b exactly or, for ignore_case matchers, ignoring case.
func (m *stringMatcher) fold(a, b string) bool {
	if m.ignoreCase {
		return strings.EqualFold(a, b)
	}
	return a == b
}

func (m *stringMatcher) String() string {
	s := [...]string{"exact", "prefix", "suffix", "contains", "regex"}[m.kind] + " " + m.value
	if m.ignoreCase {
		s += " (ignore case)"
	}
	return s
}
