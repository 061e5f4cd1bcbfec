package listener

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/internal/proxy/h2"
)

// sniffTimeout bounds how long a new connection may take to send its first
// bytes before protocol detection gives up (and hands it to HTTP/1.1, whose
// own header timeout then applies).
const sniffTimeout = 10 * time.Second

// isH2 reports whether c starts with the HTTP/2 connection preface. Inside
// mesh mTLS the ALPN is Istio's ("istio", ...), which says nothing about
// the protocol the client speaks, so the decrypted stream is sniffed too.
func isH2(c net.Conn) bool {
	if pc, ok := c.(*PeerConn); ok {
		return pc.startsWithH2Preface()
	}
	return isH2c(c)
}

// isH2c reports whether c starts with the HTTP/2 connection preface (h2c
// prior knowledge: gRPC and HTTP/2 clients without TLS). It peeks with
// MSG_PEEK, so nothing is consumed and HTTP/1.1 connections reach the h1
// engine untouched (raw socket I/O included).
func isH2c(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	defer c.SetReadDeadline(time.Time{})
	var buf [h2.PrefaceLen]byte
	result := false
	for attempt := 0; attempt < 50; attempt++ {
		n, perr := 0, error(nil)
		err := rc.Read(func(fd uintptr) bool {
			n, _, perr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return !errors.Is(perr, unix.EAGAIN)
		})
		if err != nil || perr != nil || n == 0 {
			return false
		}
		if !prefixOfPreface(buf[:n]) {
			return false
		}
		if n == len(buf) {
			result = h2.IsPreface(buf[:])
			break
		}
		// A partial preface (rare: clients send it in one segment): the
		// peeked bytes keep the socket readable, so wait a little.
		time.Sleep(2 * time.Millisecond)
	}
	return result
}

func prefixOfPreface(b []byte) bool {
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	return len(b) <= len(preface) && string(b) == preface[:len(b)]
}
