package h1

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// Raw socket I/O.
//
// Why: every syscall made through syscall.Syscall runs entersyscall, which
// wakes sysmon whenever it sleeps deeply, and sysmon sleeps deeply whenever
// all Ps were idle, i.e. between requests at moderate load. perf showed two
// futex calls and extra context switches per request from exactly that
// (entersyscallWakeSysmon on the first read after a netpoll wake-up), plus
// P hand-offs when a loopback write outlasts a sysmon tick. The sockets are
// non-blocking, so read(2)/write(2) cannot block: RawSyscall is safe, and
// EAGAIN makes syscall.RawConn park the goroutine on the netpoller, which
// keeps deadlines working. Non-TCP conns (tests, pipes) use the net.Conn.

// rawReader reads from a non-blocking TCP socket with syscall.RawSyscall.
type rawReader struct {
	rc  syscall.RawConn
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // r.do, bound once so Read does not allocate
}

func (r *rawReader) do(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.p[0])), uintptr(len(r.p)))
		switch e {
		case 0:
			r.n = int(n)
			if n == 0 {
				r.err = io.EOF
			}
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			r.err = e
			return true
		}
	}
}

// Read reads once into p.
func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.fn)
	r.p = nil
	if err == nil {
		err = r.err
	}
	return r.n, err
}

// newRawIO returns raw reader and writer for a TCP conn, or nils.
func newRawIO(c net.Conn) (*rawReader, *rawWriter) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, nil
	}
	r, w := &rawReader{rc: rc}, &rawWriter{rc: rc}
	r.fn, w.fn = r.do, w.do
	return r, w
}

// rawWriter writes to a non-blocking TCP socket with syscall.RawSyscall.
type rawWriter struct {
	rc  syscall.RawConn
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // w.do, bound once so Write does not allocate
}

func (w *rawWriter) do(fd uintptr) bool {
	for len(w.p) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.p[0])), uintptr(len(w.p)))
		switch e {
		case 0:
			w.n += int(n)
			w.p = w.p[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			w.err = e
			return true
		}
	}
	return true
}

// Write writes all of p or returns an error.
func (w *rawWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.p, w.n, w.err = p, 0, nil
	err := w.rc.Write(w.fn)
	w.p = nil
	if err == nil {
		err = w.err
	}
	return w.n, err
}
