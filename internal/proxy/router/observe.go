package router

import (
	"encoding/hex"
	"time"

	"github.com/weftmesh/weft/internal/proxy/accesslog"
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
	"github.com/weftmesh/weft/internal/proxy/tracing"
)

// Access log and tracing: both optional, both off the zero-allocation path
// when disabled (one nil check each).

// traceState is one request's span while it is in flight.
type traceState struct {
	on      bool // a span is being recorded or a context propagated
	sampled bool
	b3      bool
	ctx     tracing.Context
	id      tracing.SpanID
	tp      []byte // traceparent value sent upstream
	b3span  []byte
	b3par   []byte
}

var (
	hdrTraceparent  = []byte("traceparent")
	hdrB3SpanID     = []byte("x-b3-spanid")
	hdrB3ParentSpan = []byte("x-b3-parentspanid")
	hdrB3Sampled    = []byte("x-b3-sampled")
	b3One, b3Zero   = []byte("1"), []byte("0")
)

// traceStart continues the caller's trace or starts one, and decides
// sampling: the caller's decision wins, else the tracer's rate.
func (r *Router) traceStart(req Request, st *reqState) {
	ts := &st.trace
	c, ok := tracing.Extract(req.Header)
	if !ok {
		c = tracing.Context{Trace: tracing.NewTraceID()}
	}
	ts.on, ts.ctx, ts.b3 = true, c, c.B3
	ts.sampled = c.Sampled
	if !c.Decided {
		ts.sampled = r.tracer.Sample()
	}
	ts.id = tracing.NewSpanID()
}

// traceInject makes the proxy's span the upstream's parent: traceparent
// always (W3C), and the B3 span headers when the caller spoke B3.
func traceInject(st *reqState, d *h1.Decision) {
	ts := &st.trace
	ts.tp = tracing.AppendTraceparent(ts.tp[:0], ts.ctx.Trace, ts.id, ts.sampled)
	hs := append(st.setReq[:0], d.SetRequestHeaders...)
	hs = append(hs, h1.Header{Name: hdrTraceparent, Value: ts.tp})
	if ts.b3 {
		ts.b3span = hex.AppendEncode(ts.b3span[:0], ts.id[:])
		hs = append(hs, h1.Header{Name: hdrB3SpanID, Value: ts.b3span})
		if !ts.ctx.Parent.IsZero() {
			ts.b3par = hex.AppendEncode(ts.b3par[:0], ts.ctx.Parent[:])
			hs = append(hs, h1.Header{Name: hdrB3ParentSpan, Value: ts.b3par})
		}
		s := b3Zero
		if ts.sampled {
			s = b3One
		}
		hs = append(hs, h1.Header{Name: hdrB3Sampled, Value: s})
	}
	st.setReq = hs
	d.SetRequestHeaders = hs
}

type protoer interface{ Proto() h1.Proto }

func protoName(req Request) string {
	p, ok := req.(protoer)
	if !ok {
		return ""
	}
	switch p.Proto() {
	case h1.HTTP10:
		return "HTTP/1.0"
	case h1.HTTP11:
		return "HTTP/1.1"
	}
	return "HTTP/2"
}

// observeEnd writes the access log line and records the span of a
// finished request; it runs before finish resets st.
func (r *Router) observeEnd(req Request, st *reqState, s h1.Summary) {
	flag := st.flag
	if flag == telemetry.FlagNone && s.Err != nil {
		flag = flagFor(s.Status, s.Err)
	}
	end := time.Now()
	start := end.Add(-s.Duration)
	cluster := ""
	if st.cluster != nil {
		cluster = st.cluster.Name
	}
	if r.alog != nil {
		e := accesslog.Entry{
			Start: start, Duration: s.Duration, Method: req.Method(), Path: pathAndQuery(req, st),
			Protocol: protoName(req), Authority: req.Host(), Status: s.Status, Flags: flag.String(),
			BytesReceived: s.BytesIn, BytesSent: s.BytesOut, Upstream: s.Upstream, UpstreamCluster: cluster,
			Attempts: s.Attempts, Reporter: r.reporter.String(),
		}
		if ra := req.RemoteAddr(); ra != nil {
			e.Downstream = ra.String()
		}
		e.UserAgent, _ = req.Header("user-agent")
		e.RequestID, _ = req.Header("x-request-id")
		e.ForwardedFor, _ = req.Header("x-forwarded-for")
		if st.trace.on {
			e.Traceparent = st.trace.tp
		}
		if e.Traceparent == nil {
			e.Traceparent, _ = req.Header("traceparent")
		}
		r.alog.Log(&e)
	}
	if ts := &st.trace; ts.on && ts.sampled {
		sp := tracing.Span{
			Trace: ts.ctx.Trace, ID: ts.id, Parent: ts.ctx.Parent,
			Start: start, End: end, Server: r.reporter == telemetry.Destination,
			Method: string(req.Method()), URL: string(req.Path()), Host: string(req.Host()),
			Status: s.Status, Flags: flag.String(), Cluster: cluster, Upstream: s.Upstream,
			Protocol: protoName(req), Error: s.Err != nil,
		}
		sp.Name = sp.Host + sp.URL
		if ra := req.RemoteAddr(); ra != nil {
			sp.Peer = ra.String()
		}
		r.tracer.Record(sp)
	}
	st.trace.on = false
}

// pathAndQuery returns the request target's path and query for the log.
func pathAndQuery(req Request, st *reqState) []byte {
	q := req.RawQuery()
	if len(q) == 0 {
		return req.Path()
	}
	st.logPath = append(append(append(st.logPath[:0], req.Path()...), '?'), q...)
	return st.logPath
}
