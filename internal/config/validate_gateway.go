package config

import (
	"strings"

	networkingv1 "istio.io/api/networking/v1"
)

func (v *validator) gateway(gw *networkingv1.Gateway) {
	if len(gw.Servers) == 0 {
		v.errf("spec.servers", "at least one server is required")
	}
	v.labels("spec.selector", gw.Selector)
	names := map[string]int{}
	for i, s := range gw.Servers {
		f := idx("spec.servers", i)
		if s.Name != "" {
			if j, dup := names[s.Name]; dup {
				v.errf(f+".name", "server name %q is already used by spec.servers[%d]", s.Name, j)
			}
			names[s.Name] = i
		}
		if s.Port == nil {
			v.errf(f+".port", "port is required")
		} else {
			v.port(f+".port.number", s.Port.Number, true)
			if !validProtocol(s.Port.Protocol) {
				v.errf(f+".port.protocol", "unknown protocol %q; want one of %s", s.Port.Protocol, strings.Join(validProtocols, ", "))
			}
		}
		if len(s.Hosts) == 0 {
			v.errf(f+".hosts", "at least one host is required")
		}
		for j, h := range s.Hosts {
			// Gateway hosts may be "namespace/host"; a bare host means "*/host".
			hf := idx(f+".hosts", j)
			if ns, host, ok := strings.Cut(h, "/"); ok {
				if ns != "*" && ns != "." && dns1123Label(ns) != "" {
					v.errf(hf, "invalid namespace %q in %q", ns, h)
				}
				h = host
			}
			v.host(hf, h, true)
		}
		v.serverTLS(f, s)
	}
}

// serverTLS applies Istio's rules: an HTTPS or TLS server terminating TLS
// needs a certificate, either by credentialName(s) or by file paths.
func (v *validator) serverTLS(f string, s *networkingv1.Server) {
	proto := ""
	if s.Port != nil {
		proto = strings.ToUpper(s.Port.Protocol)
	}
	tls := s.Tls
	if tls == nil {
		if proto == "HTTPS" {
			v.errf(f+".tls", "an HTTPS server needs tls settings")
		}
		return
	}
	switch tls.Mode {
	case networkingv1.ServerTLSSettings_SIMPLE, networkingv1.ServerTLSSettings_MUTUAL, networkingv1.ServerTLSSettings_OPTIONAL_MUTUAL:
		if tls.HttpsRedirect && proto == "HTTP" {
			return // only a redirect; the HTTP server terminates nothing
		}
		byName := tls.CredentialName != "" || len(tls.CredentialNames) > 0
		byFile := tls.ServerCertificate != "" || tls.PrivateKey != "" || len(tls.TlsCertificates) > 0
		switch {
		case byName && byFile:
			v.errf(f+".tls.credentialName", "credentialName cannot be combined with serverCertificate, privateKey or tlsCertificates")
		case !byName && len(tls.TlsCertificates) == 0:
			if tls.ServerCertificate == "" {
				v.errf(f+".tls.serverCertificate", "mode %s needs credentialName or serverCertificate and privateKey", tls.Mode)
			}
			if tls.PrivateKey == "" {
				v.errf(f+".tls.privateKey", "mode %s needs credentialName or serverCertificate and privateKey", tls.Mode)
			}
		}
		if tls.Mode != networkingv1.ServerTLSSettings_SIMPLE && !byName && tls.CaCertificates == "" {
			v.errf(f+".tls.caCertificates", "mode %s needs caCertificates to verify clients (or credentialName)", tls.Mode)
		}
	}
}
