package h1

import (
	"net/http"
	"strconv"
	"time"
)

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
