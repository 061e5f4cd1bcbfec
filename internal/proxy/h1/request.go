package h1

import "bytes"

// requestState is scratch state used while parsing one request head.
type requestState struct {
	hosts      int
	te         int
	clSeen     bool
	keepAlive  bool
	connUpg    bool
	hasUpgrade bool
	absHost    []byte
}

// parseRequest reads one request head from rd into req.
func parseRequest(rd *reader, lim limits, req *Request) error {
	req.reset()
	// The parser state lives inside Request so passing it as a headSink
	// does not allocate.
	p := &req.parser
	p.req, p.lim = req, lim
	if err := readHead(rd, lim, p, errURITooLong, errHeadTooLarge); err != nil {
		return err
	}
	return p.finish()
}

type reqParser struct {
	req *Request
	lim limits
	st  requestState
}

func (p *reqParser) startLine(line []byte) error {
	r := p.req
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errMalformedReq
	}
	r.method = line[:sp1]
	if !isToken(r.method) {
		return errMalformedReq
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errMalformedReq
	}
	r.target = rest[:sp2]
	ver := rest[sp2+1:]
	switch {
	case string(ver) == "HTTP/1.1":
		r.proto = HTTP11
	case string(ver) == "HTTP/1.0":
		r.proto = HTTP10
	case len(ver) == 8 && string(ver[:5]) == "HTTP/" && ver[5] >= '0' && ver[5] <= '9' && ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9':
		return errBadVersion
	default:
		return errMalformedReq
	}
	for _, c := range r.target {
		if c <= ' ' || c == 0x7f {
			return errMalformedReq
		}
	}
	if string(r.method) == "CONNECT" {
		// authority-form (RFC 9112 3.2.3): host:port, nothing else.
		if r.target[0] == '/' || bytes.IndexByte(r.target, ':') < 0 || bytes.IndexAny(r.target, "/?#@") >= 0 {
			return errMalformedReq
		}
		r.connect = true
		return nil
	}
	t := r.target
	switch {
	case t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		if string(r.method) != "OPTIONS" {
			return errMalformedReq
		}
	case len(t) > 7 && equalFold(t[:7], "http://"), len(t) > 8 && equalFold(t[:8], "https://"):
		// absolute-form: the authority wins over Host (RFC 9112 3.2.2);
		// the upstream gets origin-form.
		i := bytes.IndexByte(t, ':') + 3
		a := t[i:]
		j := bytes.IndexAny(a, "/?")
		if j < 0 {
			j = len(a)
		}
		p.st.absHost = a[:j]
		if len(p.st.absHost) == 0 {
			return errMalformedReq
		}
		t = a[j:]
		if len(t) == 0 || t[0] == '?' {
			t = append(t[:0:0], '/') // rare form; allocation is acceptable
			t = append(t, a[j:]...)
		}
	default:
		return errMalformedReq
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		r.path, r.query = t[:q], t[q+1:]
	} else {
		r.path = t
	}
	return nil
}

func (p *reqParser) field(h Header) error {
	r := p.req
	if len(r.headers) >= p.lim.maxHeaders {
		return errTooManyHeaders
	}
	r.headers = append(r.headers, h)
	n, v := h.Name, h.Value
	switch len(n) {
	case 4:
		if equalFold(n, "host") {
			p.st.hosts++
			r.host = v
		}
	case 6:
		if equalFold(n, "expect") {
			if !equalFold(v, "100-continue") {
				return errExpectation
			}
			r.expectContinue = true
		}
	case 7:
		if equalFold(n, "upgrade") {
			p.st.hasUpgrade = true
		}
	case 10:
		if equalFold(n, "connection") {
			for len(v) > 0 {
				var t []byte
				t, v = nextToken(v)
				switch {
				case equalFold(t, "close"):
					r.closeAfter = true
				case equalFold(t, "keep-alive"):
					p.st.keepAlive = true
				case equalFold(t, "upgrade"):
					p.st.connUpg = true
				}
			}
		}
	case 14:
		if equalFold(n, "content-length") {
			cl, ok := parseContentLength(v)
			if !ok || (p.st.clSeen && cl != r.contentLength) {
				return errBadCL
			}
			p.st.clSeen = true
			r.contentLength = cl
		}
	case 17:
		if equalFold(n, "transfer-encoding") {
			p.st.te++
			if p.st.te > 1 {
				return errBadTE
			}
			if !equalFold(v, "chunked") {
				if hasToken(v, "chunked") {
					// chunked with another coding: we do not decode
					// codings, and chunked not last is malformed.
					last := v
					for len(v) > 0 {
						last, v = nextToken(v)
					}
					if !equalFold(last, "chunked") {
						return errBadTE
					}
				}
				return errTEUnsupported
			}
			r.chunked = true
		}
	}
	return nil
}

func (p *reqParser) finish() error {
	r := p.req
	if r.connect {
		// The authority is the target; a Host field, if any, is ignored
		// (it should repeat the authority).
		if p.st.hosts > 1 {
			return errNoHost
		}
		r.host = r.target
	} else if p.st.absHost != nil {
		r.host = p.st.absHost
		if r.proto == HTTP11 && p.st.hosts != 1 {
			return errNoHost
		}
	} else if p.st.hosts > 1 || (r.proto == HTTP11 && p.st.hosts == 0) {
		return errNoHost
	}
	for _, c := range r.host {
		switch c {
		case ' ', '\t', '/', '\\', '?', '#', '@', ',':
			return errBadHost
		}
	}
	if r.chunked {
		if r.proto == HTTP10 {
			return errTE10
		}
		if p.st.clSeen {
			return errCLAndTE
		}
		r.contentLength = -1
	}
	if r.proto == HTTP10 && !p.st.keepAlive {
		r.closeAfter = true
	}
	r.upgrade = p.st.connUpg && p.st.hasUpgrade && r.proto == HTTP11
	return nil
}

// response is a parsed upstream response head.
type response struct {
	status        int
	proto         Proto
	reason        []byte
	headers       []Header
	contentLength int64
	chunked       bool
	closeAfter    bool
	keepAlive     bool
	clSeen        bool
	te            int
	maxHeaders    int
}

func (r *response) reset(maxHeaders int) {
	h := r.headers[:0]
	*r = response{headers: h, contentLength: -1, maxHeaders: maxHeaders}
}

func (r *response) startLine(line []byte) error {
	// HTTP-version SP 3DIGIT SP [reason]; tolerate a missing reason.
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return errUpstreamHead
	}
	switch line[7] {
	case '1':
		r.proto = HTTP11
	case '0':
		r.proto = HTTP10
	default:
		return errUpstreamHead
	}
	s := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errUpstreamHead
		}
		s = s*10 + int(c-'0')
	}
	if s < 100 {
		return errUpstreamHead
	}
	r.status = s
	if len(line) > 12 {
		if line[12] != ' ' || !validValue(line[13:]) {
			return errUpstreamHead
		}
		r.reason = line[13:]
	}
	return nil
}

func (r *response) field(h Header) error {
	if len(r.headers) >= r.maxHeaders {
		return errUpstreamHead
	}
	r.headers = append(r.headers, h)
	n, v := h.Name, h.Value
	switch len(n) {
	case 10:
		if equalFold(n, "connection") {
			if hasToken(v, "close") {
				r.closeAfter = true
			}
			if hasToken(v, "keep-alive") {
				r.keepAlive = true
			}
		}
	case 14:
		if equalFold(n, "content-length") {
			cl, ok := parseContentLength(v)
			if !ok || (r.clSeen && cl != r.contentLength) {
				return errUpstreamHead
			}
			r.clSeen = true
			r.contentLength = cl
		}
	case 17:
		if equalFold(n, "transfer-encoding") {
			r.te++
			if r.te > 1 || !equalFold(v, "chunked") {
				return errUpstreamHead
			}
			r.chunked = true
		}
	}
	return nil
}

func (r *response) finish() error {
	if r.chunked && r.clSeen {
		return errUpstreamHead // smuggling vector; refuse rather than guess
	}
	if r.chunked {
		r.contentLength = -1
	}
	if r.proto == HTTP10 && !r.keepAlive {
		r.closeAfter = true
	}
	return nil
}

// bodyless reports whether a response to method with status has no body
// regardless of its framing headers (RFC 9112 6.3).
func bodyless(method []byte, status int) bool {
	return status < 200 || status == 204 || status == 304 || string(method) == "HEAD"
}

// hopByHop reports header fields that are connection-specific (RFC 9110
// 7.6.1) and never forwarded as-is.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 7:
		return equalFold(name, "trailer") || equalFold(name, "upgrade")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 14:
		return equalFold(name, "content-length")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding")
	}
	return false
}

// listedInConnection reports whether name is nominated by any Connection
// field in hs.
func listedInConnection(hs []Header, name []byte) bool {
	for i := range hs {
		if len(hs[i].Name) == 10 && equalFold(hs[i].Name, "connection") {
			v := hs[i].Value
			for len(v) > 0 {
				var t []byte
				t, v = nextToken(v)
				if equalFoldBytes(t, name) {
					return true
				}
			}
		}
	}
	return false
}
