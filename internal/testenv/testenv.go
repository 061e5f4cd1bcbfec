// Package testenv starts real Weft components for tests: a weftd on
// 127.0.0.1:0 with temporary data and config dirs, and helpers to write
// config files. Only tests import it.
package testenv

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/controlplane"
)

// Weftd is a running in-process control plane.
type Weftd struct {
	*controlplane.Server
	ConfigDir string
	DataDir   string
	cancel    context.CancelFunc
	done      chan error
}

// WeftdOptions tunes StartWeftd.
type WeftdOptions struct {
	// ConfigFiles are written into the config dir before start (name -> YAML).
	ConfigFiles map[string]string
	// DataDir reuses an existing data dir (restart tests); empty: a new temp dir.
	DataDir  string
	Debounce time.Duration
	// Log shows weftd's logs in the test output (they are discarded otherwise).
	Log bool
	// AutoregistrationGrace sets weftd's auto-registration grace period (0: its default).
	AutoregistrationGrace time.Duration
	// AllowInsecureAutoregistration lets plaintext xDS clients auto-register.
	AllowInsecureAutoregistration bool
	// CertTTL is the default workload certificate lifetime (0: weftd's 24h);
	// rotation tests use a few seconds.
	CertTTL time.Duration
}

// StartWeftd starts weftd with plaintext xDS and monitoring on loopback ports
// chosen by the kernel, and stops it when the test ends.
func StartWeftd(t testing.TB, opts WeftdOptions) *Weftd {
	t.Helper()
	cfgDir := t.TempDir()
	for name, body := range opts.ConfigFiles {
		WriteFile(t, filepath.Join(cfgDir, name), body)
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	var w io.Writer = io.Discard
	if opts.Log {
		w = os.Stderr
	}
	debounce := opts.Debounce
	if debounce == 0 {
		debounce = 20 * time.Millisecond
	}
	srv, err := controlplane.New(controlplane.Config{
		ConfigDir:                     cfgDir,
		DataDir:                       dataDir,
		InsecureXDSAddr:               "127.0.0.1:0",
		SecureAddr:                    "127.0.0.1:0",
		MonitoringAddr:                "127.0.0.1:0",
		Debounce:                      debounce,
		AutoregistrationGrace:         opts.AutoregistrationGrace,
		AllowInsecureAutoregistration: opts.AllowInsecureAutoregistration,
		CertTTL:                       opts.CertTTL,
		Logger:                        slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("start weftd: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wd := &Weftd{Server: srv, ConfigDir: cfgDir, DataDir: dataDir, cancel: cancel, done: make(chan error, 1)}
	go func() { wd.done <- srv.Start(ctx) }()
	t.Cleanup(wd.Stop)
	select {
	case <-srv.Started():
	case err := <-wd.done:
		t.Fatalf("weftd exited during start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("weftd did not bind its listeners in 10s")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + srv.MonitoringAddr.String() + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return wd
			}
		}
		select {
		case err := <-wd.done:
			t.Fatalf("weftd exited during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weftd not ready after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop shuts weftd down and waits for it (idempotent).
func (w *Weftd) Stop() {
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	select {
	case err := <-w.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			slog.Default().Warn("weftd stopped with error", "err", err)
		}
	case <-time.After(10 * time.Second):
	}
}

// WriteFile writes a file atomically enough for the directory watcher
// (write to a temp name, then rename).
func WriteFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Eventually polls cond until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met after %v: %v", timeout, err)
}
