//go:build unix && !linux

package health

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
)

// runExec runs argv in a new process group and kills the group on timeout.
// Unlike on Linux, background children left behind by a command that
// exited on its own are not killed (no waitid WNOWAIT to do it safely).
func runExec(ctx context.Context, fail failFunc, argv []string) error {
	what := fmt.Sprintf("exec probe: %q", argv)
	stdout := &tailBuffer{max: maxOutputInError}
	stderr := &tailBuffer{max: maxOutputInError}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return fail(what, ctx.Err())
	}
	return execResult(what, waitErr, stdout, stderr)
}
