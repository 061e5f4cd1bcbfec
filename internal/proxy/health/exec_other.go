//go:build !unix

package health

import (
	"context"
	"errors"
)

// runExec is not supported: without process groups a timed-out command's
// children could not be cleaned up.
func runExec(context.Context, failFunc, []string) error {
	return errors.New("exec probe: not supported on this platform")
}
