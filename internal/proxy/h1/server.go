package h1

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/tcp"
)

const (
	bodyArea     = 8 << 10  // read-buffer room after the head for body / chunk lines
	writeBufSize = 16 << 10 // batching buffer per direction
)

// Config configures a Server. Zero values pick the defaults in brackets.
type Config struct {
	// Router decides every request's destination. Required.
	Router Router
	// Pool holds upstream connections; nil creates one owned by the Server.
	Pool *Pool
	// Observer gets request start/end hooks; may be nil.
	Observer Observer
	// Logger for connection-level failures [slog.Default()].
	Logger *slog.Logger

	// MaxHeaderBytes bounds the request head; beyond it: 431 [16 KiB].
	MaxHeaderBytes int
	// MaxRequestLine bounds the request line; beyond it: 414 [8 KiB].
	MaxRequestLine int
	// MaxHeaders bounds the number of request fields; beyond it: 431 [100].
	MaxHeaders int
	// ReadHeaderTimeout bounds reading one request head once its first byte
	// arrived (slowloris); expiry answers 408 [10s].
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for longer [60s].
	IdleTimeout time.Duration
	// RequestTimeout is the per-request timeout when Decision.Timeout is
	// zero; negative means none [15s, Envoy's route default].
	RequestTimeout time.Duration
	// TunnelIdleTimeout closes upgraded (WebSocket) tunnels idle for longer [1h].
	TunnelIdleTimeout time.Duration
}

// Server serves HTTP/1.1 on accepted connections. Create with NewServer.
type Server struct {
	cfg     Config
	lim     limits
	respLim limits
	pool    *Pool
	ownPool bool
	log     *slog.Logger

	shutdown  atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	connFree  sync.Pool
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("h1: server closed")

// NewServer validates cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Router == nil {
		return nil, errors.New("h1: Config.Router is required")
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if cfg.MaxRequestLine <= 0 {
		cfg.MaxRequestLine = 8 << 10
	}
	if cfg.MaxRequestLine > cfg.MaxHeaderBytes {
		cfg.MaxRequestLine = cfg.MaxHeaderBytes
	}
	if cfg.MaxHeaders <= 0 {
		cfg.MaxHeaders = 100
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.TunnelIdleTimeout <= 0 {
		cfg.TunnelIdleTimeout = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:       cfg,
		lim:       limits{maxLine: cfg.MaxRequestLine, maxHead: cfg.MaxHeaderBytes, maxHeaders: cfg.MaxHeaders},
		pool:      cfg.Pool,
		log:       cfg.Logger.With("component", "h1"),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	if s.pool == nil {
		s.pool = NewPool(PoolConfig{})
		s.ownPool = true
	}
	s.respLim = limits{maxLine: s.pool.cfg.MaxResponseHeaderBytes, maxHead: s.pool.cfg.MaxResponseHeaderBytes, maxHeaders: s.pool.cfg.MaxResponseHeaders}
	return s, nil
}

// Pool returns the upstream pool in use.
func (s *Server) Pool() *Pool { return s.pool }

// Serve accepts connections from l until Shutdown/Close or an accept error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		cn := s.newConn(nc)
		if cn == nil {
			nc.Close()
			continue
		}
		go s.run(cn)
	}
}

// ServeConn serves one accepted connection until it closes; it blocks.
func (s *Server) ServeConn(nc net.Conn) {
	cn := s.newConn(nc)
	if cn == nil {
		nc.Close()
		return
	}
	s.run(cn)
}

const (
	stateActive int32 = iota
	stateIdle
	stateClosed
)

// conn is one client connection and its reusable buffers.
type conn struct {
	srv   *Server
	c     net.Conn
	rd    reader
	w     writer
	req   Request
	state atomic.Int32
}

func (s *Server) newConn(nc net.Conn) *conn {
	var cn *conn
	if v := s.connFree.Get(); v != nil {
		cn = v.(*conn)
	} else {
		cn = &conn{srv: s}
		cn.rd.buf = make([]byte, s.cfg.MaxHeaderBytes+bodyArea)
		cn.w.buf = make([]byte, 0, writeBufSize)
		cn.req.headers = make([]Header, 0, 32)
	}
	cn.c, cn.rd.conn, cn.w.conn = nc, nc, nc
	cn.rd.r, cn.rd.w, cn.rd.base, cn.rd.n = 0, 0, 0, 0
	cn.w.buf, cn.w.n = cn.w.buf[:0], 0
	cn.state.Store(stateActive)
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return nil
	}
	s.conns[cn] = struct{}{}
	return cn
}

func (s *Server) run(cn *conn) {
	defer func() {
		cn.c.Close()
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
		cn.c, cn.rd.conn, cn.w.conn = nil, nil, nil
		cn.req.reset()
		cn.req.remote = nil
		if cap(cn.w.buf) <= 4*writeBufSize {
			s.connFree.Put(cn)
		}
	}()
	cn.req.remote = cn.c.RemoteAddr()
	cn.serve()
}

func (cn *conn) serve() {
	s := cn.srv
	for !s.shutdown.Load() {
		if cn.rd.r == cn.rd.w {
			// Idle between requests: only the idle timeout applies, and
			// Shutdown may close us.
			cn.state.Store(stateIdle)
			if s.shutdown.Load() {
				return
			}
			_ = cn.c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
			cn.rd.startHead()
			err := cn.rd.fill(0)
			if !cn.state.CompareAndSwap(stateIdle, stateActive) || err != nil {
				return
			}
		}
		start := time.Now()
		cn.rd.pendingDeadline = start.Add(s.cfg.ReadHeaderTimeout)
		err := parseRequest(&cn.rd, s.lim, &cn.req)
		cn.rd.pendingDeadline = time.Time{}
		if err != nil {
			if pe, ok := err.(*protoError); ok {
				cn.writeLocal(pe.Status, pe.Reason, nil, true, false, nil)
			} else if isTimeout(err) {
				cn.writeLocal(http.StatusRequestTimeout, "request head timeout", nil, true, false, nil)
			}
			return
		}
		if !cn.exchange(start) {
			return
		}
	}
}

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

// writeLocal writes a locally generated response.
func (cn *conn) writeLocal(status int, reason string, body []byte, closeConn, head bool, d *Decision) {
	b := cn.w.buf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	if body == nil && reason != "" && status >= 400 {
		b = append(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(reason)+1), 10)
	} else {
		if len(body) > 0 {
			b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
		}
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	b = append(b, "\r\n"...)
	if reason != "" {
		b = append(b, "x-weft-reason: "...)
		b = append(b, reason...)
		b = append(b, "\r\n"...)
	}
	if d != nil {
		b = appendHeaders(b, d.SetResponseHeaders)
		b = appendHeaders(b, d.AddResponseHeaders)
	}
	if closeConn {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !head {
		if body == nil && reason != "" && status >= 400 {
			b = append(b, reason...)
			b = append(b, '\n')
		} else {
			b = append(b, body...)
		}
	}
	cn.w.buf = b
	// Local answers often follow an expired request deadline (504); give
	// them their own short write window.
	_ = cn.c.SetWriteDeadline(time.Now().Add(cn.srv.cfg.ReadHeaderTimeout))
	_ = cn.w.flush()
}

func appendHeaders(b []byte, hs []Header) []byte {
	for i := range hs {
		b = append(b, hs[i].Name...)
		b = append(b, ": "...)
		b = append(b, hs[i].Value...)
		b = append(b, "\r\n"...)
	}
	return b
}

func inNames(name []byte, names [][]byte) bool {
	for _, n := range names {
		if equalFoldBytes(name, n) {
			return true
		}
	}
	return false
}

func inHeaders(name []byte, hs []Header) bool {
	for i := range hs {
		if equalFoldBytes(name, hs[i].Name) {
			return true
		}
	}
	return false
}

// appendRequestHead builds the upstream request head: origin-form target,
// Host, end-to-end fields with mutations, and canonical framing.
func appendRequestHead(b []byte, req *Request, d *Decision) []byte {
	b = append(b, req.method...)
	b = append(b, ' ')
	if d.PathRewrite != nil {
		b = append(b, d.PathRewrite...)
	} else {
		b = append(b, req.path...)
	}
	if req.query != nil {
		b = append(b, '?')
		b = append(b, req.query...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	switch {
	case d.HostRewrite != nil:
		b = append(b, d.HostRewrite...)
	case len(req.host) > 0:
		b = append(b, req.host...)
	default:
		b = append(b, d.Upstream...)
	}
	b = append(b, "\r\n"...)
	for i := range req.headers {
		h := &req.headers[i]
		n := h.Name
		if (len(n) == 4 && equalFold(n, "host")) || (len(n) == 6 && equalFold(n, "expect")) || hopByHop(n) {
			continue
		}
		if len(d.RemoveRequestHeaders) > 0 && inNames(n, d.RemoveRequestHeaders) ||
			len(d.SetRequestHeaders) > 0 && inHeaders(n, d.SetRequestHeaders) ||
			listedInConnection(req.headers, n) {
			continue
		}
		b = append(b, n...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	b = appendHeaders(b, d.SetRequestHeaders)
	b = appendHeaders(b, d.AddRequestHeaders)
	if req.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	} else if req.contentLength >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.contentLength, 10)
		b = append(b, "\r\n"...)
	}
	if req.upgrade {
		b = append(b, "Connection: upgrade\r\n"...)
		for i := range req.headers {
			if equalFold(req.headers[i].Name, "upgrade") {
				b = append(b, "Upgrade: "...)
				b = append(b, req.headers[i].Value...)
				b = append(b, "\r\n"...)
			}
		}
	}
	return append(b, "\r\n"...)
}

// appendResponseHead builds the client response head from an upstream head.
func appendResponseHead(b []byte, req *Request, resp *response, d *Decision, noBody, decode, closeConn bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.status), 10)
	b = append(b, ' ')
	if len(resp.reason) > 0 {
		b = append(b, resp.reason...)
	} else {
		b = append(b, http.StatusText(resp.status)...)
	}
	b = append(b, "\r\n"...)
	for i := range resp.headers {
		h := &resp.headers[i]
		n := h.Name
		if hopByHop(n) || listedInConnection(resp.headers, n) {
			continue
		}
		if d != nil && (len(d.RemoveResponseHeaders) > 0 && inNames(n, d.RemoveResponseHeaders) ||
			len(d.SetResponseHeaders) > 0 && inHeaders(n, d.SetResponseHeaders)) {
			continue
		}
		b = append(b, n...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	if d != nil {
		b = appendHeaders(b, d.SetResponseHeaders)
		b = appendHeaders(b, d.AddResponseHeaders)
	}
	st := resp.status
	if st >= 200 && st != http.StatusNoContent {
		switch {
		case resp.chunked && !decode:
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		case resp.contentLength >= 0:
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, resp.contentLength, 10)
			b = append(b, "\r\n"...)
		}
	}
	switch {
	case st == http.StatusSwitchingProtocols:
		b = append(b, "Connection: upgrade\r\n"...)
		for i := range resp.headers {
			if equalFold(resp.headers[i].Name, "upgrade") {
				b = append(b, "Upgrade: "...)
				b = append(b, resp.headers[i].Value...)
				b = append(b, "\r\n"...)
			}
		}
	case st < 200:
	case closeConn:
		b = append(b, "Connection: close\r\n"...)
	case req.proto == HTTP10:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	_ = noBody
	return append(b, "\r\n"...)
}

// Shutdown stops accepting, closes idle connections, waits for in-flight
// requests to finish (their connections then close), and closes the pool if
// the Server owns it. It returns ctx.Err() if ctx expires first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			if s.ownPool {
				s.pool.Close()
			} else {
				s.pool.CloseIdle()
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// closeIdle closes idle connections and returns how many remain open.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cn := range s.conns {
		if cn.state.CompareAndSwap(stateIdle, stateClosed) {
			cn.c.Close()
		}
	}
	return len(s.conns)
}

// Close closes listeners and all connections immediately.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	for cn := range s.conns {
		cn.state.Store(stateClosed)
		cn.c.Close()
	}
	s.mu.Unlock()
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}
