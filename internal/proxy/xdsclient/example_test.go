package xdsclient_test

import (
	"context"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// The proxy wires the client to the runtime: every candidate is built into a
// Snapshot; a build error becomes the NACK's error_detail and the Holder keeps
// serving the last good Snapshot.
func ExampleNew() {
	holder := runtime.NewHolder(nil)
	c, err := xdsclient.New(xdsclient.Config{
		ServerAddr: "weftd.weft-system:15010",
		Node:       &corev3.Node{Id: "sidecar~10.0.0.5~productpage-v1-abc.default~default.svc.cluster.local"},
		Logger:     slog.Default(),
		Apply: func(u xdsclient.Update) error {
			s, err := runtime.Build(holder.Load(), u.Resources...)
			if err != nil {
				return err
			}
			holder.Store(s)
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a real proxy runs until shutdown
	_ = c.Run(ctx)
	_ = c.Status() // for the admin endpoint
}
