package h1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/tcp"
)

// exchange handles one parsed request; it reports whether the connection
// may carry another request.
func (cn *conn) exchange(start time.Time) bool {
	s := cn.srv
	req := &cn.req
	cn.bodyDone = false
	if s.cfg.Observer != nil {
		s.cfg.Observer.RequestStart(req)
	}
	d := s.cfg.Router.Route(req)
	// Writes to the client share the request deadline, so a client that
	// stops reading cannot pin this goroutine and an upstream connection.
	timeout := d.Timeout
	if timeout == 0 {
		timeout = s.cfg.RequestTimeout
	}
	var wd time.Time
	if timeout > 0 {
		wd = start.Add(timeout)
	}
	_ = cn.c.SetWriteDeadline(wd)
	var sum Summary
	sum.State = d.State
	var keep bool
	switch {
	case d.Status != 0:
		if d.Delay > 0 {
			// A delayed local answer (fault delay + abort), like Envoy.
			if err := cn.wait(d.Delay, wd); err != nil {
				sum.Err = err
				req.closeAfter = true
				break
			}
		}
		keep = !req.connect && cn.skipBody() && !cn.closing()
		cn.writeLocal(d.Status, d.Reason, d.Body, !keep || req.closeAfter, string(req.method) == "HEAD", &d)
		sum.Status = d.Status
	case req.connect:
		if d.Tunnel && s.cfg.TunnelHandler != nil {
			_ = cn.c.SetDeadline(time.Time{})
			s.cfg.TunnelHandler(cn.c, req, cn.rd.buf[cn.rd.r:cn.rd.w])
			cn.rd.r = cn.rd.w
		} else {
			sum.Status = http.StatusNotImplemented
			cn.writeLocal(sum.Status, "connect_not_supported", nil, true, false, nil)
		}
	default:
		sum.Upstream = d.Upstream
		keep = cn.proxy(req, &d, start, &sum)
	}
	sum.Duration = time.Since(start)
	if d.Done != nil {
		d.Done(sum.Status, sum.Err)
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.RequestEnd(req, sum)
	}
	return keep && !req.closeAfter
}

// skipBody discards a request body that is already buffered; it reports
// false when the body is not (then the connection must close).
func (cn *conn) skipBody() bool {
	req := &cn.req
	if cn.bodyDone {
		return true
	}
	if req.chunked {
		return false
	}
	if req.contentLength > 0 {
		if int64(cn.rd.buffered()) < req.contentLength {
			return false
		}
		cn.rd.r += int(req.contentLength)
	}
	return true
}

func isIdempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// perTryError is a per-try timeout; it matches ErrPerTryTimeout and stays
// a net.Error timeout.
type perTryError struct{ err error }

func (e *perTryError) Error() string   { return "h1: per-try timeout: " + e.err.Error() }
func (e *perTryError) Unwrap() []error { return []error{ErrPerTryTimeout, e.err} }

// proxy forwards req upstream (retrying while Decision.Retry allows and the
// request can be replayed) and relays the response.
func (cn *conn) proxy(req *Request, d *Decision, start time.Time, sum *Summary) bool {
	s := cn.srv
	timeout := d.Timeout
	if timeout == 0 {
		timeout = s.cfg.RequestTimeout
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = start.Add(timeout)
	}

	if d.Delay > 0 {
		if err := cn.wait(d.Delay, deadline); err != nil {
			sum.Err = err
			req.closeAfter = true
			return false
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			sum.Err = errDelayTimeout
			return cn.failEarly(sum, errDelayTimeout)
		}
	}

	if d.UpstreamProtocol == UpstreamHTTP2 && s.cfg.H2Upstream != nil && !req.upgrade {
		return cn.proxyH2(req, d, deadline, sum)
	}

	// body is the request body when it can be written in one go (and so
	// replayed): already in the read buffer, or copied into a retry buffer
	// when a retry policy applies. nil: no body, or streamed.
	hasBody := req.chunked || req.contentLength > 0
	var body []byte
	if hasBody && !req.chunked {
		if int64(cn.rd.buffered()) >= req.contentLength {
			body = cn.rd.buf[cn.rd.r : cn.rd.r+int(req.contentLength)]
		} else if (d.Retry != nil || len(d.Mirrors) > 0 && s.cfg.Mirrorer != nil) && !req.upgrade && req.contentLength <= int64(s.cfg.MaxRetryBody) {
			bp, err := cn.bufferBody(req, deadline)
			if err != nil {
				// The client did not deliver its body: nothing to answer.
				sum.Err = err
				req.closeAfter = true
				return false
			}
			defer retryBufs.Put(bp)
			body = *bp
		}
	}
	if len(d.Mirrors) > 0 && s.cfg.Mirrorer != nil && !req.upgrade {
		cn.mirror(req, d, hasBody, body)
	}
	canRetry := isIdempotent(req.method) && (!hasBody || body != nil) && !req.upgrade
	replay := d.Retry != nil && !req.upgrade && (!hasBody || (body != nil && len(body) <= s.cfg.MaxRetryBody))

	addr := d.Upstream
	w0 := cn.w.n
	var (
		uc     *upConn
		bodyCh chan bodyResult
		err    error
	)
	for attempt := 1; ; attempt++ {
		sum.Attempts = attempt
		tryDeadline := deadline
		if d.PerTryTimeout > 0 {
			if t := time.Now().Add(d.PerTryTimeout); deadline.IsZero() || t.Before(deadline) {
				tryDeadline = t
			}
		}
		uc, bodyCh, err = cn.roundTrip(req, d, poolKey{addr, d.UpstreamTLS}, tryDeadline, body, canRetry, sum)
		if err != nil && tryDeadline != deadline && isTimeout(err) && !errors.Is(err, ErrConnectFailure) {
			err = &perTryError{err}
		}
		if !replay || cn.w.n != w0 || (err == nil && uc.resp.status < 400) {
			break
		}
		status := 0
		if err == nil {
			status = uc.resp.status
		}
		next, backoff, ok := d.Retry.Retry(attempt, status, err)
		if !ok {
			break
		}
		if uc != nil {
			// A response we will not relay: drop the connection rather
			// than read a body of unknown size.
			s.pool.discard(uc)
			uc = nil
		}
		if backoff > 0 {
			if werr := cn.wait(backoff, deadline); werr != nil {
				sum.Err = werr
				req.closeAfter = true
				return false
			}
		}
		addr = next
		sum.Upstream = next
		if tr, ok := d.Retry.(TLSRetrier); ok {
			d.UpstreamTLS = tr.UpstreamTLS()
		}
	}
	if err != nil {
		sum.Err = err
		if err == errBadChunk {
			sum.Status = http.StatusBadRequest
			cn.writeLocal(sum.Status, errBadChunk.Reason, nil, true, false, nil)
			return false
		}
		return cn.failEarly(sum, err)
	}
	if body != nil {
		if !cn.bodyDone {
			cn.rd.r += len(body)
		}
		sum.BytesIn = int64(len(body))
	}

	resp := &uc.resp
	if resp.status == http.StatusSwitchingProtocols {
		if !req.upgrade {
			if bodyCh != nil {
				cn.stopRequestBody(uc, bodyCh)
				s.pool.discard(uc)
				req.closeAfter = true
				sum.Err = errUpstreamHead
				cn.failEarly(sum, errUpstreamHead)
				return false
			}
			s.pool.discard(uc)
			sum.Err = errUpstreamHead
			return cn.failEarly(sum, errUpstreamHead)
		}
		sum.Status = resp.status
		if bodyCh != nil {
			if br := <-bodyCh; br.err != nil {
				s.pool.discard(uc)
				return false
			}
		}
		cn.tunnel(req, d, uc)
		return false
	}

	noBody := bodyless(req.method, resp.status)
	decode := resp.chunked && req.proto == HTTP10
	closeDelimited := !noBody && !resp.chunked && resp.contentLength < 0
	clientClose := req.closeAfter || cn.closing() || closeDelimited || decode
	flushed := cn.w.n
	cn.w.buf = appendResponseHead(cn.w.buf[:0], req, resp, d, noBody, decode, clientClose)
	sum.Status = resp.status

	var berr *bodyErr
	var n int64
	switch {
	case noBody:
	case resp.chunked:
		n, berr = copyChunked(&cn.w, &uc.rd, decode)
	case resp.contentLength >= 0:
		n, berr = copyLength(&cn.w, &uc.rd, resp.contentLength)
	default:
		n, berr = copyUntilEOF(&cn.w, &uc.rd)
	}
	sum.BytesOut = n
	if berr == nil {
		if err := cn.w.flush(); err != nil {
			berr = &bodyErr{false, err}
		}
	}
	if berr != nil {
		if bodyCh != nil {
			cn.stopRequestBody(uc, bodyCh)
		}
		s.pool.discard(uc)
		sum.Err = berr.err
		if berr.src && cn.w.n == flushed {
			// Nothing reached the client yet: replace the broken
			// response with a clean 502.
			cn.w.buf = cn.w.buf[:0]
			req.closeAfter = true
			ferr := errUpstreamHead
			if isTimeout(berr.err) {
				ferr = berr.err // 504
			}
			cn.failEarly(sum, ferr)
			return false
		}
		// Mid-body failure after bytes went out: the client cannot be
		// told; closing the connection is the only honest signal.
		return false
	}
	if bodyCh != nil {
		br, finished := cn.awaitRequestBody(uc, bodyCh)
		sum.BytesIn = br.n
		if !finished || br.err != nil {
			// The upstream answered before taking the whole body (or the
			// body failed): neither side can be resynchronised.
			s.pool.discard(uc)
			if br.err != nil {
				sum.Err = br.err.err
			}
			return false
		}
	}
	if resp.closeAfter || closeDelimited || uc.rd.buffered() != 0 {
		s.pool.discard(uc)
	} else {
		s.pool.put(uc)
	}
	return !clientClose
}

// mirror hands a shadow copy of req (as it goes upstream, host suffixed
// "-shadow" before any port, as Envoy does) to the Mirrorer. Off the happy
// path: it allocates.
func (cn *conn) mirror(req *Request, d *Decision, hasBody bool, body []byte) {
	host := d.HostRewrite
	if host == nil {
		host = req.host
	}
	shadow := make([]byte, 0, len(host)+7)
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		shadow = append(append(append(shadow, host[:i]...), "-shadow"...), host[i:]...)
	} else {
		shadow = append(append(shadow, host...), "-shadow"...)
	}
	sd := *d
	sd.HostRewrite = shadow
	head := appendRequestHead(nil, req, &sd)
	cn.srv.cfg.Mirrorer.Mirror(head, body, hasBody && body == nil, d.Mirrors)
}

// roundTrip makes one attempt: it sends the request head (and body, or
// starts streaming it) to k and reads the final response head. A reused
// keep-alive connection that turns out dead before answering is replaced
// once when canRetry. On error the upstream connection is already released.
func (cn *conn) roundTrip(req *Request, d *Decision, k poolKey, deadline time.Time, body []byte, canRetry bool, sum *Summary) (*upConn, chan bodyResult, error) {
	s := cn.srv
	streamed := body == nil && (req.chunked || req.contentLength > 0)
	uc, reused, err := s.pool.get(k, deadline)
	if err != nil {
		return nil, nil, err
	}
	_ = uc.conn.SetDeadline(deadline)
	for try := 0; ; try++ {
		retry := canRetry && reused && try == 0
		uc.w.buf = appendRequestHead(uc.w.buf[:0], req, d)
		if body != nil {
			err = uc.w.write(body)
		}
		if err == nil {
			err = uc.w.flush()
		}
		if err != nil {
			s.pool.discard(uc)
			if retry {
				if uc, err = s.pool.dialFresh(k, deadline); err == nil {
					reused = false
					_ = uc.conn.SetDeadline(deadline)
					continue
				}
			}
			return nil, nil, err
		}
		var bodyCh chan bodyResult
		if streamed {
			if req.expectContinue {
				// Like Envoy's default, the proxy answers 100-continue
				// itself and strips Expect: the next hop sees a plain request.
				if _, err := io.WriteString(cn.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					s.pool.discard(uc)
					req.closeAfter = true
					return nil, nil, err
				}
			}
			// Only a streamed body reads the client during the exchange.
			_ = cn.c.SetReadDeadline(deadline)
			bodyCh = cn.startRequestBody(req, uc)
		}
		n0 := uc.rd.n
		err = cn.readResponseHead(req, uc)
		if err == nil {
			return uc, bodyCh, nil
		}
		if bodyCh != nil {
			br := cn.stopRequestBody(uc, bodyCh)
			s.pool.discard(uc)
			sum.BytesIn = br.n
			req.closeAfter = true // the body position is unknown now
			if br.err != nil && br.err.err == errBadChunk {
				return nil, nil, errBadChunk
			}
			return nil, nil, err
		}
		s.pool.discard(uc)
		if retry && uc.rd.n == n0 && isConnLost(err) {
			if uc, err = s.pool.dialFresh(k, deadline); err == nil {
				reused = false
				_ = uc.conn.SetDeadline(deadline)
				continue
			}
		}
		return nil, nil, err
	}
}

// retryBufs holds request bodies kept for replay (Config.MaxRetryBody).
var retryBufs sync.Pool

// bufferBody reads a Content-Length body that is not fully buffered into a
// pooled buffer so it can be replayed; the caller returns the buffer to
// retryBufs.
func (cn *conn) bufferBody(req *Request, deadline time.Time) (*[]byte, error) {
	n := int(req.contentLength)
	if req.expectContinue {
		if _, err := io.WriteString(cn.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return nil, err
		}
	}
	var bp *[]byte
	if v := retryBufs.Get(); v != nil {
		bp = v.(*[]byte)
	} else {
		bp = new([]byte)
	}
	if cap(*bp) < n {
		*bp = make([]byte, 0, max(n, cn.srv.cfg.MaxRetryBody))
	}
	b := (*bp)[:0]
	_ = cn.c.SetReadDeadline(deadline)
	for len(b) < n {
		if cn.rd.r == cn.rd.w {
			cn.rd.compactBody()
			if err := cn.rd.fill(int64(n - len(b))); err != nil {
				retryBufs.Put(bp)
				if err == io.EOF {
					err = errTruncated
				}
				return nil, err
			}
		}
		k := min(cn.rd.w-cn.rd.r, n-len(b))
		b = append(b, cn.rd.buf[cn.rd.r:cn.rd.r+k]...)
		cn.rd.r += k
	}
	*bp = b
	cn.bodyDone = true
	return bp, nil
}

// wait holds the request for d (at most until deadline) on this goroutine
// while watching the client: bytes it sends meanwhile stay buffered for
// later, EOF or an error means it went away. The buffered head and body
// are not moved.
func (cn *conn) wait(d time.Duration, deadline time.Time) error {
	until := time.Now().Add(d)
	if !deadline.IsZero() && deadline.Before(until) {
		until = deadline
	}
	_ = cn.c.SetReadDeadline(until)
	defer cn.c.SetReadDeadline(time.Time{})
	for time.Now().Before(until) {
		if cn.rd.w == len(cn.rd.buf) {
			// No room to watch the client: just sleep.
			t := time.NewTimer(time.Until(until))
			<-t.C
			return nil
		}
		if err := cn.rd.fill(0); err != nil {
			if isTimeout(err) {
				return nil
			}
			return fmt.Errorf("h1: client went away during delay: %w", err)
		}
	}
	return nil
}

type bodyResult struct {
	n   int64
	err *bodyErr
}

// startRequestBody streams a request body that is not fully buffered on a
// second goroutine, so the upstream may answer early or full-duplex while
// the body is still flowing. It owns cn.rd and uc.w until it reports.
func (cn *conn) startRequestBody(req *Request, uc *upConn) chan bodyResult {
	ch := make(chan bodyResult, 1)
	go func() {
		var r bodyResult
		if req.chunked {
			r.n, r.err = copyChunked(&uc.w, &cn.rd, false)
		} else {
			r.n, r.err = copyLength(&uc.w, &cn.rd, req.contentLength)
		}
		if r.err == nil {
			if err := uc.w.flush(); err != nil {
				r.err = &bodyErr{false, err}
			}
		}
		if r.err != nil {
			// Unblock the response reader: this exchange is over.
			uc.conn.Close()
		}
		ch <- r
	}()
	return ch
}

var aLongTimeAgo = time.Unix(1, 0)

// stopRequestBody aborts a streaming body and waits for its goroutine.
func (cn *conn) stopRequestBody(uc *upConn, ch chan bodyResult) bodyResult {
	uc.conn.Close()
	_ = cn.c.SetReadDeadline(aLongTimeAgo)
	return <-ch
}

// awaitRequestBody waits briefly for the body goroutine after the response
// completed; finished is false if it had to be aborted.
func (cn *conn) awaitRequestBody(uc *upConn, ch chan bodyResult) (bodyResult, bool) {
	select {
	case r := <-ch:
		return r, true
	default:
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, true
	case <-t.C:
		return cn.stopRequestBody(uc, ch), false
	}
}

// readResponseHead reads the final response head, forwarding 1xx interim
// responses (except 100, which the proxy already handled itself).
func (cn *conn) readResponseHead(req *Request, uc *upConn) error {
	for {
		uc.resp.reset(cn.srv.respLim.maxHeaders)
		if err := readHead(&uc.rd, cn.srv.respLim, &uc.resp, errUpstreamHead, errUpstreamHead); err != nil {
			if _, ok := err.(*protoError); ok {
				return errUpstreamHead
			}
			return err
		}
		if err := uc.resp.finish(); err != nil {
			return err
		}
		st := uc.resp.status
		if st >= 200 || st == http.StatusSwitchingProtocols {
			return nil
		}
		if st != http.StatusContinue && req.proto == HTTP11 {
			// e.g. 103 Early Hints: relay as-is (hop-by-hop stripped).
			b := appendResponseHead(cn.w.buf[:0], req, &uc.resp, nil, true, false, false)
			cn.w.buf = b
			if err := cn.w.flush(); err != nil {
				return err
			}
		}
	}
}

// failEarly answers an upstream failure before any response byte was sent.
func (cn *conn) failEarly(sum *Summary, err error) bool {
	status, reason := http.StatusBadGateway, "upstream_reset"
	switch {
	case errors.Is(err, ErrPoolExhausted):
		status, reason = http.StatusServiceUnavailable, "upstream_overflow"
	case errors.Is(err, ErrConnectFailure):
		// Envoy's UF: nothing was sent, the upstream never took it.
		status, reason = http.StatusServiceUnavailable, "upstream_connect_failure"
	case errors.Is(err, ErrPerTryTimeout):
		status, reason = http.StatusGatewayTimeout, "upstream_per_try_timeout"
	case isTimeout(err):
		status, reason = http.StatusGatewayTimeout, "upstream_timeout"
	case errors.Is(err, errUpstreamHead):
		reason = "upstream_malformed_response"
	}
	sum.Status = status
	keep := cn.skipBody() && !cn.req.closeAfter
	cn.writeLocal(status, reason, nil, !keep, string(cn.req.method) == "HEAD", nil)
	return keep
}

// tunnel relays an upgraded connection (WebSocket) byte for byte.
func (cn *conn) tunnel(req *Request, d *Decision, uc *upConn) {
	cn.w.buf = appendResponseHead(cn.w.buf[:0], req, &uc.resp, d, true, false, false)
	// Bytes that arrived behind the heads belong to the new protocol.
	if uc.rd.buffered() > 0 {
		cn.w.buf = append(cn.w.buf, uc.rd.buf[uc.rd.r:uc.rd.w]...)
	}
	err := cn.w.flush()
	if err == nil && cn.rd.buffered() > 0 {
		_, err = uc.conn.Write(cn.rd.buf[cn.rd.r:cn.rd.w])
	}
	cn.rd.r = cn.rd.w
	if err == nil {
		_ = cn.c.SetDeadline(time.Time{})
		_ = uc.conn.SetDeadline(time.Time{})
		_, _, _ = tcp.Pipe(cn.c, uc.conn, cn.srv.cfg.TunnelIdleTimeout)
	}
	cn.srv.pool.discard(uc)
}

// errDelayTimeout: the fault delay used up the request's timeout.
var errDelayTimeout error = delayTimeout{}

type delayTimeout struct{}

func (delayTimeout) Error() string   { return "h1: request timeout during injected delay" }
func (delayTimeout) Timeout() bool   { return true }
func (delayTimeout) Temporary() bool { return false }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnLost reports a connection closed or reset by the peer.
func isConnLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)
}
