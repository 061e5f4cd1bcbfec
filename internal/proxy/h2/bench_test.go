package h2

import (
	"context"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// BenchmarkGRPCUnary compares a unary round trip (1 KiB each way) straight
// to the backend with the same call through the proxy. The client, proxy
// and backend share the process, so allocs/op include all three.
func BenchmarkGRPCUnary(b *testing.B) {
	backend, _ := startGRPC(b)
	addr, _ := startProxy(b, Config{Router: static(h1.Decision{Upstream: backend})})
	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 1024)}}
	for _, bc := range []struct{ name, addr string }{{"direct", backend}, {"proxy", addr}} {
		b.Run(bc.name, func(b *testing.B) {
			c := grpcClient(b, bc.addr)
			ctx := context.Background()
			if _, err := c.UnaryCall(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.UnaryCall(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			c := grpcClient(b, bc.addr)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.UnaryCall(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
