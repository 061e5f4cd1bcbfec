package h1

import (
	"errors"
	"io"
)

const maxChunkLine = 4096

// bodyErr wraps which side failed while streaming a body, so the caller can
// pick a status: a failing source (client) or a failing sink (upstream).
type bodyErr struct {
	src bool // true: reading failed; false: writing failed
	err error
}

var errTruncated = errors.New("h1: body truncated")

// copyLength copies exactly n body bytes from src to dst. It never reads
// past the body, so pipelined bytes stay in src.
func copyLength(dst *writer, src *reader, n int64) (int64, *bodyErr) {
	var done int64
	for n > 0 {
		if src.r == src.w {
			// Flush before blocking so streamed bodies are not delayed.
			if err := dst.flush(); err != nil {
				return done, &bodyErr{false, err}
			}
			src.compactBody()
			if err := src.fill(n); err != nil {
				if err == io.EOF {
					err = errTruncated
				}
				return done, &bodyErr{true, err}
			}
		}
		k := src.w - src.r
		if int64(k) > n {
			k = int(n)
		}
		if err := dst.write(src.buf[src.r : src.r+k]); err != nil {
			return done, &bodyErr{false, err}
		}
		src.r += k
		n -= int64(k)
		done += int64(k)
	}
	return done, nil
}

// copyChunked validates chunked framing (RFC 9112 7.1) from src and writes
// it to dst verbatim, or de-chunked when decode is set (for HTTP/1.0
// clients). It returns the number of payload bytes.
func copyChunked(dst *writer, src *reader, decode bool) (int64, *bodyErr) {
	var total int64
	for {
		line, raw, err := src.readLine(maxChunkLine)
		if err != nil {
			return total, chunkReadErr(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return total, &bodyErr{true, errBadChunk}
		}
		if !decode {
			if err := dst.write(raw); err != nil {
				return total, &bodyErr{false, err}
			}
		}
		if size == 0 {
			return total, copyTrailers(dst, src, decode)
		}
		n, berr := copyLength(dst, src, size)
		total += n
		if berr != nil {
			return total, berr
		}
		line, raw, err = src.readLine(maxChunkLine)
		if err != nil {
			return total, chunkReadErr(err)
		}
		if len(line) != 0 {
			return total, &bodyErr{true, errBadChunk}
		}
		if !decode {
			if err := dst.write(raw); err != nil {
				return total, &bodyErr{false, err}
			}
		}
	}
}

func chunkReadErr(err error) *bodyErr {
	switch err {
	case errBareLF, errLineTooLong, errBufferFull:
		err = errBadChunk
	case io.EOF:
		err = errTruncated
	}
	return &bodyErr{true, err}
}

func copyTrailers(dst *writer, src *reader, decode bool) *bodyErr {
	n := 0
	for {
		line, raw, err := src.readLine(maxChunkLine)
		if err != nil {
			return chunkReadErr(err)
		}
		if len(line) > 0 {
			n++
			if n > 64 {
				return &bodyErr{true, errBadChunk}
			}
			if _, err := parseHeaderLine(line); err != nil {
				return &bodyErr{true, errBadChunk}
			}
		}
		if !decode {
			if err := dst.write(raw); err != nil {
				return &bodyErr{false, err}
			}
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// parseChunkSize parses chunk-size [ chunk-ext ]. Sizes above 2^60 and any
// control characters in extensions are rejected.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 && (rest[0] != ';' || !validValue(rest)) {
		return 0, false
	}
	if len(rest) == 0 && i < len(line) {
		return 0, false // trailing whitespace without an extension
	}
	return n, true
}

// copyUntilEOF copies a close-delimited body.
func copyUntilEOF(dst *writer, src *reader) (int64, *bodyErr) {
	var done int64
	for {
		if src.r == src.w {
			if err := dst.flush(); err != nil {
				return done, &bodyErr{false, err}
			}
			src.compactBody()
			if err := src.fill(0); err != nil {
				if err == io.EOF {
					return done, nil
				}
				return done, &bodyErr{true, err}
			}
		}
		if err := dst.write(src.buf[src.r:src.w]); err != nil {
			return done, &bodyErr{false, err}
		}
		done += int64(src.w - src.r)
		src.r = src.w
	}
}
