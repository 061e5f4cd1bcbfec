package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// Reasons for answers the engine makes itself; the same words as h1 so
// telemetry and operators see one vocabulary.
const (
	reasonConnectFailure = "upstream_connect_failure"
	reasonOverflow       = "upstream_overflow"
	reasonReset          = "upstream_reset"
	reasonTimeout        = "upstream_timeout"
	reasonPerTryTimeout  = "upstream_per_try_timeout"
	reasonConnect        = "connect_unsupported"
)

// errTimeout is the cancel cause of a stream whose Decision.Timeout expired.
var errTimeout = errors.New("h2: request timeout")

// stream is one proxied request's state.
type stream struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	req *Request
	d   h1.Decision
	sum h1.Summary

	ctx      context.Context // ends at Timeout, client reset or handler return
	bytesIn  atomic.Int64    // written by the upstream transport's goroutine
	deadline time.Time       // zero: none
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, remote net.Addr, conn net.Conn) {
	start := time.Now()
	st := &stream{s: s, w: w, r: r, req: newRequest(r, remote, conn)}
	if o := s.cfg.Observer; o != nil {
		o.RequestStart(st.req)
	}
	st.d = s.cfg.Router.Route(st.req)
	st.sum.State = st.d.State
	defer st.finish(start)

	switch {
	case st.d.Status != 0:
		st.local(st.d.Status, st.d.Reason, st.d.Body)
		return
	case r.Method == http.MethodConnect:
		st.local(http.StatusNotImplemented, reasonConnect, nil)
		return
	}
	st.sum.Upstream = st.d.Upstream

	timeout := st.d.Timeout
	if timeout == 0 {
		timeout = s.cfg.RequestTimeout
	}
	// Istio routes carry max_grpc_timeout 0: the client's grpc-timeout
	// bounds the stream too. Enforcing it here also answers
	// DEADLINE_EXCEEDED when the upstream resets at that deadline.
	if st.req.grpc {
		if gt, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok && (timeout == 0 || gt < timeout) {
			timeout = gt
		}
	}
	if timeout > 0 {
		st.deadline = start.Add(timeout)
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() { cancel(errTimeout) })
		defer t.Stop()
	}
	st.ctx = ctx
	if st.d.Delay > 0 {
		t := time.NewTimer(st.d.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			st.failed(context.Cause(ctx))
			return
		}
	}
	st.proxy()
}

func (st *stream) finish(start time.Time) {
	st.sum.Duration = time.Since(start)
	st.sum.BytesIn = st.bytesIn.Load()
	if st.d.Done != nil {
		st.d.Done(st.sum.Status, st.sum.Err)
	}
	if o := st.s.cfg.Observer; o != nil {
		o.RequestEnd(st.req, st.sum)
	}
}

// proxy forwards the stream, retrying while that is safe.
func (st *stream) proxy() {
	r, d := st.r, &st.d
	body := &countingBody{rc: r.Body, n: &st.bytesIn}
	// x/net's transport does not watch the request context while it is
	// blocked reading the request body (a quiet gRPC client stream), so a
	// timeout would go unnoticed; closing the body unblocks it and resets
	// the upstream stream.
	stop := context.AfterFunc(st.ctx, func() { _ = r.Body.Close() })
	defer stop()
	// Without a body the request can be replayed at will; with one, only
	// while the transport has not read from it (connect failures).
	bodiless := r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && !st.req.grpc)
	upstream := d.Upstream
	if len(d.Mirrors) > 0 && st.s.cfg.Mirrorer != nil && !st.req.grpc {
		st.mirror(bodiless)
	}
	for attempt := 1; ; attempt++ {
		st.sum.Attempts = attempt
		out := st.outRequest(upstream, body, bodiless)
		resp, err := st.roundTrip(out, upstream)
		if err == nil && d.Retry != nil && bodiless && resp.StatusCode >= 500 {
			if up, backoff, ok := d.Retry.Retry(attempt, resp.StatusCode, nil); ok {
				_ = resp.Body.Close()
				upstream = up
				st.nextTLS()
				if st.backoff(backoff) {
					continue
				}
				st.failed(context.Cause(st.ctx))
				return
			}
		}
		if err != nil {
			replayable := bodiless || (errors.Is(err, h1.ErrConnectFailure) && !body.read.Load())
			if d.Retry != nil && replayable && st.ctx.Err() == nil {
				if up, backoff, ok := d.Retry.Retry(attempt, 0, err); ok {
					upstream = up
					st.nextTLS()
					if st.backoff(backoff) {
						continue
					}
					err = context.Cause(st.ctx)
				}
			}
			st.failed(err)
			return
		}
		st.sum.Upstream = upstream
		st.relay(resp)
		return
	}
}

// nextTLS takes the next attempt's upstream TLS key (see h1.TLSRetrier).
func (st *stream) nextTLS() {
	if tr, ok := st.d.Retry.(h1.TLSRetrier); ok {
		st.d.UpstreamTLS = tr.UpstreamTLS()
	}
}

// mirror hands a shadow copy of a bodiless stream, as an HTTP/1.1 head with
// "-shadow" appended to the host, to the Mirrorer.
func (st *stream) mirror(bodiless bool) {
	m := st.s.cfg.Mirrorer
	if !bodiless {
		m.Mirror(nil, nil, true, st.d.Mirrors)
		return
	}
	out := st.outRequest(st.d.Upstream, nil, true)
	host, port, err := net.SplitHostPort(out.Host)
	if err != nil {
		out.Host += "-shadow"
	} else {
		out.Host = net.JoinHostPort(host+"-shadow", port)
	}
	var b bytes.Buffer
	if err := out.Write(&b); err != nil {
		return
	}
	m.Mirror(b.Bytes(), nil, false, st.d.Mirrors)
}

// backoff waits d; false if the stream ended meanwhile.
func (st *stream) backoff(d time.Duration) bool {
	if d <= 0 {
		return st.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-st.ctx.Done():
		return false
	}
}

// roundTrip runs one attempt, bounded by PerTryTimeout until the response
// head arrives.
func (st *stream) roundTrip(out *http.Request, upstream string) (*http.Response, error) {
	var pool interface {
		RoundTrip(*http.Request, string, string) (*http.Response, error)
	} = st.s.cfg.Pool
	if st.d.UpstreamProtocol == h1.UpstreamHTTP1 && !st.req.grpc && st.s.cfg.HTTP1 != nil {
		pool = st.s.cfg.HTTP1
	}
	if st.d.PerTryTimeout <= 0 {
		return pool.RoundTrip(out, upstream, st.d.UpstreamTLS)
	}
	ctx, cancel := context.WithCancelCause(out.Context())
	t := time.AfterFunc(st.d.PerTryTimeout, func() { cancel(h1.ErrPerTryTimeout) })
	resp, err := pool.RoundTrip(out.WithContext(ctx), upstream, st.d.UpstreamTLS)
	if !t.Stop() && err != nil && errors.Is(context.Cause(ctx), h1.ErrPerTryTimeout) {
		err = h1.ErrPerTryTimeout
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	// The attempt context must live as long as the response body; cancel
	// it when the body is closed.
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

// outRequest builds the upstream request: same method, path, headers and
// body, with the Decision's rewrites and header operations applied.
func (st *stream) outRequest(upstream string, body *countingBody, bodiless bool) *http.Request {
	r, d := st.r, &st.d
	u := &url.URL{Scheme: "http", Host: upstream}
	path := r.URL.EscapedPath()
	if d.PathRewrite != nil {
		path = string(d.PathRewrite)
	}
	if len(path) >= 2 && path[0] == '/' && path[1] == '/' {
		// url.URL.RequestURI would turn an Opaque "//x" into a scheme-relative
		// URL; Path/RawPath keep it.
		u.Path, _ = url.PathUnescape(path)
		u.RawPath = path
	} else {
		u.Opaque = path
	}
	u.RawQuery = r.URL.RawQuery
	if u.Opaque == "" && u.Path == "" {
		u.Opaque = "/"
	}

	h := make(http.Header, len(r.Header)+len(d.SetRequestHeaders)+len(d.AddRequestHeaders))
	for k, vs := range r.Header {
		h[k] = vs // shared: the upstream transport only reads them
	}
	for _, n := range d.RemoveRequestHeaders {
		delete(h, textproto.CanonicalMIMEHeaderKey(string(n)))
	}
	applySet(h, d.SetRequestHeaders)
	applyAdd(h, d.AddRequestHeaders)
	host := r.Host
	if d.HostRewrite != nil {
		host = string(d.HostRewrite)
	}
	if host == "" {
		host = upstream
	}
	out := &http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Host:          host,
		ContentLength: r.ContentLength,
	}
	if !bodiless {
		out.Body = body
		out.Trailer = r.Trailer
	} else {
		out.ContentLength = 0
	}
	return out.WithContext(st.ctx)
}

// relay streams the upstream response (head, body, trailers) to the
// client, flushing as data arrives so gRPC streams are not held back.
func (st *stream) relay(resp *http.Response) {
	defer resp.Body.Close()
	w, d := st.w, &st.d
	h := w.Header()
	for k, vs := range resp.Header {
		if hopByHop(k) {
			continue
		}
		h[k] = vs
	}
	for _, n := range d.RemoveResponseHeaders {
		h.Del(string(n))
	}
	applySet(h, d.SetResponseHeaders)
	applyAdd(h, d.AddResponseHeaders)
	// A gRPC trailers-only response (HEADERS with END_STREAM) arrives with
	// ContentLength 0; flushing its head now would split it into headers
	// plus empty trailers, which gRPC clients reject.
	holdHead := st.req.grpc && resp.ContentLength == 0
	if v := resp.Header.Get("Grpc-Status"); v != "" && holdHead {
		st.req.grpcStatus, _ = strconv.Atoi(v)
	}
	st.sum.Status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if !holdHead {
		if err := rc.Flush(); err != nil {
			st.sum.Err = errClientGone
			return
		}
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				st.sum.Err = errClientGone
				return
			}
			st.sum.BytesOut += int64(n)
			if err := rc.Flush(); err != nil {
				st.sum.Err = errClientGone
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			st.midStreamFailure(rerr)
			return
		}
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
		if st.req.grpc && textproto.CanonicalMIMEHeaderKey(k) == "Grpc-Status" && len(vs) > 0 {
			st.req.grpcStatus, _ = strconv.Atoi(vs[0])
		}
	}
}

// midStreamFailure ends a stream whose response head was already sent.
func (st *stream) midStreamFailure(err error) {
	cause := context.Cause(st.ctx)
	switch {
	case cause != nil && cause != errTimeout:
		// The client went away (or reset the stream); nothing to tell it.
		st.sum.Err = errClientGone
		return
	case cause == errTimeout:
		st.sum.Err = errTimeout
		if st.req.grpc {
			st.grpcTrailers(grpcDeadlineExceeded, reasonTimeout)
			return
		}
	default:
		st.sum.Err = err
		if st.req.grpc {
			st.grpcTrailers(grpcUnavailable, reasonReset)
			return
		}
	}
	// Plain HTTP: the only honest signal left is resetting the stream.
	panic(http.ErrAbortHandler)
}

// failed answers a stream whose upstream exchange failed before any
// response byte reached the client.
func (st *stream) failed(err error) {
	cause := context.Cause(st.ctx)
	status, reason := http.StatusBadGateway, reasonReset
	if cause == nil && !st.deadline.IsZero() && !time.Now().Before(st.deadline) {
		// The upstream gave up at the same deadline (grpc-timeout) first.
		cause = errTimeout
	}
	switch {
	case cause == errTimeout:
		status, reason, err = http.StatusGatewayTimeout, reasonTimeout, errTimeout
	case cause != nil:
		st.sum.Err = errClientGone
		return
	case errors.Is(err, ErrPoolExhausted):
		status, reason = http.StatusServiceUnavailable, reasonOverflow
	case errors.Is(err, h1.ErrConnectFailure):
		status, reason = http.StatusServiceUnavailable, reasonConnectFailure
	case errors.Is(err, h1.ErrPerTryTimeout):
		status, reason = http.StatusGatewayTimeout, reasonPerTryTimeout
	}
	st.sum.Err = err
	st.local(status, reason, nil)
}

// local answers the stream from the proxy: plain HTTP gets status, body and
// x-weft-reason; gRPC gets a trailers-only response with the mapped
// grpc-status and grpc-message = reason.
func (st *stream) local(status int, reason string, body []byte) {
	// Read nothing more of the request: x/net resets the stream's
	// remaining upload when the handler returns.
	h := st.w.Header()
	if reason != "" {
		h.Set("X-Weft-Reason", reason)
	}
	applySet(h, st.d.SetResponseHeaders)
	applyAdd(h, st.d.AddResponseHeaders)
	if st.req.grpc {
		code := grpcCodeForHTTP(status)
		msg := reason
		switch {
		case len(body) > 0 && status >= 400:
			// An answer with a text (RBAC's "RBAC: access denied", a JWT
			// failure) carries it as the message, as Envoy's local replies do.
			msg = string(body)
		case msg == "":
			msg = http.StatusText(status)
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", grpcEncodeMessage(msg))
		st.req.grpcStatus = code
		st.sum.Status = http.StatusOK
		st.w.WriteHeader(http.StatusOK)
		return
	}
	if body == nil && reason != "" && status >= 400 {
		body = []byte(reason + "\n")
	}
	if len(body) > 0 {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	st.sum.Status = status
	st.w.WriteHeader(status)
	if st.r.Method != http.MethodHead && len(body) > 0 {
		n, _ := st.w.Write(body)
		st.sum.BytesOut += int64(n)
	}
}

// grpcTrailers ends a gRPC response whose head was sent with an error.
func (st *stream) grpcTrailers(code int, msg string) {
	h := st.w.Header()
	h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(code))
	h.Set(http.TrailerPrefix+"Grpc-Message", grpcEncodeMessage(msg))
	st.req.grpcStatus = code
}

func applySet(h http.Header, hs []h1.Header) {
	for i := range hs {
		delete(h, textproto.CanonicalMIMEHeaderKey(string(hs[i].Name)))
	}
	applyAdd(h, hs)
}

func applyAdd(h http.Header, hs []h1.Header) {
	for i := range hs {
		k := textproto.CanonicalMIMEHeaderKey(string(hs[i].Name))
		h[k] = append(h[k][:len(h[k]):len(h[k])], string(hs[i].Value))
	}
}

// hopByHop reports connection-specific fields that must not cross a hop
// (RFC 9113 section 8.2.2); canonical keys.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// countingBody counts request body bytes as the transport reads them.
type countingBody struct {
	rc   io.ReadCloser
	n    *atomic.Int64
	read atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

type cancelBody struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
