package config

import (
	"fmt"
	"strings"
	"testing"
)

// mustObject decodes a spec written in YAML for kind; decode errors fail the test.
func mustObject(t *testing.T, kind Kind, spec string) *Object {
	t.Helper()
	info, ok := LookupKind(kind)
	if !ok {
		t.Fatalf("unknown kind %s", kind)
	}
	doc := fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata:\n  name: t\n  namespace: ns\nspec:\n%s", info.APIVersion(), kind, indent(spec))
	objs, diags := Decode([]byte(doc), Origin{Source: "test"})
	if len(diags) > 0 || len(objs) != 1 {
		t.Fatalf("decode: %v\n%s", diags, doc)
	}
	return objs[0]
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		spec string
		// wantErr is the exact field path of the single expected error; "" means valid.
		wantErr string
	}{
		// ServiceEntry
		{"se ok", KindServiceEntry, "hosts: [api.example.com]\nports: [{number: 443, name: https, protocol: HTTPS}]\nresolution: DNS", ""},
		{"se hosts required", KindServiceEntry, "ports: [{number: 80, name: http}]", "spec.hosts"},
		{"se bad host", KindServiceEntry, "hosts: [api.exa_mple.com]", "spec.hosts[0]"},
		{"se star host", KindServiceEntry, "hosts: ['*']", "spec.hosts[0]"},
		{"se inner wildcard", KindServiceEntry, "hosts: ['a.*.com']", "spec.hosts[0]"},
		{"se wildcard ok", KindServiceEntry, "hosts: ['*.example.com']\nresolution: NONE", ""},
		{"se dup port number", KindServiceEntry, "hosts: [a.com]\nports: [{number: 80, name: a}, {number: 80, name: b}]", "spec.ports[1].number"},
		{"se dup port name", KindServiceEntry, "hosts: [a.com]\nports: [{number: 80, name: a}, {number: 81, name: a}]", "spec.ports[1].name"},
		{"se bad protocol", KindServiceEntry, "hosts: [a.com]\nports: [{number: 80, name: a, protocol: HTTP3}]", "spec.ports[0].protocol"},
		{"se protocol case-insensitive", KindServiceEntry, "hosts: [a.com]\nports: [{number: 80, name: a, protocol: grpc-web}]", ""},
		{"se port range", KindServiceEntry, "hosts: [a.com]\nports: [{number: 70000, name: a}]", "spec.ports[0].number"},
		{"se static needs IP", KindServiceEntry, "hosts: [a.com]\nresolution: STATIC\nendpoints: [{address: 10.0.0.1}, {address: db.internal}]", "spec.endpoints[1].address"},
		{"se static unix ok", KindServiceEntry, "hosts: [a.com]\nresolution: STATIC\nendpoints: [{address: 'unix:///var/run/a.sock'}]", ""},
		{"se bad address", KindServiceEntry, "hosts: [a.com]\naddresses: [10.0.0.0/33]", "spec.addresses[0]"},
		{"se cidr ok", KindServiceEntry, "hosts: [a.com]\naddresses: [10.0.0.0/24, 'fd00::1']", ""},
		{"se bad exportTo", KindServiceEntry, "hosts: [a.com]\nexportTo: [., Bad]", "spec.exportTo[1]"},
		{"se exportTo tilde combined", KindServiceEntry, "hosts: [a.com]\nexportTo: ['~', '.']", "spec.exportTo"},
		{"se endpoint port undeclared", KindServiceEntry, "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints: [{address: 1.2.3.4, ports: {grpc: 9090}}]", "spec.endpoints[0].ports[grpc]"},
		{"se selector and endpoints", KindServiceEntry, "hosts: [a.com]\nworkloadSelector: {labels: {app: a}}\nendpoints: [{address: 1.2.3.4}]", "spec.workloadSelector"},

		// WorkloadEntry
		{"we ok", KindWorkloadEntry, "address: 10.1.2.3\nports: {http: 8080}\nlabels: {app: a}", ""},
		{"we address required", KindWorkloadEntry, "labels: {app: a}", "spec.address"},
		{"we network without address", KindWorkloadEntry, "network: net2", ""},
		{"we port range", KindWorkloadEntry, "address: 10.1.2.3\nports: {http: 70000}", "spec.ports[http]"},
		{"we port zero", KindWorkloadEntry, "address: 10.1.2.3\nports: {http: 0}", "spec.ports[http]"},

		// WorkloadGroup
		{"wg ok", KindWorkloadGroup, "template: {ports: {http: 8080}}\nprobe: {httpGet: {path: /ready, port: 8080}}", ""},
		{"wg template required", KindWorkloadGroup, "probe: {tcpSocket: {port: 80}}", "spec.template"},
		{"wg probe needs handler", KindWorkloadGroup, "template: {}\nprobe: {periodSeconds: 5}", "spec.probe"},
		{"wg probe port", KindWorkloadGroup, "template: {}\nprobe: {tcpSocket: {port: 0}}", "spec.probe.tcpSocket.port"},

		// VirtualService
		{"vs ok single destination without weight", KindVirtualService, "hosts: [reviews]\nhttp: [{route: [{destination: {host: reviews}}]}]", ""},
		{"vs hosts required", KindVirtualService, "http: [{route: [{destination: {host: reviews}}]}]", "spec.hosts"},
		{"vs weight range", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}, weight: 101}]}]", "spec.http[0].route[0].weight"},
		{"vs weight sum", KindVirtualService, "hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r, subset: v1}, weight: 80}\n  - {destination: {host: r, subset: v2}, weight: 10}", "spec.http[0].route"},
		{"vs weight sum ok", KindVirtualService, "hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r, subset: v1}, weight: 90}\n  - {destination: {host: r, subset: v2}, weight: 10}", ""},
		{"vs route needs action", KindVirtualService, "hosts: [r]\nhttp: [{}]", "spec.http[0]"},
		{"vs destination host missing", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}]}, {route: [{destination: {subset: v1}}]}]", "spec.http[1].route[0].destination.host"},
		{"vs uri regex", KindVirtualService, "hosts: [r]\nhttp: [{match: [{uri: {regex: '(a'}}], route: [{destination: {host: r}}]}]", "spec.http[0].match[0].uri.regex"},
		{"vs header regex", KindVirtualService, "hosts: [r]\nhttp: [{match: [{headers: {x-user: {regex: 'a(?=b)'}}}], route: [{destination: {host: r}}]}]", "spec.http[0].match[0].headers[x-user].regex"},
		{"vs authority regex", KindVirtualService, "hosts: [r]\nhttp: [{match: [{authority: {regex: '[z-a]'}}], route: [{destination: {host: r}}]}]", "spec.http[0].match[0].authority.regex"},
		{"vs redirect and route", KindVirtualService, "hosts: [r]\nhttp: [{redirect: {uri: /x}, route: [{destination: {host: r}}]}]", "spec.http[0].redirect"},
		{"vs directResponse and route", KindVirtualService, "hosts: [r]\nhttp: [{directResponse: {status: 503}, route: [{destination: {host: r}}]}]", "spec.http[0].directResponse"},
		{"vs retries attempts", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: -1}}]", "spec.http[0].retries.attempts"},
		{"vs retryOn", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: 2, retryOn: '5xx,flaky'}}]", "spec.http[0].retries.retryOn"},
		{"vs retryOn codes and grpc ok", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: 2, retryOn: '503,unavailable,gateway-error', perTryTimeout: 250ms}}]", ""},
		{"vs negative timeout", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], timeout: -1s}]", "spec.http[0].timeout"},
		{"vs fault percentage", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {abort: {httpStatus: 503, percentage: {value: 150}}}}]", "spec.http[0].fault.abort.percentage.value"},
		{"vs fault status", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {abort: {httpStatus: 99}}}]", "spec.http[0].fault.abort.httpStatus"},
		{"vs mirrorPercentage", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], mirror: {host: m}, mirrorPercentage: {value: -5}}]", "spec.http[0].mirrorPercentage.value"},
		{"vs gateway ref", KindVirtualService, "hosts: [r]\ngateways: [istio-system/Bad_GW]\nhttp: [{route: [{destination: {host: r}}]}]", "spec.gateways[0]"},
		{"vs delegate name", KindVirtualService, "hosts: [r]\nhttp: [{delegate: {namespace: ns}}]", "spec.http[0].delegate.name"},
		{"vs tcp weights", KindVirtualService, "hosts: [r]\ntcp: [{route: [{destination: {host: a}, weight: 50}, {destination: {host: b}, weight: 40}]}]", "spec.tcp[0].route"},
		{"vs tls needs sniHosts", KindVirtualService, "hosts: [r]\ntls: [{match: [{port: 443}], route: [{destination: {host: r}}]}]", "spec.tls[0].match[0].sniHosts"},

		// DestinationRule
		{"dr ok", KindDestinationRule, "host: reviews\nsubsets: [{name: v1, labels: {version: v1}}]", ""},
		{"dr host required", KindDestinationRule, "subsets: [{name: v1}]", "spec.host"},
		{"dr subset name required", KindDestinationRule, "host: r\nsubsets: [{labels: {a: b}}]", "spec.subsets[0].name"},
		{"dr subset dup", KindDestinationRule, "host: r\nsubsets: [{name: v1}, {name: v1}]", "spec.subsets[1].name"},
		{"dr consistentHash key", KindDestinationRule, "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {minimumRingSize: 1024}}}", "spec.trafficPolicy.loadBalancer.consistentHash"},
		{"dr consistentHash cookie name", KindDestinationRule, "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 10s}}}}", "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name"},
		{"dr maxEjectionPercent", KindDestinationRule, "host: r\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}", "spec.trafficPolicy.outlierDetection.maxEjectionPercent"},
		{"dr subset maxEjectionPercent", KindDestinationRule, "host: r\nsubsets: [{name: v1, trafficPolicy: {outlierDetection: {maxEjectionPercent: -1}}}]", "spec.subsets[0].trafficPolicy.outlierDetection.maxEjectionPercent"},
		{"dr mutual needs key", KindDestinationRule, "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c.pem}}", "spec.trafficPolicy.tls.privateKey"},
		{"dr mutual credentialName ok", KindDestinationRule, "host: r\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: client-cred}}", ""},
		{"dr simple credentialName and files", KindDestinationRule, "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}}", "spec.trafficPolicy.tls.credentialName"},
		{"dr istio mutual with files", KindDestinationRule, "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}, tls: {mode: ISTIO_MUTUAL, privateKey: /k}}]}", "spec.trafficPolicy.portLevelSettings[0].tls.mode"},

		// Gateway
		{"gw ok", KindGateway, "selector: {istio: ingressgateway}\nservers:\n- {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['bookinfo/*.example.com'], tls: {mode: SIMPLE, credentialName: cert}}\n- {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}", ""},
		{"gw servers required", KindGateway, "selector: {istio: ingressgateway}", "spec.servers"},
		{"gw https needs tls", KindGateway, "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*']}]", "spec.servers[0].tls"},
		{"gw simple needs key", KindGateway, "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c.pem}}]", "spec.servers[0].tls.privateKey"},
		{"gw mutual needs ca", KindGateway, "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}}]", "spec.servers[0].tls.caCertificates"},
		{"gw bad host ns", KindGateway, "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['Bad/*']}]", "spec.servers[0].hosts[0]"},
		{"gw bad protocol", KindGateway, "servers: [{port: {number: 80, name: http, protocol: QUIC}, hosts: ['*']}]", "spec.servers[0].port.protocol"},

		// Sidecar
		{"sidecar ok", KindSidecar, "egress: [{hosts: ['./*', 'istio-system/*', '*/api.example.com']}]", ""},
		{"sidecar egress host needs ns", KindSidecar, "egress: [{hosts: ['./*', 'reviews.default.svc.cluster.local']}]", "spec.egress[0].hosts[1]"},
		{"sidecar egress bad ns", KindSidecar, "egress: [{hosts: ['Bad/*']}]", "spec.egress[0].hosts[0]"},

		// PeerAuthentication
		{"pa ok", KindPeerAuthentication, "mtls: {mode: STRICT}", ""},
		{"pa portLevel needs selector", KindPeerAuthentication, "mtls: {mode: STRICT}\nportLevelMtls: {8080: {mode: DISABLE}}", "spec.portLevelMtls"},
		{"pa portLevel with selector ok", KindPeerAuthentication, "selector: {matchLabels: {app: a}}\nportLevelMtls: {8080: {mode: DISABLE}}", ""},

		// AuthorizationPolicy
		{"ap custom needs provider", KindAuthorizationPolicy, "action: CUSTOM\nrules: [{to: [{operation: {paths: [/admin]}}]}]", "spec.provider.name"},
		{"ap custom ok", KindAuthorizationPolicy, "action: CUSTOM\nprovider: {name: ext-authz}\nrules: [{to: [{operation: {paths: [/admin]}}]}]", ""},
		{"ap provider without custom", KindAuthorizationPolicy, "action: ALLOW\nprovider: {name: ext-authz}", "spec.provider"},
		{"ap empty source", KindAuthorizationPolicy, "rules: [{from: [{source: {}}]}]", "spec.rules[0].from[0].source"},
		{"ap empty operation", KindAuthorizationPolicy, "rules: [{to: [{}]}]", "spec.rules[0].to[0].operation"},
		{"ap bad ipBlock", KindAuthorizationPolicy, "rules: [{from: [{source: {ipBlocks: [10.0.0.0/40]}}]}]", "spec.rules[0].from[0].source.ipBlocks[0]"},
		{"ap bad port", KindAuthorizationPolicy, "rules: [{to: [{operation: {ports: ['http']}}]}]", "spec.rules[0].to[0].operation.ports[0]"},
		{"ap when key", KindAuthorizationPolicy, "rules: [{when: [{values: [a]}]}]", "spec.rules[0].when[0].key"},

		// RequestAuthentication
		{"ra ok", KindRequestAuthentication, "jwtRules: [{issuer: https://a, jwks: '{}'}]", ""},
		{"ra issuer", KindRequestAuthentication, "jwtRules: [{jwksUri: https://a/jwks}]", "spec.jwtRules[0].issuer"},
		{"ra both keys", KindRequestAuthentication, "jwtRules: [{issuer: a, jwksUri: https://a/jwks, jwks: '{}'}]", "spec.jwtRules[0].jwks"},
		{"ra no keys", KindRequestAuthentication, "jwtRules: [{issuer: a}]", "spec.jwtRules[0].jwksUri"},
		{"ra bad uri", KindRequestAuthentication, "jwtRules: [{issuer: a, jwksUri: 'ftp://x/jwks'}]", "spec.jwtRules[0].jwksUri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := mustObject(t, tt.kind, tt.spec)
			errs := Validate(obj).Errors()
			if tt.wantErr == "" {
				if len(errs) != 0 {
					t.Fatalf("want valid, got %v", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("want exactly one error at %s, got %d: %v", tt.wantErr, len(errs), errs)
			}
			if errs[0].Field != tt.wantErr {
				t.Errorf("error field = %q, want %q (%s)", errs[0].Field, tt.wantErr, errs[0].Message)
			}
			if errs[0].Key != obj.Key() || errs[0].Origin != obj.Origin {
				t.Errorf("error key/origin = %v %+v, want %v %+v", errs[0].Key, errs[0].Origin, obj.Key(), obj.Origin)
			}
		})
	}
}

func TestValidateDenyWithoutRulesWarns(t *testing.T) {
	ds := Validate(mustObject(t, KindAuthorizationPolicy, "action: DENY"))
	var atRules Diagnostics
	for _, d := range ds {
		if d.Field == "spec.rules" {
			atRules = append(atRules, d)
		}
	}
	if ds.HasErrors() || len(atRules) != 1 || atRules[0].Severity != SeverityWarning {
		t.Fatalf("want one warning at spec.rules, got %v", ds)
	}
}

func TestValidateUnimplementedWarnings(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		spec string
		want []string
	}{
		{"vs nested list fields", KindVirtualService,
			"hosts: [r]\ntcp:\n- match: [{port: 1}, {sourceSubnet: 10.0.0.0/8}]\n  route: [{destination: {host: r}}]",
			[]string{"spec.tcp[0].match[1].sourceSubnet"}},
		{"vs delegate", KindVirtualService, "hosts: [r]\nhttp: [{delegate: {name: d}}]", []string{"spec.http[0].delegate"}},
		{"dr tunnel and subset proxyProtocol", KindDestinationRule,
			"host: r\ntrafficPolicy: {tunnel: {protocol: CONNECT, targetHost: a, targetPort: 80}}\nsubsets: [{name: v1, trafficPolicy: {proxyProtocol: {version: V1}}}]",
			[]string{"spec.subsets[0].trafficPolicy.proxyProtocol", "spec.trafficPolicy.tunnel"}},
		{"wg exec probe is implemented", KindWorkloadGroup, "template: {}\nprobe: {exec: {command: ['true']}}", nil},
		{"telemetry tracing", KindTelemetry, "tracing: [{providers: [{name: zipkin}]}]", []string{"", "spec.tracing"}},
		{"whole kind not enforced", KindGateway, "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]", []string{""}},
		{"AuthorizationPolicy is enforced", KindAuthorizationPolicy, "action: DENY\nrules: [{to: [{operation: {methods: [GET]}}]}]", nil},
		{"AuthorizationPolicy targetRefs", KindAuthorizationPolicy, "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\nrules: [{}]",
			[]string{"spec.targetRefs"}},
		{"RequestAuthentication is enforced with claim outputs", KindRequestAuthentication,
			"jwtRules: [{issuer: https://a, jwks: '{}', outputClaimToHeaders: [{header: x-sub, claim: sub}], spaceDelimitedClaims: [roles]}]", nil},
		{"PeerAuthentication is enforced", KindPeerAuthentication, "mtls: {mode: STRICT}", nil},
		{"wasm plugin", KindWasmPlugin, "url: oci://example/plugin:1\nphase: AUTHN", []string{"spec.phase", "spec.url"}},
		{"unset fields are silent", KindVirtualService, "hosts: [r]\nhttp: [{route: [{destination: {host: r}}]}]", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := Validate(mustObject(t, tt.kind, tt.spec))
			if ds.HasErrors() {
				t.Fatalf("unexpected errors: %v", ds.Errors())
			}
			ds.Sort()
			var got []string
			for _, d := range ds {
				if !strings.Contains(d.Message, "not implemented by Weft") {
					t.Errorf("unexpected warning: %v", d)
				}
				got = append(got, d.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("warnings at %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnimplementedFieldsAreRealPaths(t *testing.T) {
	// Every listed path must name real schema fields, or the table silently rots.
	for _, info := range Kinds() {
		for _, p := range UnimplementedFields(info.Kind) {
			md := info.New().ProtoReflect().Descriptor()
			parts := strings.Split(p, ".")
			for i, part := range parts {
				fd := md.Fields().ByJSONName(strings.TrimSuffix(part, "[]"))
				if fd == nil {
					t.Errorf("%s: %q: no field %q", info.Kind, p, part)
					break
				}
				marked, many := strings.HasSuffix(part, "[]"), fd.IsList() || fd.IsMap()
				if (i < len(parts)-1 && marked != many) || (marked && !many) {
					t.Errorf("%s: %q: %q list marker does not match schema", info.Kind, p, part)
				}
				if i < len(parts)-1 {
					if fd.IsMap() {
						md = fd.MapValue().Message()
					} else {
						md = fd.Message()
					}
					if md == nil {
						t.Errorf("%s: %q: %q is not a message", info.Kind, p, part)
						break
					}
				}
			}
		}
	}
	if len(UnimplementedFields(KindWasmPlugin)) == 0 {
		t.Error("WasmPlugin should list its fields as unimplemented")
	}
}
