// Command h1bench runs weft-proxy's HTTP/1.1 engine (internal/proxy/h1)
// with a static Router to one upstream, for the side-by-side benchmark in
// bench/proxy/run.sh. It is not a product binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:18080", "upstream ip:port")
	procs := flag.Int("gomaxprocs", 1, "GOMAXPROCS (the benchmark compares single-worker proxies)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until SIGTERM")
	plain := flag.Bool("plain-io", false, "use net.Conn Read/Write instead of raw non-blocking socket I/O (A/B comparison)")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	if err := run(*listen, *upstream, *cpuProfile, *plain); err != nil {
		fmt.Fprintln(os.Stderr, "h1bench:", err)
		os.Exit(1)
	}
}

func run(listen, upstream, cpuProfile string, plain bool) error {
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	dec := h1.Decision{Upstream: upstream}
	srv, err := h1.NewServer(h1.Config{
		Router:  h1.RouterFunc(func(*h1.Request) h1.Decision { return dec }),
		Pool:    h1.NewPool(h1.PoolConfig{PlainIO: plain}),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
		PlainIO: plain,
	})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
