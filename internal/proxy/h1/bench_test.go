package h1

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
)

// readMessage reads one HTTP message with a Content-Length body from c into
// buf without allocating; it returns the header length and total length.
func readMessage(c net.Conn, buf []byte) (int, error) {
	n := 0
	for {
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			head := buf[:i]
			cl := 0
			if j := bytes.Index(head, []byte("Content-Length: ")); j >= 0 {
				rest := head[j+16:]
				k := bytes.IndexByte(rest, '\r')
				if k < 0 {
					k = len(rest)
				}
				cl, _ = strconv.Atoi(string(rest[:k]))
			}
			total := i + 4 + cl
			for n < total {
				m, err := c.Read(buf[n:])
				if err != nil {
					return n, err
				}
				n += m
			}
			return total, nil
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			return n, err
		}
		n += m
	}
}

// startRawEcho is a zero-allocation upstream that answers every request with
// a fixed 1 KiB body, so benchmark allocations are the proxy's own.
func startRawEcho(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("r", 1024))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := readMessage(c, buf); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

type nopObserver struct{}

func (nopObserver) RequestStart(*Request)        {}
func (nopObserver) RequestEnd(*Request, Summary) {}

// BenchmarkProxyRoundTrip measures one keep-alive 1 KiB POST through the
// proxy over loopback (client -> h1 -> upstream -> h1 -> client).
func BenchmarkProxyRoundTrip(b *testing.B) {
	up := startRawEcho(b)
	dec := Decision{
		Upstream:          up,
		SetRequestHeaders: []Header{{[]byte("x-weft-route"), []byte("bench")}},
		Done:              func(int, error) {},
	}
	_, addr := startProxy(b, Config{Router: RouterFunc(func(*Request) Decision { return dec }), Observer: nopObserver{}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("POST /echo?x=1 HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: bench\r\nAccept: */*\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("q", 1024))
	buf := make([]byte, 64<<10)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n, err := readMessage(c, buf)
		if err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) {
			b.Fatalf("%v %q", err, buf[:min(n, 200)])
		}
	}
	for i := 0; i < 100; i++ { // warm pools
		roundTrip()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
}

// BenchmarkParseRequest measures the request parser alone.
func BenchmarkParseRequest(b *testing.B) {
	raw := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: svc.ns.svc.cluster.local\r\nUser-Agent: bench\r\nAccept: */*\r\nX-Request-Id: 0123456789abcdef\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	rd := reader{buf: make([]byte, 16<<10+bodyArea)}
	req := Request{headers: make([]Header, 0, 32)}
	lim := limits{maxLine: 8 << 10, maxHead: 16 << 10, maxHeaders: 100}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		rd.r, rd.w = 0, copy(rd.buf, raw)
		if err := parseRequest(&rd, lim, &req); err != nil {
			b.Fatal(err)
		}
	}
}
