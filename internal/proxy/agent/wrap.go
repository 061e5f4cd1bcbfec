package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// App describes the application `weft-proxy run -- CMD ARGS...` starts.
type App struct {
	// Command and arguments.
	Command []string
	// ReadyTimeout bounds the wait for the proxy to be ready (certificate,
	// config) before the app starts [60s].
	ReadyTimeout time.Duration
	// StopTimeout is how long the app has to exit after SIGTERM when the
	// proxy stopped first (/quitquitquit); then it gets SIGKILL [10s].
	StopTimeout time.Duration
	// Signals forwards these signals to the app (SIGTERM, SIGINT from main).
	Signals <-chan os.Signal
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// RunApp starts the proxy, waits until it is ready (bounded, with a clear
// error on timeout), then starts the app with HTTP_PROXY/NO_PROXY set in
// explicit mode, forwards signals to it, and when the app exits drains the
// proxy and returns the app's exit code. If the proxy stops first (for
// example /quitquitquit), the app gets SIGTERM, and SIGKILL after
// StopTimeout; the code returned is still the app's (143 when SIGTERM ended
// it, 137 when it had to be killed). On Linux the app also gets SIGTERM if
// weft-proxy itself dies (parent-death signal), so it never runs on without
// its proxy. Istio users need a separate tool (scuttle) for this.
func RunApp(ctx context.Context, cfg Config, app App) (int, error) {
	if len(app.Command) == 0 {
		return 2, errors.New("agent: run: no command after --")
	}
	if app.ReadyTimeout <= 0 {
		app.ReadyTimeout = 60 * time.Second
	}
	if app.StopTimeout <= 0 {
		app.StopTimeout = 10 * time.Second
	}
	a, err := New(cfg)
	if err != nil {
		return 1, err
	}
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- a.Run(pctx) }()
	stopProxy := func() error {
		a.Quit()
		return <-proxyDone
	}

	deadline := time.NewTimer(app.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ready := false; !ready; {
		select {
		case <-ctx.Done():
			return 1, errors.Join(ctx.Err(), stopProxy())
		case err := <-proxyDone:
			return 1, fmt.Errorf("agent: proxy stopped before it was ready: %v", err)
		case <-deadline.C:
			_, why := a.ready()
			return 1, errors.Join(fmt.Errorf("agent: proxy not ready after %s, app not started: %s", app.ReadyTimeout, why), stopProxy())
		case <-tick.C:
			ready, _ = a.ready()
		}
	}

	cmd := exec.Command(app.Command[0], app.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = app.Stdin, app.Stdout, app.Stderr
	cmd.Env = appEnv(os.Environ(), a)
	cmd.SysProcAttr = appSysProcAttr()
	if err := cmd.Start(); err != nil {
		return 127, errors.Join(fmt.Errorf("agent: start %s: %w", app.Command[0], err), stopProxy())
	}
	a.log.Info("app started", "command", strings.Join(app.Command, " "), "pid", cmd.Process.Pid)
	appDone := make(chan error, 1)
	go func() { appDone <- cmd.Wait() }()

	for {
		select {
		case sig := <-app.Signals:
			_ = cmd.Process.Signal(sig)
		case err := <-proxyDone:
			// The proxy is gone (quitquitquit): stop the app too, bounded.
			a.log.Warn("proxy stopped; terminating the app", "err", err, "stop_timeout", app.StopTimeout)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			kill := time.NewTimer(app.StopTimeout)
			defer kill.Stop()
			for {
				select {
				case werr := <-appDone:
					code := exitCode(werr)
					a.log.Info("app exited", "code", code)
					return code, err
				case sig := <-app.Signals:
					_ = cmd.Process.Signal(sig)
				case <-kill.C:
					a.log.Warn("app still running after SIGTERM; killing it", "stop_timeout", app.StopTimeout)
					_ = cmd.Process.Kill()
				}
			}
		case werr := <-appDone:
			code := exitCode(werr)
			a.log.Info("app exited; draining", "code", code)
			return code, stopProxy()
		}
	}
}

// appEnv points the app's HTTP clients at the explicit proxy.
func appEnv(env []string, a *Agent) []string {
	addr := a.HTTPProxyAddr()
	if addr == "" {
		return env
	}
	proxy := "http://" + addr
	noProxy := "localhost,127.0.0.1,::1"
	return append(env, "HTTP_PROXY="+proxy, "http_proxy="+proxy, "NO_PROXY="+noProxy, "no_proxy="+noProxy)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}
