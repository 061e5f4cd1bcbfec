//go:build unix

package listener

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

func init() {
	newSyscallPeeker = func(tc *net.TCPConn, deadline time.Time) peeker {
		rc, err := tc.SyscallConn()
		if err != nil {
			return nil
		}
		return &tcpPeeker{rc: rc, deadline: deadline}
	}
}

// tcpPeeker reads with MSG_PEEK (nothing is consumed), waiting for more
// bytes within the connection's read deadline.
type tcpPeeker struct {
	rc       syscall.RawConn
	deadline time.Time
	buf      [maxClientHello]byte
}

func (p *tcpPeeker) peek(want int) ([]byte, error) {
	for {
		var n int
		var serr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, _, serr = syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK)
			return !errors.Is(serr, syscall.EAGAIN)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, io.EOF
		}
		if n >= want {
			return p.buf[:n], nil
		}
		// Part of what we need arrived: the socket stays readable, so wait
		// a little for the rest (bounded by the deadline).
		if time.Now().After(p.deadline) {
			return p.buf[:n], os.ErrDeadlineExceeded
		}
		time.Sleep(time.Millisecond)
	}
}
