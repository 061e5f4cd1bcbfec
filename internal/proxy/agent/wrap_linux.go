package agent

import "syscall"

// appSysProcAttr makes the kernel send the app SIGTERM when weft-proxy dies
// (SIGKILL, OOM), so the app never outlives the proxy it depends on. The
// signal is tied to the thread that started the app; weft-proxy never
// locks and ends threads, so that thread lives as long as the process.
func appSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
