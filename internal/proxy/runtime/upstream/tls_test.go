package upstream

import (
	"crypto/tls"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var ads = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ads}
}

func file(p string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// istioMutual is the context weftd generates for ISTIO_MUTUAL and auto mTLS.
func istioMutual(sans ...string) *tlsv3.UpstreamTlsContext {
	var m []*matcherv3.StringMatcher
	for _, s := range sans {
		m = append(m, exact(s))
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: "outbound_.9080_._.reviews.default.svc.cluster.local",
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default")},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchSubjectAltNames: m},
					ValidationContextSdsSecretConfig: sds("ROOTCA"),
				},
			},
		},
	}
}

func withValidation(vc *tlsv3.CertificateValidationContext) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{Sni: "api.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}}
}

func tlsSocket(t testing.TB, ctx proto.Message) *corev3.TransportSocket {
	t.Helper()
	a, err := anypb.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

func rawSocket(t testing.TB) *corev3.TransportSocket {
	t.Helper()
	a, _ := anypb.New(&rawbufferv3.RawBuffer{})
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
}

func TestUpstreamTLSCompile(t *testing.T) {
	for _, tt := range []struct {
		name  string
		ctx   *tlsv3.UpstreamTlsContext
		check func(t *testing.T, u *UpstreamTLS)
	}{
		{"ISTIO_MUTUAL as weftd sends it", istioMutual("spiffe://cluster.local/ns/default/sa/reviews"), func(t *testing.T, u *UpstreamTLS) {
			if u.SNI != "outbound_.9080_._.reviews.default.svc.cluster.local" || strings.Join(u.ALPN, ",") != "istio-peer-exchange,istio" {
				t.Errorf("SNI/ALPN %q %v", u.SNI, u.ALPN)
			}
			if u.Cert.Kind != CertWorkload || u.Validation.Trust != TrustMesh || u.Unavailable != "" {
				t.Errorf("cert %v trust %v unavailable %q", u.Cert.Kind, u.Validation.Trust, u.Unavailable)
			}
			if len(u.Validation.SANs) != 1 || u.Validation.SANs[0].Type != SANAny || !u.Validation.SANs[0].Match(SANURI, "spiffe://cluster.local/ns/default/sa/reviews") {
				t.Errorf("SANs %+v", u.Validation.SANs)
			}
			if u.MinVersion != tls.VersionTLS12 || u.MaxVersion != tls.VersionTLS12 || u.MaxSessionKeys != 1 {
				t.Errorf("Envoy client defaults: versions %x-%x session keys %d", u.MinVersion, u.MaxVersion, u.MaxSessionKeys)
			}
		}},
		{"SIMPLE with a CA file", withValidation(&tlsv3.CertificateValidationContext{TrustedCa: file("/etc/ca.pem"), MatchSubjectAltNames: []*matcherv3.StringMatcher{exact("api.example.com")}}),
			func(t *testing.T, u *UpstreamTLS) {
				if u.Cert.Kind != CertNone || u.Validation.Trust != TrustCA || u.Validation.CA.Path != "/etc/ca.pem" || u.SNI != "api.example.com" {
					t.Errorf("%+v", u)
				}
			}},
		{"SIMPLE against weftd's system bundle path", withValidation(&tlsv3.CertificateValidationContext{TrustedCa: file(SystemCABundle)}), func(t *testing.T, u *UpstreamTLS) {
			if u.Validation.Trust != TrustSystem {
				t.Errorf("trust %v, want system roots", u.Validation.Trust)
			}
		}},
		{"system_root_certs", withValidation(&tlsv3.CertificateValidationContext{SystemRootCerts: &tlsv3.CertificateValidationContext_SystemRootCerts{}}), func(t *testing.T, u *UpstreamTLS) {
			if u.Validation.Trust != TrustSystem {
				t.Errorf("trust %v", u.Validation.Trust)
			}
		}},
		{"insecureSkipVerify: no validation context", &tlsv3.UpstreamTlsContext{Sni: "x", CommonTlsContext: &tlsv3.CommonTlsContext{}}, func(t *testing.T, u *UpstreamTLS) {
			if u.Validation.Trust != TrustNone {
				t.Errorf("trust %v", u.Validation.Trust)
			}
		}},
		{"ACCEPT_UNTRUSTED", withValidation(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca"), TrustChainVerification: tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED}), func(t *testing.T, u *UpstreamTLS) {
			if u.Validation.Trust != TrustNone {
				t.Errorf("trust %v", u.Validation.Trust)
			}
		}},
		{"MUTUAL with files", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file("/c.pem"), PrivateKey: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "KEY"}}}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file("/ca.pem"), Crl: file("/crl.pem"), OnlyVerifyLeafCertCrl: true}},
		}}, func(t *testing.T, u *UpstreamTLS) {
			if u.Cert.Kind != CertFiles || u.Cert.Chain.Path != "/c.pem" || string(u.Cert.Key.Inline) != "KEY" || u.Cert.Key.String() != "<inline>" {
				t.Errorf("cert %+v", u.Cert)
			}
			if u.Validation.CRL.Path != "/crl.pem" || !u.Validation.CRLLeafOnly {
				t.Errorf("crl %+v", u.Validation)
			}
		}},
		{"credentialName: SDS secrets without a source", func() *tlsv3.UpstreamTlsContext {
			c := istioMutual()
			c.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sds("kubernetes://client-cred")}
			c.CommonTlsContext.GetCombinedValidationContext().ValidationContextSdsSecretConfig = sds("kubernetes://client-cred-cacert")
			return c
		}(), func(t *testing.T, u *UpstreamTLS) {
			if !strings.Contains(u.Unavailable, `SDS secret "kubernetes://client-cred" has no source`) {
				t.Errorf("unavailable %q", u.Unavailable)
			}
		}},
		{"tls_params and session keys", &tlsv3.UpstreamTlsContext{MaxSessionKeys: wrapperspb.UInt32(0), AllowRenegotiation: true,
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3}}},
			func(t *testing.T, u *UpstreamTLS) {
				if u.MinVersion != tls.VersionTLS13 || u.MaxVersion != tls.VersionTLS13 || u.MaxSessionKeys != 0 || !u.AllowRenegotiation {
					t.Errorf("%+v", u)
				}
			}},
		{"typed SAN matchers, hashes", withValidation(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca"),
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{
				{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/ns/prod/"}}},
				{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".EXAMPLE.com"}, IgnoreCase: true}},
				{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact("api.example.org")},
				{SanType: tlsv3.SubjectAltNameMatcher_EMAIL, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "@ops."}}},
				{SanType: tlsv3.SubjectAltNameMatcher_IP_ADDRESS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `10\.0\.0\.\d+`}}}},
			},
			VerifyCertificateHash: []string{strings.Repeat("ab:", 31) + "ab"},
			VerifyCertificateSpki: []string{"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
		}), func(t *testing.T, u *UpstreamTLS) {
			s := u.Validation.SANs
			for _, tc := range []struct {
				m    int
				t    SANType
				v    string
				want bool
			}{
				{0, SANURI, "spiffe://cluster.local/ns/prod/sa/a", true},
				{0, SANURI, "spiffe://cluster.local/ns/dev/sa/a", false},
				{0, SANDNS, "spiffe://cluster.local/ns/prod/sa/a", false}, // wrong SAN type
				{1, SANDNS, "api.example.com", true},
				{1, SANDNS, "example.org", false},
				{2, SANDNS, "api.example.org", true},
				{2, SANDNS, "*.example.org", true}, // wildcard certificate name
				{2, SANDNS, "*.org", false},
				{3, SANEmail, "me@ops.example.com", true},
				{4, SANIP, "10.0.0.7", true},
				{4, SANIP, "10.0.0.7x", false}, // regexes match the whole value
			} {
				if got := s[tc.m].Match(tc.t, tc.v); got != tc.want {
					t.Errorf("matcher %d (%s) on %s %q = %v, want %v", tc.m, s[tc.m].String(), tc.t, tc.v, got, tc.want)
				}
			}
			if len(u.Validation.CertHashes) != 1 || len(u.Validation.SPKIHashes) != 1 {
				t.Errorf("hashes %v %v", u.Validation.CertHashes, u.Validation.SPKIHashes)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := upstreamTLS(tlsSocket(t, tt.ctx), "")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(u.Key, "tls:") {
				t.Errorf("key %q", u.Key)
			}
			tt.check(t, u)
		})
	}
}

// TestUpstreamTLSRefused: everything weft-proxy cannot honour NACKs the
// cluster with the field's path.
func TestUpstreamTLSRefused(t *testing.T) {
	vc := func(v *tlsv3.CertificateValidationContext) *corev3.TransportSocket {
		return tlsSocket(t, withValidation(v))
	}
	for _, tt := range []struct {
		name string
		ts   *corev3.TransportSocket
		want string
	}{
		{"unknown socket", &corev3.TransportSocket{Name: "envoy.transport_sockets.alts"}, `transport_socket.name: transport socket "envoy.transport_sockets.alts" is not supported`},
		{"grpc certificate provider", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default"}}}),
			`transport_socket.typed_config.common_tls_context.tls_certificate_provider_instance: certificate provider instances are not supported`},
		{"SANs without trust anchors", vc(&tlsv3.CertificateValidationContext{MatchSubjectAltNames: []*matcherv3.StringMatcher{exact("a")}}),
			`common_tls_context.validation_context.trusted_ca: SAN matchers and CRLs need trust anchors`},
		{"two certificates", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default"), sds("other")}}}), `presents one certificate; got 2`},
		{"cipher suites", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{CipherSuites: []string{"ECDHE-RSA-AES128-GCM-SHA256"}}}}), `common_tls_context.tls_params.cipher_suites: not supported`},
		{"TLS 1.0", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_0}}}), `below 1.2 are not supported`},
		{"cipher suites next to a TLS 1.3 minimum", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3, CipherSuites: []string{"X"}}}}), `tls_params.cipher_suites: not supported`},
		{"maximum below minimum", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3, TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_2}}}),
			`tls_params.tls_maximum_protocol_version: below tls_minimum_protocol_version`},
		{"unknown TLS version", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMaximumProtocolVersion: 9}}}), `tls_params.tls_maximum_protocol_version: unknown TLS version 9`},
		{"SDS over a non-ADS source", tlsSocket(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}}}}}), `tls_certificate_sds_secret_configs[0].sds_config: only ADS config sources are supported`},
		{"OTHER_NAME SAN", vc(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca"), MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{
			{SanType: tlsv3.SubjectAltNameMatcher_OTHER_NAME, Matcher: exact("x")}}}), `match_typed_subject_alt_names[0].san_type: OTHER_NAME is not supported`},
		{"bad regex", vc(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca"), MatchSubjectAltNames: []*matcherv3.StringMatcher{
			{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}}}), `match_subject_alt_names[0]: invalid RE2 regex`},
		{"bad hash", vc(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca"), VerifyCertificateHash: []string{"zz"}}), `verify_certificate_hash[0]: want a hex SHA-256 digest`},
		{"custom validator", vc(&tlsv3.CertificateValidationContext{CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: "spiffe"}}), `custom_validator_config: not supported`},
		{"auto_host_sni", tlsSocket(t, &tlsv3.UpstreamTlsContext{AutoHostSni: true}), `auto_host_sni: not supported`},
		{"environment variable data source", vc(&tlsv3.CertificateValidationContext{TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "CA"}}}),
			`validation_context.trusted_ca: *corev3.DataSource_EnvironmentVariable is not supported`},
		{"trusted_ca next to an SDS secret", func() *corev3.TransportSocket {
			c := istioMutual()
			c.CommonTlsContext.GetCombinedValidationContext().DefaultValidationContext.TrustedCa = file("/ca")
			return tlsSocket(t, c)
		}(), `default_validation_context.trusted_ca: the trust anchors come from SDS secret "ROOTCA"`},
		{"not an UpstreamTlsContext", tlsSocket(t, &tlsv3.DownstreamTlsContext{}), `transport_socket.typed_config: decode UpstreamTlsContext`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pb := edsCluster("c")
			pb.TransportSocket = tt.ts
			_, err := NewCluster(pb, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("match without name", func(t *testing.T) {
		pb := edsCluster("c")
		pb.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{TransportSocket: rawSocket(t)}}
		if _, err := NewCluster(pb, nil); err == nil || !strings.Contains(err.Error(), "transport_socket_matches[0].name: required") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad socket inside a match", func(t *testing.T) {
		pb := edsCluster("c")
		pb.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{Name: "m", TransportSocket: &corev3.TransportSocket{Name: "alts"}}}
		if _, err := NewCluster(pb, nil); err == nil || !strings.Contains(err.Error(), `transport_socket_matches[0].transport_socket.name: transport socket "alts"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestUpstreamTLSKeys: the key is a content key — stable across builds and
// clusters, different when anything that changes the connection differs.
func TestUpstreamTLSKeys(t *testing.T) {
	key := func(ctx *tlsv3.UpstreamTlsContext, match string) string {
		u, err := upstreamTLS(tlsSocket(t, ctx), match)
		if err != nil {
			t.Fatal(err)
		}
		return u.Key
	}
	a := key(istioMutual("spiffe://cluster.local/ns/default/sa/r"), "")
	if b := key(istioMutual("spiffe://cluster.local/ns/default/sa/r"), ""); a != b {
		t.Errorf("equal contexts, keys %s %s", a, b)
	}
	if b := key(istioMutual("spiffe://cluster.local/ns/default/sa/other"), ""); a == b {
		t.Error("different SANs share a key")
	}
	other := istioMutual("spiffe://cluster.local/ns/default/sa/r")
	other.Sni = "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
	if b := key(other, ""); a == b {
		t.Error("different SNI shares a key")
	}
	if b := key(istioMutual("spiffe://cluster.local/ns/default/sa/r"), "tlsMode-istio"); a == b {
		t.Error("an opportunistic (auto mTLS) context shares a key with a mandatory one")
	}
	if u, _ := upstreamTLS(rawSocket(t), ""); u != nil {
		t.Errorf("raw_buffer compiled to %+v", u)
	}
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func matchMetadata(t testing.TB, m map[string]any) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{TransportSocketMatchKey: mustStruct(t, m)}}
}

// TestTransportSocketMatchSelection: per endpoint, the first match whose
// criteria are a subset of the endpoint's (then the locality's) metadata;
// empty criteria match everything; no match falls back to transport_socket.
func TestTransportSocketMatchSelection(t *testing.T) {
	mtls := tlsSocket(t, istioMutual("spiffe://cluster.local/ns/default/sa/r"))
	simple := tlsSocket(t, withValidation(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca")}))
	autoMTLS := []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: mustStruct(t, map[string]any{"tlsMode": "istio"}), TransportSocket: mtls},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: rawSocket(t)},
	}
	multi := []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "both", Match: mustStruct(t, map[string]any{"tlsMode": "istio", "version": "v2"}), TransportSocket: simple},
		{Name: "numeric", Match: mustStruct(t, map[string]any{"port": 9080}), TransportSocket: mtls},
	}
	type want int
	const (
		plain want = iota
		wantMTLS
		wantSimple
	)
	for _, tt := range []struct {
		name     string
		ts       *corev3.TransportSocket
		matches  []*clusterv3.Cluster_TransportSocketMatch
		endpoint *corev3.Metadata
		locality *corev3.Metadata
		want     want
		match    string
	}{
		{"auto mTLS: tlsMode istio", nil, autoMTLS, matchMetadata(t, map[string]any{"tlsMode": "istio"}), nil, wantMTLS, "tlsMode-istio"},
		{"auto mTLS: extra metadata keys do not matter", nil, autoMTLS, matchMetadata(t, map[string]any{"tlsMode": "istio", "zone": "a"}), nil, wantMTLS, "tlsMode-istio"},
		{"auto mTLS: no metadata takes the empty match", nil, autoMTLS, nil, nil, plain, ""},
		{"auto mTLS: other metadata namespaces are not looked at", nil, autoMTLS,
			&corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": mustStruct(t, map[string]any{"tlsMode": "istio"})}}, nil, plain, ""},
		{"auto mTLS: tlsMode disabled", nil, autoMTLS, matchMetadata(t, map[string]any{"tlsMode": "disabled"}), nil, plain, ""},
		{"transport_socket only", mtls, nil, nil, nil, wantMTLS, ""},
		{"no match falls back to transport_socket", simple, multi, matchMetadata(t, map[string]any{"tlsMode": "istio"}), nil, wantSimple, ""},
		{"every criterion must hold", nil, multi, matchMetadata(t, map[string]any{"tlsMode": "istio", "version": "v2"}), nil, wantSimple, "both"},
		{"values compare as typed values", nil, multi, matchMetadata(t, map[string]any{"port": "9080"}), nil, plain, ""},
		{"numbers match numbers", nil, multi, matchMetadata(t, map[string]any{"port": 9080}), nil, wantMTLS, "numeric"},
		{"locality metadata", nil, autoMTLS, nil, matchMetadata(t, map[string]any{"tlsMode": "istio"}), wantMTLS, "tlsMode-istio"},
		{"first match in order wins, endpoint before locality per match", nil, multi, matchMetadata(t, map[string]any{"port": 9080}),
			matchMetadata(t, map[string]any{"tlsMode": "istio", "version": "v2"}), wantSimple, "both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pb := edsCluster("outbound|9080||reviews.default.svc.cluster.local")
			pb.TransportSocket, pb.TransportSocketMatches = tt.ts, tt.matches
			c, err := NewCluster(pb, nil)
			if err != nil {
				t.Fatal(err)
			}
			cla := &endpointv3.ClusterLoadAssignment{ClusterName: pb.Name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Metadata: tt.locality,
				LbEndpoints: []*endpointv3.LbEndpoint{{Metadata: tt.endpoint, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}}}}}},
			}}}
			set, err := NewEndpointSet(c, cla, nil)
			if err != nil {
				t.Fatal(err)
			}
			ep := set.all[0]
			switch {
			case tt.want == plain && (ep.TLS != nil || ep.TLSKey() != ""):
				t.Fatalf("want plaintext, got %+v", ep.TLS)
			case tt.want == wantMTLS && (ep.TLS == nil || ep.TLS.Cert.Kind != CertWorkload):
				t.Fatalf("want mesh mTLS, got %+v", ep.TLS)
			case tt.want == wantSimple && (ep.TLS == nil || ep.TLS.Validation.Trust != TrustCA):
				t.Fatalf("want SIMPLE TLS, got %+v", ep.TLS)
			}
			if ep.TLS != nil {
				if ep.TLS.Match != tt.match || ep.TLSKey() != ep.TLS.Key {
					t.Errorf("match %q key %q, want match %q", ep.TLS.Match, ep.TLSKey(), tt.match)
				}
				if got := ep.TLS.Opportunistic(); got != (tt.match != "" && tt.want == wantMTLS) {
					t.Errorf("opportunistic = %v", got)
				}
			}
		})
	}
}

func TestTLSContextsAndPassthrough(t *testing.T) {
	pb := &clusterv3.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED}
	pb.TransportSocket = tlsSocket(t, istioMutual())
	pb.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "a", Match: mustStruct(t, map[string]any{"k": "v"}), TransportSocket: tlsSocket(t, istioMutual())},
		{Name: "b", Match: mustStruct(t, map[string]any{"k": "w"}), TransportSocket: tlsSocket(t, istioMutual())},
		{Name: "raw", TransportSocket: rawSocket(t)},
	}
	c, err := NewCluster(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	// transport_socket and the two opportunistic matches: two distinct contents.
	if got := c.TLSContexts(); len(got) != 2 {
		t.Errorf("TLSContexts = %d, want 2", len(got))
	}
	if c.PassthroughTLS() != nil {
		t.Errorf("passthrough TLS %+v: the empty match (raw) comes before transport_socket", c.PassthroughTLS())
	}
}

// FuzzUpstreamTLS: any bytes as an UpstreamTlsContext compile or are
// refused; parsing never panics.
func FuzzUpstreamTLS(f *testing.F) {
	for _, ctx := range []*tlsv3.UpstreamTlsContext{
		istioMutual("spiffe://cluster.local/ns/default/sa/r"),
		withValidation(&tlsv3.CertificateValidationContext{TrustedCa: file("/ca"), VerifyCertificateHash: []string{"ab"},
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a.*"}}}}}}),
		{CommonTlsContext: &tlsv3.CommonTlsContext{TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3}}},
	} {
		b, err := proto.Marshal(ctx)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ctx tlsv3.UpstreamTlsContext
		if proto.Unmarshal(b, &ctx) != nil {
			return
		}
		u, err := upstreamTLS(tlsSocket(t, &ctx), "m")
		if err == nil && (u == nil || !strings.HasPrefix(u.Key, "tls:")) {
			t.Fatalf("compiled without a key: %+v", u)
		}
		if u != nil {
			for i := range u.Validation.SANs {
				u.Validation.SANs[i].Match(SANDNS, "*.example.com")
				_ = u.Validation.SANs[i].String()
			}
		}
	})
}
