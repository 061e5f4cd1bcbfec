package h1

import (
	"bytes"
	"errors"
)

// protoError is a client protocol error answered locally with Status and
// the connection closed. Values are package-level so the error path does
// not allocate either.
type protoError struct {
	Status int
	Reason string
}

func (e *protoError) Error() string { return "h1: " + e.Reason }

var (
	errBareLF         = &protoError{400, "bare LF or CR in message framing"}
	errLineTooLong    = &protoError{400, "line too long"}
	errBufferFull     = &protoError{431, "message head too large"}
	errMalformedReq   = &protoError{400, "malformed request line"}
	errURITooLong     = &protoError{414, "request-target too long"}
	errHeadTooLarge   = &protoError{431, "request header section too large"}
	errTooManyHeaders = &protoError{431, "too many header fields"}
	errBadVersion     = &protoError{505, "HTTP version not supported"}
	errBadHeaderName  = &protoError{400, "invalid header field name"}
	errBadHeaderValue = &protoError{400, "invalid header field value"}
	errObsFold        = &protoError{400, "obsolete line folding"}
	errNoHost         = &protoError{400, "missing or duplicate Host"}
	errBadHost        = &protoError{400, "invalid Host"}
	errBadCL          = &protoError{400, "invalid Content-Length"}
	errCLAndTE        = &protoError{400, "both Content-Length and Transfer-Encoding"}
	errBadTE          = &protoError{400, "invalid Transfer-Encoding"}
	errTEUnsupported  = &protoError{501, "unsupported transfer coding"}
	errTE10           = &protoError{400, "Transfer-Encoding in HTTP/1.0 request"}
	errExpectation    = &protoError{417, "unsupported expectation"}
	errBadChunk       = &protoError{400, "invalid chunked framing"}
	errBadStatusLine  = &protoError{502, "malformed upstream status line"}
)

// errUpstreamHead marks an upstream response that failed validation.
var errUpstreamHead = errors.New("h1: malformed upstream response")

// limits bounds a message head.
type limits struct {
	maxLine    int // request line
	maxHead    int // whole head
	maxHeaders int
}

// tchar per RFC 9110 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// validValue: field-value chars are VCHAR, obs-text, SP and HTAB.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// nextToken splits a comma-separated list: it returns the first element
// (OWS-trimmed, possibly empty) and the rest.
func nextToken(v []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

// hasToken reports whether the comma-separated list v contains tok.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v = nextToken(v)
		if equalFold(t, tok) {
			return true
		}
	}
	return false
}

// parseHeaderLine splits "name: value" strictly.
func parseHeaderLine(line []byte) (h Header, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return h, errObsFold
	}
	i := bytes.IndexByte(line, ':')
	if i <= 0 || !isToken(line[:i]) {
		// Includes whitespace between name and colon (RFC 9112 5.1: 400).
		return h, errBadHeaderName
	}
	v := trimOWS(line[i+1:])
	if !validValue(v) {
		return h, errBadHeaderValue
	}
	return Header{Name: line[:i], Value: v}, nil
}

// parseContentLength accepts 1-18 ASCII digits only.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// headSink receives a message head as it is parsed.
type headSink interface {
	startLine(line []byte) error
	field(h Header) error
}

// readHead reads a message head into rd, calling sink.startLine for the
// start line and sink.field for every header field. It leaves rd.r and
// rd.base after the terminating empty line.
func readHead(rd *reader, lim limits, sink headSink, lineErr, headErr error) error {
	rd.startHead()
	lineStart, scan := 0, 0
	gotFirst := false
	skipped := 0
	for {
		i := bytes.IndexByte(rd.buf[scan:rd.w], '\n')
		if i < 0 {
			scan = rd.w
			if !gotFirst && rd.w-lineStart > lim.maxLine {
				return lineErr
			}
			if rd.w >= lim.maxHead {
				if !gotFirst {
					return lineErr
				}
				return headErr
			}
			rd.armDeadline()
			if err := rd.fill(0); err != nil {
				return err
			}
			continue
		}
		nl := scan + i
		if nl == lineStart || rd.buf[nl-1] != '\r' {
			return errBareLF
		}
		line := rd.buf[lineStart : nl-1]
		if bytes.IndexByte(line, '\r') >= 0 {
			return errBareLF
		}
		scan, lineStart = nl+1, nl+1
		if !gotFirst {
			if len(line) == 0 && skipped < 2 {
				// RFC 9112 2.2: ignore at least one empty line before the
				// request-line (robustness for clients that add CRLF).
				skipped++
				continue
			}
			if len(line) > lim.maxLine {
				return lineErr
			}
			if err := sink.startLine(line); err != nil {
				return err
			}
			gotFirst = true
			continue
		}
		if len(line) == 0 {
			if lineStart > lim.maxHead {
				return headErr
			}
			rd.r, rd.base = lineStart, lineStart
			return nil
		}
		h, err := parseHeaderLine(line)
		if err != nil {
			return err
		}
		if err := sink.field(h); err != nil {
			return err
		}
	}
}
