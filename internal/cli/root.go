// Package cli implements weftctl's commands. Every command writes to the
// writers it is given, so tests run the real commands in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/api"
)

// Version is weftctl's version, set at build time with -ldflags.
var Version = "dev"

// globals are the flags every command shares.
type globals struct {
	server    string
	dataDir   string
	tokenFile string
	timeout   time.Duration
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
}

// exitError carries a specific exit code (1: failure, 2: usage) through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// Run executes weftctl with args and returns the process exit code.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "weftctl",
		Short:         "weftctl manages a Weft service mesh",
		Long:          "weftctl applies and inspects Istio-API config on weftd and shows the state of connected proxies.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", "127.0.0.1:15014", "weftd monitoring/API address")
	pf.StringVar(&g.dataDir, "data-dir", api.DefaultDataDir(), "weftd's data dir, where the admin token is read from")
	pf.StringVar(&g.tokenFile, "token-file", "", "admin token file (default <data-dir>/admin.token)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long to wait for weftd")

	root.AddCommand(
		newApplyCmd(g),
		newGetCmd(g),
		newDeleteCmd(g),
		newValidateCmd(g),
		newProxyStatusCmd(g),
		newAnalyzeCmd(g),
		newVersionCmd(g),
		newTokenCmd(g),
		newCACmd(g),
		newVMCmd(g),
		newTopCmd(g),
	)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "Error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// client builds an API client from the global flags.
func (g *globals) client() (*api.Client, error) {
	path := g.tokenFile
	if path == "" {
		path = filepath.Join(g.dataDir, api.TokenFile)
	}
	tok, err := api.ReadToken(path)
	if err != nil {
		return nil, err
	}
	c := api.NewClient(g.server, tok)
	c.HTTP.Timeout = g.timeout
	return c, nil
}

func (g *globals) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.timeout)
}

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}
