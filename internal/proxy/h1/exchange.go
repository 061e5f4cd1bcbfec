package h1

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/tcp"
)

// exchange handles one parsed request; it reports whether the connection
// may carry another request.
func (cn *conn) exchange(start time.Time) bool {
	s := cn.srv
	req := &cn.req
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
	var keep bool
	if d.Status != 0 {
		keep = cn.skipBody() && !s.shutdown.Load()
		cn.writeLocal(d.Status, d.Reason, d.Body, !keep || req.closeAfter, string(req.method) == "HEAD", &d)
		sum.Status = d.Status
	} else {
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

// proxy forwards req upstream and relays the response.
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

	hasBody := req.chunked || req.contentLength > 0
	bodyBuffered := !req.chunked && int64(cn.rd.buffered()) >= req.contentLength
	canRetry := isIdempotent(req.method) && (!hasBody || bodyBuffered) && !req.upgrade

	var bodyCh chan bodyResult
	uc, reused, err := s.pool.get(d.Upstream, deadline)
	if err != nil {
		sum.Err = err
		return cn.failEarly(sum, err)
	}
	_ = uc.conn.SetDeadline(deadline)

	for attempt := 0; ; attempt++ {
		retry := canRetry && reused && attempt == 0
		uc.w.buf = appendRequestHead(uc.w.buf[:0], req, d)
		if hasBody && bodyBuffered {
			err = uc.w.write(cn.rd.buf[cn.rd.r : cn.rd.r+int(req.contentLength)])
		}
		if err == nil {
			err = uc.w.flush()
		}
		if err != nil {
			s.pool.discard(uc)
			if retry {
				if uc, err = s.pool.dialFresh(d.Upstream, deadline); err == nil {
					reused = false
					_ = uc.conn.SetDeadline(deadline)
					continue
				}
			}
			sum.Err = err
			return cn.failEarly(sum, err)
		}
		if hasBody && bodyBuffered && attempt == 0 {
			cn.rd.r += int(req.contentLength)
			sum.BytesIn = req.contentLength
		}
		if hasBody && !bodyBuffered {
			if req.expectContinue {
				// Like Envoy's default, the proxy answers 100-continue
				// itself and strips Expect: the next hop sees a plain request.
				if _, err := io.WriteString(cn.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					s.pool.discard(uc)
					sum.Err = err
					return false
				}
			}
			// Only a streamed body reads the client during the exchange.
			_ = cn.c.SetReadDeadline(deadline)
			bodyCh = cn.startRequestBody(req, uc)
		}
		n0 := uc.rd.n
		err = cn.readResponseHead(req, uc)
		if err == nil {
			break
		}
		if bodyCh != nil {
			br := cn.stopRequestBody(uc, bodyCh)
			s.pool.discard(uc)
			sum.Err, sum.BytesIn = err, br.n
			req.closeAfter = true // the body position is unknown now
			if br.err != nil && br.err.err == errBadChunk {
				sum.Status = http.StatusBadRequest
				cn.writeLocal(sum.Status, errBadChunk.Reason, nil, true, false, nil)
				return false
			}
			cn.failEarly(sum, err)
			return false
		}
		if retry && uc.rd.n == n0 && isConnLost(err) {
			s.pool.discard(uc)
			if uc, err = s.pool.dialFresh(d.Upstream, deadline); err == nil {
				reused = false
				_ = uc.conn.SetDeadline(deadline)
				continue
			}
		} else {
			s.pool.discard(uc)
		}
		sum.Err = err
		return cn.failEarly(sum, err)
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
	clientClose := req.closeAfter || s.shutdown.Load() || closeDelimited || decode
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
	case isTimeout(err):
		status, reason = http.StatusGatewayTimeout, "upstream_timeout"
	case errors.Is(err, errUpstreamHead):
		reason = "upstream_malformed_response"
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "upstream_connect_refused"
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnLost reports a connection closed or reset by the peer.
func isConnLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)
}
