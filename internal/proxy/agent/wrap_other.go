//go:build !linux

package agent

import "syscall"

// appSysProcAttr: no parent-death signal outside Linux.
func appSysProcAttr() *syscall.SysProcAttr { return nil }
