package h1

import (
	"bytes"
	"io"
	"net"
	"time"
)

// reader is a bufio-like reader whose buffer also stores the current
// message head. Bytes before base hold the parsed head, so body reads only
// reuse buf[base:], keeping head views valid for the whole exchange.
type reader struct {
	conn net.Conn
	raw  *rawReader // nil: use conn.Read
	buf  []byte
	r, w int
	base int
	n    int64 // total bytes read from conn, for retry safety

	// pendingDeadline, if set, is applied before the next blocking read.
	// Most request heads arrive in the read that ended the idle wait, so
	// the slowloris deadline costs nothing unless a head is fragmented.
	pendingDeadline time.Time
}

// armDeadline applies a pending read deadline before blocking.
func (rd *reader) armDeadline() {
	if !rd.pendingDeadline.IsZero() {
		_ = rd.conn.SetReadDeadline(rd.pendingDeadline)
		rd.pendingDeadline = time.Time{}
	}
}

// fill reads once from the connection into buf[w:], at most max bytes
// (max <= 0: no limit).
func (rd *reader) fill(max int64) error {
	p := rd.buf[rd.w:]
	if max > 0 && int64(len(p)) > max {
		p = p[:max]
	}
	if len(p) == 0 {
		return errBufferFull
	}
	var n int
	var err error
	if rd.raw != nil {
		n, err = rd.raw.Read(p)
	} else {
		n, err = rd.conn.Read(p)
	}
	rd.w += n
	rd.n += int64(n)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// startHead moves unread bytes to the front before a new message head.
func (rd *reader) startHead() {
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	} else if rd.r > 0 {
		rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.r = 0
	}
	rd.base = 0
}

// compactBody moves unread bytes down to base so body reads have room.
func (rd *reader) compactBody() {
	if rd.r == rd.w {
		rd.r, rd.w = rd.base, rd.base
	} else if rd.r > rd.base {
		rd.w = rd.base + copy(rd.buf[rd.base:], rd.buf[rd.r:rd.w])
		rd.r = rd.base
	}
}

func (rd *reader) buffered() int { return rd.w - rd.r }

// readLine returns the next CRLF-terminated line in the body area (without
// CRLF) and the raw line including CRLF. Bare LF and over-long lines fail.
func (rd *reader) readLine(max int) (line, raw []byte, err error) {
	scan := rd.r
	for {
		if i := bytes.IndexByte(rd.buf[scan:rd.w], '\n'); i >= 0 {
			end := scan + i
			if end == rd.r || rd.buf[end-1] != '\r' {
				return nil, nil, errBareLF
			}
			raw = rd.buf[rd.r : end+1]
			line = rd.buf[rd.r : end-1]
			rd.r = end + 1
			return line, raw, nil
		}
		if rd.w-rd.r >= max {
			return nil, nil, errLineTooLong
		}
		if rd.w == len(rd.buf) {
			rd.compactBody()
		}
		scan = rd.w // everything before w was scanned
		if err := rd.fill(0); err != nil {
			return nil, nil, err
		}
	}
}

// writer batches small writes (head + small body) into one syscall.
type writer struct {
	conn net.Conn
	raw  *rawWriter // nil: use conn.Write
	buf  []byte
	n    int64 // bytes written to conn
}

func (w *writer) out(p []byte) (int, error) {
	if w.raw != nil {
		return w.raw.Write(p)
	}
	return w.conn.Write(p)
}

func (w *writer) write(p []byte) error {
	if len(w.buf)+len(p) <= cap(w.buf) {
		w.buf = append(w.buf, p...)
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if len(p) >= cap(w.buf)/2 {
		n, err := w.out(p)
		w.n += int64(n)
		return err
	}
	w.buf = append(w.buf, p...)
	return nil
}

func (w *writer) writeString(s string) { w.buf = append(w.buf, s...) }

func (w *writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.out(w.buf)
	w.n += int64(n)
	w.buf = w.buf[:0]
	return err
}
