// Package h1 is weft-proxy's HTTP/1.1 data-path engine: it serves accepted
// connections, parses requests into zero-copy views over a per-connection
// buffer, asks a Router where each request goes, and forwards it over a
// keep-alive upstream Pool with RFC 9112 framing checks in both directions.
//
// The happy path (keep-alive client, keep-alive upstream, Content-Length or
// chunked bodies) performs no heap allocation per request: buffers belong to
// the connection and are recycled through sync.Pools, header views are slices
// of the read buffer, and routing decisions are returned by value.
//
// Views handed out by Request (Method, Path, Header, ...) are valid only until
// the Router / Observer call returns; copy them to keep them.
package h1

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// Header is one header field as byte-slice views. In a Request the slices
// alias the connection's read buffer; in a Decision they are owned by the
// Router and must not be modified while requests may use them.
type Header struct {
	Name, Value []byte
}

// Proto is the HTTP version of a request.
type Proto uint8

// Supported protocol versions.
const (
	HTTP10 Proto = 10
	HTTP11 Proto = 11
)

func (p Proto) String() string {
	if p == HTTP10 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// Router decides, per request, where it goes or what to answer locally.
// It is called on the connection's goroutine and must not block for long or
// retain the Request or any of its views after returning.
type Router interface {
	Route(req *Request) Decision
}

// RouterFunc adapts a function to Router.
type RouterFunc func(req *Request) Decision

// Route implements Router.
func (f RouterFunc) Route(req *Request) Decision { return f(req) }

// Decision is a Router's answer for one request.
type Decision struct {
	// Upstream is the "ip:port" to forward to. Ignored when Status != 0.
	Upstream string
	// Status, when non-zero, answers locally with this status and Body, e.g.
	// 404 no route, 503 no healthy upstream, 403 denied. Reason is sent as
	// the x-weft-reason response header so operators can tell why.
	Status int
	Body   []byte
	Reason string
	// Timeout bounds the whole exchange (request body, upstream response
	// head and body). Expiry before the response head is sent answers 504.
	// Zero uses Config.RequestTimeout.
	Timeout time.Duration

	// HostRewrite replaces the Host header; PathRewrite replaces the path
	// (the query is kept). Nil leaves them unchanged.
	HostRewrite []byte
	PathRewrite []byte

	// Request header mutations, applied in order Remove, Set, Add. Set
	// replaces every existing field with that name.
	SetRequestHeaders    []Header
	AddRequestHeaders    []Header
	RemoveRequestHeaders [][]byte

	// Response header mutations, same semantics.
	SetResponseHeaders    []Header
	AddResponseHeaders    []Header
	RemoveResponseHeaders [][]byte

	// Done, if set, is called once the exchange ends with the status sent to
	// the client (0 if none was sent) and the upstream error, if any. It feeds
	// load balancing / outlier detection. Prefer State + Observer: a closure
	// here allocates per request.
	Done func(status int, err error)

	// State is opaque per-request Router state handed back unchanged in
	// Summary.State, so a Router that is also the Observer can finish what
	// it started without a lookup table. Store a pooled pointer: a pointer
	// in an interface does not allocate.
	State any

	// Delay holds the request for this long before it is forwarded (fault
	// injection). The wait counts against Timeout; a client that goes away
	// meanwhile ends the exchange.
	Delay time.Duration

	// Retry, when set, is asked after a failed attempt whether to try again
	// (see Retrier). It is consulted only while the request is replayable:
	// no body or a Content-Length body of at most Config.MaxRetryBody bytes,
	// not an upgrade, and no response byte has reached the client.
	Retry Retrier
	// PerTryTimeout bounds each attempt (connect, request, response) when
	// non-zero; expiry is reported to Retry as ErrPerTryTimeout and, when
	// not retried, answered 504.
	PerTryTimeout time.Duration

	// UpstreamTLS is an opaque transport identity (e.g. a TLS context key)
	// passed to PoolConfig.Dial; pooled connections are keyed by
	// (Upstream, UpstreamTLS). Empty means plain TCP.
	UpstreamTLS string

	// UpstreamProtocol is the HTTP version spoken upstream; the zero
	// value keeps the client's. HTTP/2 for a request that arrived as
	// HTTP/1.1 goes through Config.H2Upstream (bodies up to MaxRetryBody).
	UpstreamProtocol UpstreamProtocol

	// Mirrors are shadow destinations (request_mirror_policies): a copy
	// of the request as sent upstream, with "-shadow" appended to its
	// host, goes to each through Config.Mirrorer, and the answers are
	// discarded. Only requests whose body is already buffered (or empty)
	// are mirrored; others are counted as skipped by the Mirrorer.
	Mirrors []Mirror

	// Tunnel hands a CONNECT request to Config.TunnelHandler (the engine
	// answers 501 when there is none). The connection belongs to the
	// handler from then on. CONNECT without Tunnel (and without a local
	// Status) is answered 501.
	Tunnel bool
}

// UpstreamProtocol selects the HTTP version used towards the upstream.
type UpstreamProtocol uint8

// Upstream protocols.
const (
	UpstreamSameAsClient UpstreamProtocol = iota // use_downstream_protocol, passthrough
	UpstreamHTTP1
	UpstreamHTTP2
)

// H2Upstream carries requests to HTTP/2 upstreams (an h2.Pool).
type H2Upstream interface {
	RoundTrip(req *http.Request, upstream, tlsKey string) (*http.Response, error)
}

// Mirror is one shadow destination of a request.
type Mirror struct {
	Upstream    string // host:port
	UpstreamTLS string // as Decision.UpstreamTLS
}

// Mirrorer sends shadow copies of requests. Mirror is called on the
// connection goroutine and must not block: it copies what it needs (head
// and body are only valid during the call) and sends asynchronously.
// head is a complete HTTP/1.1 request head as it would go upstream, with
// the shadow host; body is nil when the request had no body, and
// unbuffered is true when the request had a body the engine could not
// hand over whole (streamed), so it was not mirrored.
type Mirrorer interface {
	Mirror(head, body []byte, unbuffered bool, targets []Mirror)
}

// Retrier decides retries for one request. Retry is called on the
// connection goroutine after attempt number attempt (1-based) ended with an
// upstream response status (0 if none: then err is set, see ErrConnectFailure,
// ErrPerTryTimeout). A final response is offered only when its status is
// >= 500 or one of Envoy's retriable 4xx-or-configured codes would apply,
// i.e. any status >= 400. It returns the upstream for the next attempt and
// the back-off to wait first, or ok=false to relay/answer this outcome.
type Retrier interface {
	Retry(attempt, status int, err error) (upstream string, backoff time.Duration, ok bool)
}

// TLSRetrier is a Retrier whose attempts may need different transports:
// endpoints of one cluster can differ in upstream TLS (Istio's auto mTLS
// while workloads migrate). After Retry returned ok, the engine takes the
// next attempt's Decision.UpstreamTLS from UpstreamTLS.
type TLSRetrier interface {
	Retrier
	UpstreamTLS() string
}

// Upstream failure classes reported to Retry and in Summary.Err (test with
// errors.Is).
var (
	// ErrConnectFailure: the upstream connection could not be established
	// (refused, unreachable, connect timeout). Answered 503
	// upstream_connect_failure (Envoy's UF).
	ErrConnectFailure = errors.New("h1: upstream connect failure")
	// ErrPerTryTimeout: Decision.PerTryTimeout expired before the response.
	ErrPerTryTimeout = errors.New("h1: upstream per-try timeout")
)

// TunnelHandler serves a CONNECT request the Router marked Tunnel. It owns
// c until it returns (the engine then closes c). rest holds bytes the client
// sent after the request head; like req's views it is only valid during the
// call. The handler writes the CONNECT response itself.
type TunnelHandler func(c net.Conn, req *Request, rest []byte)

// Summary describes one finished exchange for an Observer.
type Summary struct {
	Status   int           // status sent to the client, 0 if none
	BytesIn  int64         // request body bytes read from the client
	BytesOut int64         // response body bytes written to the client
	Duration time.Duration // from request head parsed to response done
	Upstream string        // Decision.Upstream, empty for local answers
	Err      error         // upstream / client error, nil on success
	Attempts int           // upstream attempts made (retries + 1), 0 for local answers
	State    any           // Decision.State
}

// Observer receives allocation-free lifecycle hooks for telemetry. Both
// methods run on the connection goroutine; the Request views are valid only
// during the call.
type Observer interface {
	RequestStart(req *Request)
	RequestEnd(req *Request, s Summary)
}

// Request is a parsed request head. All byte slices alias the connection's
// read buffer.
type Request struct {
	method, target, path, query, host []byte
	proto                             Proto
	headers                           []Header
	remote                            net.Addr
	conn                              net.Conn

	contentLength  int64 // -1: none
	chunked        bool
	closeAfter     bool // client asked to close / HTTP/1.0 without keep-alive
	expectContinue bool
	upgrade        bool // Connection: upgrade + Upgrade present
	connect        bool // CONNECT authority-form request

	parser reqParser
}

// Method returns the request method, e.g. "GET".
func (r *Request) Method() []byte { return r.method }

// Path returns the request path without the query.
func (r *Request) Path() []byte { return r.path }

// RawQuery returns the query without the leading '?', or nil.
func (r *Request) RawQuery() []byte { return r.query }

// Target returns the raw request-target.
func (r *Request) Target() []byte { return r.target }

// Host returns the Host header (or the authority of an absolute-form target).
func (r *Request) Host() []byte { return r.host }

// Proto returns the request's HTTP version.
func (r *Request) Proto() Proto { return r.proto }

// RemoteAddr returns the client address.
func (r *Request) RemoteAddr() net.Addr { return r.remote }

// Conn returns the client connection the request arrived on, e.g. a
// connection the proxy terminated mTLS on, whose peer identity authorization
// reads. Only for inspection: reading or writing it would corrupt the exchange.
func (r *Request) Conn() net.Conn { return r.conn }

// IsConnect reports a CONNECT request; Host then returns its authority.
func (r *Request) IsConnect() bool { return r.connect }

// ContentLength returns the declared body length, -1 if chunked or absent.
func (r *Request) ContentLength() int64 { return r.contentLength }

// Header returns the first field named name (ASCII case-insensitive).
func (r *Request) Header(name string) ([]byte, bool) {
	for i := range r.headers {
		if equalFold(r.headers[i].Name, name) {
			return r.headers[i].Value, true
		}
	}
	return nil, false
}

// VisitHeaders calls fn for every header field in order.
func (r *Request) VisitHeaders(fn func(name, value []byte)) {
	for i := range r.headers {
		fn(r.headers[i].Name, r.headers[i].Value)
	}
}

func (r *Request) reset() {
	h, remote, conn := r.headers[:0], r.remote, r.conn
	*r = Request{headers: h, remote: remote, conn: conn, contentLength: -1}
}

// equalFold reports whether b equals s ignoring ASCII case.
func equalFold(b []byte, s string) bool { return asciiEqualFold(b, s) }

func equalFoldBytes(a, b []byte) bool { return asciiEqualFold(a, b) }

// asciiEqualFold compares ASCII case-insensitively without converting
// (no allocation) for any mix of strings and byte slices.
func asciiEqualFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c, d := a[i], b[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
