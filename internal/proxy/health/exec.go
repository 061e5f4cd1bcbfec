package health

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// maxOutputInError bounds how much of a failing command's output ends up in
// LastError. Output beyond it is discarded as it arrives, so a chatty probe
// cannot grow the proxy's memory.
const maxOutputInError = 512

// execWaitDelay is how long Wait keeps copying output after the command has
// exited (or been killed). Only a process that left the group (setsid) can
// hold the pipes open that long; then they are closed and it is abandoned.
const execWaitDelay = time.Second

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.buf)) }

// execResult turns a finished command into the probe's error.
func execResult(what string, waitErr error, stdout, stderr *tailBuffer) error {
	if waitErr == nil || errors.Is(waitErr, exec.ErrWaitDelay) {
		// ErrWaitDelay with a zero exit: the command succeeded, only a
		// process that escaped its group kept the output open.
		return nil
	}
	out := stderr.String()
	if out == "" {
		out = stdout.String()
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("%s: %w", what, waitErr)
	}
	var msg string
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		msg = fmt.Sprintf("%s: killed by signal %s", what, ws.Signal())
	} else {
		msg = fmt.Sprintf("%s: exited with code %d", what, ee.ExitCode())
	}
	if out != "" {
		msg += ": " + out
	}
	return errors.New(msg)
}
