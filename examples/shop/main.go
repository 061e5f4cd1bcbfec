// Command shop is the sample application of `make demo` (scripts/demo.sh) and
// docs/quickstart.md: a few small services that know nothing about the mesh.
// Each one runs behind `weft-proxy run`, which starts it once the proxy is
// ready and gives it HTTP_PROXY; calls to other services use mesh names
// (backend.shop.svc.cluster.local) and go through that proxy, which applies
// routing, retries, timeouts, faults, mTLS and authorization.
//
//	shop frontend --listen 127.0.0.1:18080
//	shop backend  --listen 127.0.0.1:18081 --version v1 [--fail-every 3] [--slow 3s]
//	shop ratings  --listen 127.0.0.1:18090 --name ratings-host
//	shop loadgen  --target http://frontend.shop.svc.cluster.local:8080 --qps 20 [--duration 30s | -n 200]
//
// Only the standard library is used, so the code reads as any small service would.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage: shop COMMAND [flags]

commands:
  frontend   HTTP storefront: calls backend (HTTP) and ratings (TCP) through the mesh
  backend    HTTP item service; --version names it, --fail-every and --slow misbehave on purpose
  ratings    TCP rating service (one line in, one line out)
  loadgen    steady traffic to the frontend (until stopped, --duration or -n), with a summary

Run "shop COMMAND -h" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "frontend":
		err = runFrontend(ctx, args)
	case "backend":
		err = runBackend(ctx, args)
	case "ratings":
		err = runRatings(ctx, args)
	case "loadgen":
		err = runLoadgen(ctx, args, os.Stdout)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "shop %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully
// (bounded: in-flight requests get 5s).
func serveHTTP(ctx context.Context, name, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "%s listening on %s\n", name, ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
