//go:build unix

package listener

import (
	"errors"
	"io"
	"net"
	"syscall"
)

func init() { peekSyscall = peekTCP }

// peekTCP reads the first byte with MSG_PEEK (nothing is consumed), waiting
// for it within the connection's read deadline.
func peekTCP(tc *net.TCPConn) (byte, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var buf [1]byte
	var n int
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, serr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		return !errors.Is(serr, syscall.EAGAIN)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return buf[0], nil
}
