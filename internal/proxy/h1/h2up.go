package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTP/1.1 client -> HTTP/2 upstream (an HTTP2 or gRPC cluster called by an
// HTTP/1.1 client). This is a slow path next to the zero-allocation one:
// the request is rebuilt as a net/http request (from the same head bytes
// the HTTP/1.1 path would send, so rewrites and header operations apply
// identically), sent through Config.H2Upstream, and the response is
// written back with HTTP/1.1 framing. Request bodies must be whole in
// memory (Content-Length up to MaxRetryBody); response trailers are not
// relayed (HTTP/1.1 clients rarely accept them). No retries on this path.

var errH2Body = errors.New("h1: request body too large or chunked for an HTTP/2 upstream")

func (cn *conn) proxyH2(req *Request, d *Decision, deadline time.Time, sum *Summary) bool {
	s := cn.srv
	sum.Attempts = 1
	var body []byte
	switch {
	case req.chunked || req.contentLength > int64(s.cfg.MaxRetryBody):
		sum.Err = errH2Body
		sum.Status = http.StatusBadGateway
		req.closeAfter = true // the body was not read
		cn.writeLocal(sum.Status, "upstream_protocol_translation_unsupported", nil, true, false, nil)
		return false
	case req.contentLength > 0 && int64(cn.rd.buffered()) >= req.contentLength:
		body = cn.rd.buf[cn.rd.r : cn.rd.r+int(req.contentLength)]
	case req.contentLength > 0:
		bp, err := cn.bufferBody(req, deadline)
		if err != nil {
			sum.Err = err
			req.closeAfter = true
			return false
		}
		defer retryBufs.Put(bp)
		body = *bp
	}
	head := appendRequestHead(nil, req, d)
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	hr, err := NewClientRequest(ctx, head, body, d.Upstream)
	if err != nil { // the engine built this head: a bug, not input
		sum.Err = err
		return cn.failEarly(sum, errUpstreamHead)
	}
	if body != nil && !cn.bodyDone {
		cn.rd.r += len(body)
	}
	sum.BytesIn = int64(len(body))
	resp, err := s.cfg.H2Upstream.RoundTrip(hr, d.Upstream, d.UpstreamTLS)
	if err != nil {
		sum.Err = err
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return cn.failEarly(sum, err)
	}
	defer resp.Body.Close()

	noBody := bodyless(req.method, resp.StatusCode)
	clientClose := req.closeAfter || cn.closing()
	chunked := !noBody && resp.ContentLength < 0
	if chunked && req.proto == HTTP10 {
		clientClose = true // HTTP/1.0 has no chunked encoding: close-delimited
	}
	b := cn.w.buf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.StatusCode), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(resp.StatusCode)...)
	b = append(b, "\r\n"...)
	for k, vs := range resp.Header {
		lk := []byte(strings.ToLower(k))
		if hopByHop(lk) || len(d.RemoveResponseHeaders) > 0 && inNames(lk, d.RemoveResponseHeaders) ||
			len(d.SetResponseHeaders) > 0 && inHeaders(lk, d.SetResponseHeaders) {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = appendHeaders(b, d.SetResponseHeaders)
	b = appendHeaders(b, d.AddResponseHeaders)
	switch {
	case noBody:
	case resp.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, resp.ContentLength, 10)
		b = append(b, "\r\n"...)
	case req.proto != HTTP10:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if clientClose {
		b = append(b, "Connection: close\r\n"...)
	} else if req.proto == HTTP10 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	cn.w.buf = b
	sum.Status = resp.StatusCode
	if noBody {
		if err := cn.w.flush(); err != nil {
			sum.Err = err
			return false
		}
		return !clientClose
	}
	var n int64
	var werr error
	if chunked && req.proto != HTTP10 {
		n, werr = cn.copyChunkedOut(resp.Body)
	} else {
		n, werr = cn.copyOut(resp.Body)
	}
	sum.BytesOut = n
	if werr == nil {
		werr = cn.w.flush()
	}
	if werr != nil {
		sum.Err = werr
		return false // mid-body: closing is the only honest signal
	}
	return !clientClose
}

// NewClientRequest turns a request head built by the engine (and its whole
// body) into a net/http client request for upstream, for the paths that
// hand a request to net/http: HTTP/2 upstreams and mirroring. Rewrites and
// header operations are already in head.
func NewClientRequest(ctx context.Context, head, body []byte, upstream string) (*http.Request, error) {
	hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, err
	}
	hr = hr.WithContext(ctx)
	hr.RequestURI = ""
	hr.URL.Scheme, hr.URL.Host = "http", upstream
	hr.Body = http.NoBody
	if len(body) > 0 {
		hr.Body = io.NopCloser(bytes.NewReader(body))
	}
	return hr, nil
}

// copyOut relays r to the client as is.
func (cn *conn) copyOut(r io.Reader) (int64, error) {
	var total int64
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			if werr := cn.w.write(buf[:n]); werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// copyChunkedOut relays r to the client in chunked encoding, flushing
// each chunk so streamed answers are not held back.
func (cn *conn) copyChunkedOut(r io.Reader) (int64, error) {
	var total int64
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			cn.w.buf = strconv.AppendInt(cn.w.buf, int64(n), 16)
			cn.w.buf = append(cn.w.buf, "\r\n"...)
			if werr := cn.w.write(buf[:n]); werr != nil {
				return total, werr
			}
			cn.w.writeString("\r\n")
			if werr := cn.w.flush(); werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			cn.w.writeString("0\r\n\r\n")
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
