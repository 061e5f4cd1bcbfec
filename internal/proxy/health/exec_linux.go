package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// runExec runs argv in a new process group and waits for it or for ctx. On
// timeout it kills the whole group. Either way it kills what is left of the
// group (background children of a shell) before reaping the leader: while
// the leader is an unreaped zombie its pid, which is the group id, cannot
// be reused, so the kill cannot hit an unrelated process.
func runExec(ctx context.Context, fail failFunc, argv []string) error {
	what := fmt.Sprintf("exec probe: %q", argv)
	stdout := &tailBuffer{max: maxOutputInError}
	stderr := &tailBuffer{max: maxOutputInError}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	pid := cmd.Process.Pid

	exited := make(chan error, 1)
	go func() {
		// WNOWAIT: learn that the leader exited without reaping it.
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				exited <- err
				return
			}
		}
	}()

	timedOut := false
	select {
	case <-exited:
	case <-ctx.Done():
		timedOut = true
		_ = unix.Kill(-pid, unix.SIGKILL)
		<-exited
	}
	// ESRCH (group already empty) is the common, fine case.
	_ = unix.Kill(-pid, unix.SIGKILL)
	waitErr := cmd.Wait()
	if timedOut {
		return fail(what, ctx.Err())
	}
	return execResult(what, waitErr, stdout, stderr)
}
