package listener

// Envoy's http_inspector: protocol sniffing for ports whose protocol is not
// declared. weftd gives such ports a chain that matches the application
// protocols "http/1.0", "http/1.1" and "h2c" (an HCM) next to a TCP chain.

import (
	"errors"
	"net"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/runtime"
)

// Application protocols the inspector reports, as Envoy's does.
const (
	protoHTTP10 = "http/1.0"
	protoHTTP11 = "http/1.1"
	protoH2C    = "h2c"
)

// meshHTTPALPN maps a protocol sniffed inside mesh mTLS to the ALPN an
// Istio client would have announced for it (Istio's ALPN override).
var meshHTTPALPN = map[string]string{protoHTTP10: "istio-http/1.0", protoHTTP11: "istio-http/1.1", protoH2C: "istio-h2"}

// The application protocols a sniff can yield, as ConnInfo.ALPN lists:
// on plaintext connections, and inside mesh mTLS (meshHTTPALPN's values).
var (
	plaintextHTTPALPNs = [][]string{{protoHTTP11}, {protoHTTP10}, {protoH2C}}
	meshHTTPALPNs      = [][]string{{"istio-http/1.1"}, {"istio-http/1.0"}, {"istio-h2"}}
)

// protocolMatters reports whether sniffing ci could change its chain: one
// of alpns selects another chain than ci does. Only then is a connection
// sniffed, so a server-first protocol on a port with a declared protocol
// never waits for the inspector because another port of the listener is
// sniffed (Istio disables the inspector for such ports with
// filter_disabled, which weft-proxy does not read).
func protocolMatters(l *runtime.Listener, ci runtime.ConnInfo, alpns [][]string) bool {
	base := l.FilterChainFor(ci)
	for _, a := range alpns {
		ci.ALPN = a
		if l.FilterChainFor(ci) != base {
			return true
		}
	}
	return false
}

// maxSniff bounds how many bytes the inspector reads looking for the end of
// a request line; a longer line is not taken for HTTP.
const maxSniff = maxClientHello

// classifyHTTP decides from a connection's first bytes whether it speaks
// HTTP: "h2c" for the HTTP/2 preface, "http/1.1" or "http/1.0" for a
// request line (METHOD SP target SP HTTP/1.x CRLF), "" for anything else.
// done is false while b is a prefix of something HTTP: more bytes decide.
func classifyHTTP(b []byte) (proto string, done bool) {
	if len(b) >= h2.PrefaceLen && h2.IsPreface(b[:h2.PrefaceLen]) {
		return protoH2C, true
	}
	if prefixOfPreface(b) {
		return "", false // "P", "PR", ...: PRI (h2) or a method such as PUT
	}
	i := 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
	}
	switch {
	case i == len(b):
		return "", false
	case i == 0 || b[i] != ' ':
		return "", true
	}
	i++
	start := i
	for i < len(b) && b[i] > ' ' && b[i] != 0x7f {
		i++
	}
	switch {
	case i == len(b):
		return "", false
	case i == start || b[i] != ' ':
		return "", true
	}
	rest := b[i+1:]
	const version = "HTTP/1."
	if n := min(len(rest), len(version)); string(rest[:n]) != version[:n] {
		return "", true
	}
	if len(rest) <= len(version) {
		return "", false
	}
	switch rest[len(version)] {
	case '0':
		proto = protoHTTP10
	case '1':
		proto = protoHTTP11
	default:
		return "", true
	}
	if len(rest) == len(version)+1 {
		return "", false
	}
	if c := rest[len(version)+1]; c == '\r' || c == '\n' {
		return proto, true
	}
	return "", true
}

// isTokenChar reports whether c may appear in an HTTP method (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// inspectHTTP is Envoy's http_inspector on a plaintext connection: without
// consuming anything it peeks until classifyHTTP decides and sets
// ci.ALPN to the protocol found. A client that sends nothing (or too
// little) before the deadline, a server-first protocol for instance, gets
// no application protocol and so the TCP chain. ok is false when the
// connection failed before sending anything.
func inspectHTTP(c net.Conn, ci runtime.ConnInfo, deadline time.Time) (net.Conn, runtime.ConnInfo, bool) {
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	p, c := newPeeker(c, deadline)
	want := 1
	for {
		b, err := p.peek(want)
		if proto, done := classifyHTTP(b); done || len(b) >= maxSniff {
			if proto != "" {
				ci.ALPN = []string{proto}
			}
			return c, ci, true
		}
		if err != nil {
			var ne net.Error
			return c, ci, len(b) > 0 || errors.As(err, &ne) && ne.Timeout()
		}
		want = len(b) + 1
	}
}

// sniffHTTP classifies the decrypted stream of a mesh mTLS connection like
// inspectHTTP does for plaintext ones; the bytes read are kept for Read.
// The result is remembered: later sniffs (the h2 preface check) reuse it.
func (c *PeerConn) sniffHTTP(deadline time.Time) string {
	if c.sniffed {
		return c.appProto
	}
	c.sniffed = true
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 512)
	for {
		if proto, done := classifyHTTP(buf); done || len(buf) >= maxSniff {
			c.appProto = proto
			break
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			c.appProto, _ = classifyHTTP(buf) // "" unless complete
			break
		}
	}
	c.pending = append(c.pending, buf...)
	return c.appProto
}
