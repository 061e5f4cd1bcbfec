// Package h2 is weft-proxy's HTTP/2 data path: it serves h2c
// (prior-knowledge) and TLS-ALPN "h2" connections with
// golang.org/x/net/http2, asks the same kind of Router as the HTTP/1.1
// engine (it returns an h1.Decision) where each stream goes, and proxies the
// stream full-duplex over a multiplexed upstream HTTP/2 connection Pool.
//
// gRPC is a first-class citizen: trailers (grpc-status, grpc-message) are
// relayed, bidirectional streams flow both ways at once, and answers the
// proxy makes itself (local Router answers, timeouts, upstream failures) are
// turned into trailers-only gRPC responses, as Envoy does.
//
// Unlike h1 this path allocates per stream (net/http request and header
// maps): multiplexing and protocol correctness matter more here than
// per-request cost; see README.md for the measured numbers.
package h2

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"unsafe"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// HTTP2 is the h1.Proto value a Request reports. h1.Proto.String does not
// know it yet (it prints "HTTP/1.1"); Request.Proto().String is not used on
// the routing path.
const HTTP2 h1.Proto = 20

// PrefaceLen is the length of the HTTP/2 client connection preface; a
// listener sniffing for h2c must peek this many bytes.
const PrefaceLen = len(preface)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// IsPreface reports whether b starts with the HTTP/2 client connection
// preface (prior-knowledge h2c). It needs at least PrefaceLen bytes.
func IsPreface(b []byte) bool {
	return len(b) >= len(preface) && string(b[:len(preface)]) == preface
}

// Router decides, per stream, where it goes or what to answer locally. It
// is the h2 twin of h1.Router and returns the same h1.Decision, so one
// implementation can serve both engines (see README.md for the adapter).
// Route is called on the stream's goroutine, concurrently for the streams of
// one connection; it must not retain req or its views after returning.
type Router interface {
	Route(req *Request) h1.Decision
}

// RouterFunc adapts a function to Router.
type RouterFunc func(req *Request) h1.Decision

// Route implements Router.
func (f RouterFunc) Route(req *Request) h1.Decision { return f(req) }

// Observer receives per-stream lifecycle hooks for telemetry, on the
// stream's goroutine. req's views are valid only during the call;
// Request.GRPCStatus is set by the time RequestEnd runs.
type Observer interface {
	RequestStart(req *Request)
	RequestEnd(req *Request, s h1.Summary)
}

// Request is a read-only view of one HTTP/2 request stream with the same
// accessors as *h1.Request. The byte slices alias strings owned by net/http
// and must not be modified or retained.
type Request struct {
	hr         *http.Request
	method     []byte
	path       []byte
	query      []byte
	target     []byte
	host       []byte
	remote     net.Addr
	conn       net.Conn
	grpc       bool
	grpcStatus int
}

func newRequest(r *http.Request, remote net.Addr, conn net.Conn) *Request {
	req := &Request{
		hr:         r,
		method:     view(r.Method),
		target:     view(r.RequestURI),
		host:       view(r.Host),
		remote:     remote,
		conn:       conn,
		grpcStatus: -1,
	}
	t := req.target
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		req.path, req.query = t[:i], t[i+1:]
	} else {
		req.path = t
	}
	req.grpc = isGRPC(r.Header.Get("Content-Type"))
	return req
}

// view returns s's bytes without copying. Callers must treat them as
// read-only: the Router contract already forbids modifying request views.
func view(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// Method returns the request method (":method").
func (r *Request) Method() []byte { return r.method }

// Path returns the request path without the query.
func (r *Request) Path() []byte { return r.path }

// RawQuery returns the query without the leading '?', or nil.
func (r *Request) RawQuery() []byte { return r.query }

// Target returns the raw ":path" pseudo-header.
func (r *Request) Target() []byte { return r.target }

// Host returns the ":authority" (or Host) of the request.
func (r *Request) Host() []byte { return r.host }

// Proto returns HTTP2.
func (r *Request) Proto() h1.Proto { return HTTP2 }

// RemoteAddr returns the client address.
func (r *Request) RemoteAddr() net.Addr { return r.remote }

// Conn returns the client connection the stream belongs to, for inspection
// only (its peer identity, for authorization).
func (r *Request) Conn() net.Conn { return r.conn }

// IsConnect reports a CONNECT request. HTTP/2 CONNECT is not proxied (it is
// answered 501), so this is always false for routed requests.
func (r *Request) IsConnect() bool { return r.hr.Method == http.MethodConnect }

// ContentLength returns the declared body length, -1 if unknown.
func (r *Request) ContentLength() int64 { return r.hr.ContentLength }

// IsGRPC reports a gRPC request (content-type application/grpc[+...]).
func (r *Request) IsGRPC() bool { return r.grpc }

// GRPCStatus returns the grpc-status sent to the client, -1 if none (not
// gRPC, or the stream is still running). Valid in Observer.RequestEnd.
func (r *Request) GRPCStatus() int { return r.grpcStatus }

// Header returns the first field named name (ASCII case-insensitive). The
// pseudo-headers ":authority", ":method", ":path" and ":scheme" are
// answered too, as Envoy's header matchers expect.
func (r *Request) Header(name string) ([]byte, bool) {
	if len(name) > 0 && name[0] == ':' {
		switch name {
		case ":authority":
			return r.host, true
		case ":method":
			return r.method, true
		case ":path":
			return r.target, true
		case ":scheme":
			if r.hr.TLS != nil {
				return view("https"), true
			}
			return view("http"), true
		}
		return nil, false
	}
	// Iterating beats canonicalising name, which allocates for the
	// lower-case names routers use.
	for k, vs := range r.hr.Header {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			return view(vs[0]), true
		}
	}
	if strings.EqualFold(name, "host") {
		return r.host, true
	}
	return nil, false
}

// VisitHeaders calls fn for every header field (names in canonical form,
// order unspecified: net/http keeps them in a map).
func (r *Request) VisitHeaders(fn func(name, value []byte)) {
	for k, vs := range r.hr.Header {
		for _, v := range vs {
			fn(view(k), view(v))
		}
	}
}

func isGRPC(ct string) bool {
	const g = "application/grpc"
	if !strings.HasPrefix(ct, g) {
		return false
	}
	return len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';'
}
