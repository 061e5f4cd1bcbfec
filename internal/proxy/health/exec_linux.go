package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

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
	reapGroup(pid)
	if timedOut {
		return fail(what, ctx.Err())
	}
	return execResult(what, waitErr, stdout, stderr)
}

// reapGroup reaps the killed members of process group pgid that are our
// children. They are ours only when this process is a child subreaper
// (prctl PR_SET_CHILD_SUBREAPER; weft-proxy does not set it today, because
// it would then inherit, and have to reap, every orphan of the app it
// wraps); otherwise the orphans went to init, which reaps them, and there
// is nothing to do (ECHILD at once). Polling with
// WNOHANG and a deadline: a member stuck in uninterruptible sleep must not
// stall the prober. Runs after the leader is reaped by cmd.Wait, so it never
// takes os/exec's child from it.
func reapGroup(pgid int) {
	deadline := time.Now().Add(execWaitDelay)
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PGID, pgid, &info, unix.WEXITED|unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil: // ECHILD: none of our children left in the group
			return
		case info.Signo == 0: // Linux zeroes info when no member has exited yet
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
