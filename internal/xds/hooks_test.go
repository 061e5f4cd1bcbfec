package xds

import (
	"context"
	"errors"
	"sync"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/model"
)

type hookLog struct {
	mu     sync.Mutex
	events []string
	health []string
}

func (h *hookLog) add(e string) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *hookLog) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

func TestConnectHooks(t *testing.T) {
	h := &hookLog{}
	e := startEnv(t, Config{
		OnConnect: func(ctx context.Context, p *model.Proxy) error {
			md, _ := metadata.FromIncomingContext(ctx)
			if p.ID == "refused" {
				return errors.New("group web is unknown")
			}
			h.add("connect " + p.ID + " group=" + p.Metadata[MetaAutoRegisterGroup] + " hdr=" + first(md.Get("x-test")))
			return nil
		},
		OnDisconnect: func(p *model.Proxy) { h.add("disconnect " + p.ID) },
		OnHealth: func(p *model.Proxy, healthy bool, msg string) {
			h.mu.Lock()
			h.health = append(h.health, p.ID+" "+map[bool]string{true: "healthy", false: "unhealthy"}[healthy]+" "+msg)
			h.mu.Unlock()
		},
	})
	e.update(t, buildModel(t, 1, baseServices()))

	n := node("vm-1", "ns-a")
	n.Metadata.Fields[MetaAutoRegisterGroup] = structpb.NewStringValue("web")
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "x-test", "from-stream"))
	st, err := discovery.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{t: t, stream: st, cancel: cancel, node: n, resps: make(chan *discovery.DiscoveryResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				c.errs <- err
				return
			}
			c.resps <- r
		}
	}()
	c.fetch(cds, nil)
	// A second stream of the same node does not connect again.
	d := e.delta(t, n)
	d.recv()
	if got := h.get(); len(got) != 1 || got[0] != "connect vm-1 group=web hdr=from-stream" {
		t.Fatalf("hooks after connect: %q", got)
	}

	// Health reports reach OnHealth, get no answer and do not break the stream.
	c.send(&discovery.DiscoveryRequest{TypeUrl: HealthInfoType})
	c.send(&discovery.DiscoveryRequest{TypeUrl: HealthInfoType, ErrorDetail: &status.Status{Code: 13, Message: "probe failed: connection refused"}})
	waitFor(t, "sotw health reports", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.health) == 2 })
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: HealthInfoType})
	waitFor(t, "health reports", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.health) == 3 })
	h.mu.Lock()
	want := []string{"vm-1 healthy ", "vm-1 unhealthy probe failed: connection refused", "vm-1 healthy "}
	for i := range want {
		if h.health[i] != want[i] {
			t.Errorf("health[%d] = %q, want %q", i, h.health[i], want[i])
		}
	}
	h.mu.Unlock()
	c.none()
	c.fetch(eds, nil) // the stream still serves
	for _, s := range e.srv.Status() {
		if _, ok := s.PerType[HealthInfoType]; ok {
			t.Errorf("health reports tracked as an xDS type: %+v", s.PerType)
		}
		for _, ts := range s.PerType {
			if ts.NackError != "" {
				t.Errorf("health report recorded as NACK: %+v", ts)
			}
		}
	}

	c.cancel()
	waitFor(t, "first stream closed", func() bool { return len(e.srv.Status()) == 1 })
	if got := h.get(); len(got) != 1 {
		t.Fatalf("disconnect while another stream is open: %q", got)
	}
	d.stream.CloseSend()
	waitFor(t, "disconnect", func() bool { return len(h.get()) == 2 })
	if got := h.get(); got[1] != "disconnect vm-1" {
		t.Fatalf("hooks: %q", got)
	}

	// A refused node gets PermissionDenied with the hook's message and is not served.
	r := e.sotw(t, node("refused", "ns-a"))
	r.send(&discovery.DiscoveryRequest{TypeUrl: cds})
	select {
	case err := <-r.errs:
		if grpcstatus.Code(err) != codes.PermissionDenied || grpcstatus.Convert(err).Message() != "group web is unknown" {
			t.Fatalf("refused stream: %v", err)
		}
	case <-r.resps:
		t.Fatal("refused node was served")
	}
	if len(e.srv.Status()) != 0 {
		t.Fatalf("refused node is listed: %+v", e.srv.Status())
	}
	if got := h.get(); len(got) != 2 {
		t.Fatalf("disconnect hook ran for a refused node: %q", got)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
