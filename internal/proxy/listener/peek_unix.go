//go:build unix

package listener

import (
	"errors"
	"net"
	"syscall"
	"time"
)

var connectPrefix = []byte("CONNECT ")

// isConnect peeks (MSG_PEEK, nothing is consumed) at the first bytes of a
// fresh connection to tell a CONNECT tunnel request apart from a plain HTTP
// request, so the connection can be handed to h1 untouched and keep its raw
// socket I/O.
func isConnect(c net.Conn, deadline time.Time) (bool, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, err
	}
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	var buf [8]byte
	for {
		var n int
		var serr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, serr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
			return !errors.Is(serr, syscall.EAGAIN)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, errors.New("listener: connection closed before a request")
		}
		if n == len(buf) || string(buf[:n]) != string(connectPrefix[:n]) {
			return string(buf[:n]) == string(connectPrefix), nil
		}
		// A partial "CONNECT" prefix: wait for more bytes (bounded by the deadline).
		if time.Now().After(deadline) {
			return false, errors.New("listener: request line timeout")
		}
		time.Sleep(time.Millisecond)
	}
}
