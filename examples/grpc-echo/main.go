// Command grpc-echo is the demo's proxyless gRPC workload: in server mode it
// answers with its version name; in client mode it calls a service through
// grpc-go's real xDS resolver (xds:///host:port) with a bootstrap pointing at
// weftd and reports which versions answered.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"
)

type echo struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (e *echo) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: e.name}, nil
}

func main() {
	serve := flag.String("serve", "", "serve as this version name (server mode)")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (server mode)")
	target := flag.String("target", "", "xds:///host:port to call (client mode)")
	xdsAddr := flag.String("xds", "127.0.0.1:15010", "weftd xDS address (client mode)")
	nodeID := flag.String("node", "sidecar~127.0.0.1~demo-client.default~default.svc.cluster.local", "xDS node id")
	namespace := flag.String("namespace", "default", "namespace of this client")
	n := flag.Int("n", 100, "calls per batch (client mode)")
	every := flag.Duration("every", 0, "repeat a batch at this interval until stopped (0: one batch)")
	header := flag.String("header", "", "send this metadata, NAME=VALUE")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *serve != "":
		err = runServer(ctx, *serve, *addr)
	case *target != "":
		err = runClient(ctx, *target, *xdsAddr, *nodeID, *namespace, *n, *every, *header)
	default:
		err = fmt.Errorf("give -serve NAME or -target xds:///host:port")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc-echo:", err)
		os.Exit(1)
	}
}

func runServer(ctx context.Context, name, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, &echo{name: name})
	go func() { <-ctx.Done(); s.GracefulStop() }()
	fmt.Printf("grpc-echo %s listening on %s\n", name, ln.Addr())
	return s.Serve(ln)
}

func runClient(ctx context.Context, target, xdsAddr, nodeID, ns string, n int, every time.Duration, header string) error {
	bootstrap := fmt.Sprintf(`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],
"node":{"id":%q,"metadata":{"NAMESPACE":%q,"GENERATOR":"grpc"}}}`, xdsAddr, nodeID, ns)
	var res resolver.Builder
	res, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	var md []string
	if k, v, ok := strings.Cut(header, "="); ok {
		md = []string{k, v}
	}
	for {
		counts := map[string]int{}
		for i := 0; i < n && ctx.Err() == nil; i++ {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if len(md) > 0 {
				cctx = metadata.AppendToOutgoingContext(cctx, md...)
			}
			r, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
			cancel()
			if err != nil {
				counts["errors"]++
				continue
			}
			counts[r.GetHostname()]++
		}
		if ctx.Err() != nil {
			return nil
		}
		fmt.Println(tally(counts))
		if every == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

func tally(c map[string]int) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, " ")
}
