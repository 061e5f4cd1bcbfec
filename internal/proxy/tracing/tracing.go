// Package tracing gives weft-proxy distributed tracing: it continues the
// caller's trace (W3C traceparent, else B3) or starts one, records one span
// per request the proxy handles, hands the upstream the proxy's span as the
// new parent (traceparent, and the B3 headers when the caller used B3), and
// exports sampled spans in batches over OTLP/HTTP (JSON encoding, POST to
// a collector's /v1/traces).
//
// The exporter is written against the OTLP wire format directly instead of
// linking the OpenTelemetry SDK: weft-proxy stays lean, and a span here is
// a fixed struct filled on the request path, not an API object.
package tracing

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"
)

// TraceID and SpanID are W3C trace-context identifiers.
type (
	TraceID [16]byte
	SpanID  [8]byte
)

// IsZero reports an invalid (all-zero) id.
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports an invalid (all-zero) id.
func (s SpanID) IsZero() bool { return s == SpanID{} }

// Context is the trace context a request arrived with.
type Context struct {
	Trace   TraceID
	Parent  SpanID // zero: the proxy's span is the root
	Sampled bool
	// Decided is true when the caller decided sampling (traceparent
	// flags or x-b3-sampled); otherwise the proxy's sampling rate applies.
	Decided bool
	B3      bool // the caller used B3 headers
}

// HeaderFunc looks a request header up by lower-case name.
type HeaderFunc func(name string) ([]byte, bool)

// Extract reads the caller's trace context: traceparent first (W3C), then
// B3 multi-header (x-b3-traceid / x-b3-spanid / x-b3-sampled) and B3 single
// (b3). ok is false when there is none or it is malformed (a malformed
// header starts a new trace, as the W3C spec asks).
func Extract(h HeaderFunc) (c Context, ok bool) {
	if v, found := h("traceparent"); found {
		return parseTraceparent(v)
	}
	if tid, found := h("x-b3-traceid"); found {
		c.B3 = true
		if !decodeTraceID(tid, &c.Trace) {
			return Context{}, false
		}
		if sid, found := h("x-b3-spanid"); found && !decodeHex(sid, c.Parent[:]) {
			return Context{}, false
		}
		if s, found := h("x-b3-sampled"); found && len(s) == 1 {
			c.Decided, c.Sampled = true, s[0] == '1'
		}
		if f, found := h("x-b3-flags"); found && string(f) == "1" {
			c.Decided, c.Sampled = true, true // debug
		}
		return c, true
	}
	if v, found := h("b3"); found {
		return parseB3Single(v)
	}
	return Context{}, false
}

// parseTraceparent parses version 00 "00-<32 hex>-<16 hex>-<2 hex>"
// (future versions: the same prefix, extra fields ignored).
func parseTraceparent(v []byte) (Context, bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return Context{}, false
	}
	if string(v[:2]) == "ff" || (string(v[:2]) == "00" && len(v) != 55) {
		return Context{}, false
	}
	var c Context
	var flags [1]byte
	if !decodeHex(v[3:35], c.Trace[:]) || !decodeHex(v[36:52], c.Parent[:]) || !decodeHex(v[53:55], flags[:]) {
		return Context{}, false
	}
	if c.Trace.IsZero() || c.Parent.IsZero() {
		return Context{}, false
	}
	c.Decided, c.Sampled = true, flags[0]&1 == 1
	return c, true
}

// parseB3Single parses "traceid-spanid[-sampled[-parent]]" or a bare
// sampling decision ("0", "1", "d").
func parseB3Single(v []byte) (Context, bool) {
	c := Context{B3: true}
	if len(v) == 1 {
		return Context{}, false // decision only: nothing to continue
	}
	parts := splitDash(v)
	if len(parts) < 2 || !decodeTraceID(parts[0], &c.Trace) || !decodeHex(parts[1], c.Parent[:]) {
		return Context{}, false
	}
	if len(parts) >= 3 && len(parts[2]) == 1 {
		c.Decided, c.Sampled = true, parts[2][0] == '1' || parts[2][0] == 'd'
	}
	return c, true
}

func splitDash(v []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, b := range v {
		if b == '-' {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// decodeTraceID accepts 16 or 32 hex digits (B3 allows 64-bit trace ids).
func decodeTraceID(v []byte, t *TraceID) bool {
	switch len(v) {
	case 32:
		return decodeHex(v, t[:])
	case 16:
		*t = TraceID{}
		return decodeHex(v, t[8:])
	}
	return false
}

func decodeHex(src, dst []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := unhex(src[2*i])
		lo, ok2 := unhex(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// AppendTraceparent appends the traceparent value naming span as parent.
func AppendTraceparent(b []byte, t TraceID, span SpanID, sampled bool) []byte {
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, t[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, span[:])
	if sampled {
		return append(b, "-01"...)
	}
	return append(b, "-00"...)
}

// NewSpanID returns a random non-zero span id. math/rand/v2's global
// source is safe for concurrent use and randomly seeded per process; ids
// need uniqueness, not secrecy.
func NewSpanID() SpanID {
	var s SpanID
	for s.IsZero() {
		binary.LittleEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

// NewTraceID returns a random non-zero trace id.
func NewTraceID() TraceID {
	var t TraceID
	for t.IsZero() {
		binary.LittleEndian.PutUint64(t[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

// Span is one finished request as the proxy saw it.
type Span struct {
	Trace    TraceID
	ID       SpanID
	Parent   SpanID
	Name     string // e.g. "reviews.default.svc.cluster.local:9080/*"
	Start    time.Time
	End      time.Time
	Server   bool // inbound (SPAN_KIND_SERVER) vs outbound (CLIENT)
	Method   string
	URL      string // path and query
	Host     string
	Status   int
	Flags    string // Envoy response flags, "-" for none
	Cluster  string
	Upstream string
	Peer     string // downstream address
	Protocol string
	Error    bool
}
