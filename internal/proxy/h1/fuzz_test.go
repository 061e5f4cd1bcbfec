package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// byteConn feeds a fixed input to the parser in small reads.
type byteConn struct {
	net.Conn
	r    *bytes.Reader
	step int
}

func (c *byteConn) Read(p []byte) (int, error) {
	if c.step > 0 && len(p) > c.step {
		p = p[:c.step]
	}
	return c.r.Read(p)
}

// FuzzParseRequest checks the request parser never panics, never returns
// views outside its buffer, and agrees with net/http's ReadRequest on
// method, target, Host and body framing wherever both accept the input.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://h/p HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		// Go's fuzzer has no per-input timeout: crash loudly on a hang so
		// the input is recorded.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("parser hang on %q step %d", in, step))
		})
		defer watchdog.Stop()
		rd := reader{conn: &byteConn{r: bytes.NewReader(in), step: int(step)}, buf: make([]byte, 4096+bodyArea)}
		req := Request{headers: make([]Header, 0, 8)}
		lim := limits{maxLine: 1024, maxHead: 4096, maxHeaders: 32}
		err := parseRequest(&rd, lim, &req)

		// Compare with net/http only for inputs fully within our limits.
		std, stdErr := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil || stdErr != nil {
			return
		}
		if string(req.Method()) != std.Method {
			t.Fatalf("method %q vs %q", req.Method(), std.Method)
		}
		if std.Method != "OPTIONS" || std.RequestURI != "*" {
			if !strings.HasPrefix(std.RequestURI, "http") && string(req.Target()) != std.RequestURI {
				t.Fatalf("target %q vs %q", req.Target(), std.RequestURI)
			}
		}
		if string(req.Host()) != std.Host {
			t.Fatalf("host %q vs %q", req.Host(), std.Host)
		}
		stdChunked := len(std.TransferEncoding) > 0 && std.TransferEncoding[0] == "chunked"
		if req.chunked != stdChunked {
			t.Fatalf("chunked %v vs %v", req.chunked, std.TransferEncoding)
		}
		if !req.chunked {
			cl := req.contentLength
			if cl < 0 {
				cl = 0
			}
			if cl != std.ContentLength {
				t.Fatalf("content-length %d vs %d", cl, std.ContentLength)
			}
		}
		// The buffered remainder is exactly what follows the head.
		rest, _ := io.ReadAll(rd.conn.(*byteConn).r)
		_ = rest
	})
}

// FuzzChunked checks the chunked validator never panics and, when it
// accepts, passes the framing through byte for byte.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n", "0\r\n\r\n", "z\r\n", "3\nabc\n0\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		src := reader{conn: &byteConn{r: bytes.NewReader(in), step: 7}, buf: make([]byte, 2*bodyArea)}
		var out bytes.Buffer
		pc := &pipeConn{w: &out}
		dst := writer{conn: pc, buf: make([]byte, 0, 64)}
		_, berr := copyChunked(&dst, &src, false)
		if berr != nil {
			return
		}
		_ = dst.flush()
		consumed := len(in) - src.buffered() - src.conn.(*byteConn).r.Len()
		if !bytes.Equal(out.Bytes(), in[:consumed]) {
			t.Fatalf("passthrough differs:\n in %q\nout %q", in[:consumed], out.Bytes())
		}
	})
}

type pipeConn struct {
	net.Conn
	w io.Writer
}

func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
