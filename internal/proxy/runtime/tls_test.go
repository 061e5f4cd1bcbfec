package runtime

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func meshDownstreamTLS(cert, root string) *tlsv3.DownstreamTlsContext {
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio", "h2", "http/1.1"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: cert, SdsConfig: ads}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/"}},
					}}},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: root, SdsConfig: ads},
				},
			},
		},
	}
}

func tlsChainListener(t *testing.T, ctx *tlsv3.DownstreamTlsContext) *listenerv3.Listener {
	t.Helper()
	a, err := anypb.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := anypb.New(&tcpv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}})
	return &listenerv3.Listener{
		Name: "virtualInbound",
		FilterChains: []*listenerv3.FilterChain{{
			Name:             "inbound|9080||x",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080), TransportProtocol: "tls"},
			Filters:          []*listenerv3.Filter{{Name: FilterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
			TransportSocket:  &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}},
		}},
	}
}

func TestDownstreamTLSRecorded(t *testing.T) {
	s, err := Build(nil, tlsChainListener(t, meshDownstreamTLS("default", "ROOTCA")))
	if err != nil {
		t.Fatal(err)
	}
	fc := s.Listener("virtualInbound").FilterChains[0]
	if !fc.TLS || fc.TLSContext == nil || !fc.TLSContext.RequireClientCertificate ||
		len(fc.TLSContext.ALPN) != 4 || len(fc.TLSContext.URISANPrefixes) != 1 || fc.TLSContext.URISANPrefixes[0] != "spiffe://cluster.local/" {
		t.Fatalf("chain TLS = %v %+v", fc.TLS, fc.TLSContext)
	}
}

func TestDownstreamTLSRejected(t *testing.T) {
	inline := meshDownstreamTLS("default", "ROOTCA")
	inline.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{}}
	for _, tc := range []struct {
		name string
		ctx  *tlsv3.DownstreamTlsContext
		want string
	}{
		{"unknown cert secret", meshDownstreamTLS("kubernetes://my-cert", "ROOTCA"),
			`transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name: SDS secret "kubernetes://my-cert" is not supported (only "default" and "ROOTCA")`},
		{"unknown root secret", meshDownstreamTLS("default", "my-ca"),
			`combined_validation_context.validation_context_sds_secret_config.name: SDS secret "my-ca" is not supported`},
		{"inline certificates", inline, `tls_certificates: inline certificates are not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(nil, tlsChainListener(t, tc.ctx))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `Listener "virtualInbound"`) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
