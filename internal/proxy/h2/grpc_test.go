package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGRPCUnaryMetadataAndHeaderOps(t *testing.T) {
	backend, svc := startGRPC(t)
	var mu sync.Mutex
	var done []int
	var errs []error
	addr, _ := startProxy(t, Config{Router: RouterFunc(func(req *Request) h1.Decision {
		if !req.IsGRPC() || string(req.Path()) != "/grpc.testing.TestService/UnaryCall" {
			t.Errorf("request view: grpc=%v path=%q", req.IsGRPC(), req.Path())
		}
		if v, _ := req.Header("X-Echo"); string(v) != "hello" {
			t.Errorf("Header(X-Echo) = %q", v)
		}
		return h1.Decision{
			Upstream:             backend,
			SetRequestHeaders:    []h1.Header{{Name: []byte("x-weft-added"), Value: []byte("1")}},
			RemoveRequestHeaders: [][]byte{[]byte("x-secret")},
			AddResponseHeaders:   []h1.Header{{Name: []byte("x-weft-route"), Value: []byte("r1")}},
			Done: func(s int, err error) {
				mu.Lock()
				done, errs = append(done, s), append(errs, err)
				mu.Unlock()
			},
		}
	})})
	c := grpcClient(t, addr)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-echo", "hello", "x-secret", "s3")
	var hdr, trl metadata.MD
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload().GetBody()) != "ping" {
		t.Errorf("payload = %q", resp.GetPayload().GetBody())
	}
	if got := hdr.Get("x-echo-header"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("header x-echo-header = %v", got)
	}
	if got := hdr.Get("x-weft-route"); len(got) != 1 || got[0] != "r1" {
		t.Errorf("header x-weft-route = %v", got)
	}
	if got := trl.Get("x-echo-trailer"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("trailer x-echo-trailer = %v", got)
	}
	md := *svc.lastMD.Load()
	if got := md.Get("x-weft-added"); len(got) != 1 || got[0] != "1" {
		t.Errorf("upstream x-weft-added = %v", got)
	}
	if got := md.Get("x-secret"); len(got) != 0 {
		t.Errorf("upstream x-secret = %v, want removed", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(done) != 1 || done[0] != 200 || errs[0] != nil {
		t.Errorf("Done calls = %v %v", done, errs)
	}
}

func TestGRPCServerStreaming(t *testing.T) {
	backend, _ := startGRPC(t)
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend})})
	c := grpcClient(t, addr)
	var params []*testgrpc.ResponseParameters
	for i := range 20 {
		params = append(params, &testgrpc.ResponseParameters{Size: int32(i * 100)})
	}
	st, err := c.StreamingOutputCall(ctxT(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if len(m.GetPayload().GetBody()) != i*100 {
			t.Fatalf("msg %d size %d", i, len(m.GetPayload().GetBody()))
		}
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if got := st.Trailer().Get("x-count"); len(got) != 1 || got[0] != "20" {
		t.Errorf("trailer x-count = %v", got)
	}
}

func TestGRPCBidiStreaming(t *testing.T) {
	backend, _ := startGRPC(t)
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend})})
	c := grpcClient(t, addr)
	st, err := c.FullDuplexCall(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// Ping-pong: each reply must arrive before the next message is sent,
	// which only works if neither direction is buffered to the end.
	for i := range 100 {
		want := []byte("msg-" + strconv.Itoa(i))
		if err := st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: want}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if !bytes.Equal(m.GetPayload().GetBody(), want) {
			t.Fatalf("recv %d = %q", i, m.GetPayload().GetBody())
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if got := st.Trailer().Get("x-count"); len(got) != 1 || got[0] != "100" {
		t.Errorf("trailer x-count = %v", got)
	}
}

func TestGRPCStatusPassthrough(t *testing.T) {
	backend, _ := startGRPC(t)
	var got int
	addr, _ := startProxy(t, Config{
		Router:   static(h1.Decision{Upstream: backend}),
		Observer: observerFunc(func(req *Request, _ h1.Summary) { got = req.GRPCStatus() }),
	})
	c := grpcClient(t, addr)
	msg := "widget 42 not found: naïve 100% ✓"
	_, err := c.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: msg}})
	s, _ := status.FromError(err)
	if s.Code() != codes.NotFound || s.Message() != msg {
		t.Fatalf("status = %v %q, want NotFound %q", s.Code(), s.Message(), msg)
	}
	if got != int(codes.NotFound) {
		t.Errorf("Observer GRPCStatus = %d", got)
	}
	// Same through a stream (status in real trailers, after messages).
	st, err := c.FullDuplexCall(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("a")}})
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&testgrpc.StreamingOutputCallRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.AlreadyExists), Message: "dup"}})
	_, err = st.Recv()
	if s, _ := status.FromError(err); s.Code() != codes.AlreadyExists || s.Message() != "dup" {
		t.Fatalf("stream status = %v", err)
	}
}

type observerFunc func(*Request, h1.Summary)

func (observerFunc) RequestStart(*Request)                 {}
func (f observerFunc) RequestEnd(r *Request, s h1.Summary) { f(r, s) }

func TestGRPCDeadlineExceeded(t *testing.T) {
	backend, _ := startGRPC(t)
	t.Run("client deadline", func(t *testing.T) {
		addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend})})
		c := grpcClient(t, addr)
		ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-sleep-ms", "2000")
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("route timeout", func(t *testing.T) {
		var sum h1.Summary
		done := make(chan struct{})
		addr, _ := startProxy(t, Config{
			Router:   static(h1.Decision{Upstream: backend, Timeout: 100 * time.Millisecond}),
			Observer: observerFunc(func(_ *Request, s h1.Summary) { sum = s; close(done) }),
		})
		c := grpcClient(t, addr)
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-sleep-ms", "2000")
		start := time.Now()
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		s, _ := status.FromError(err)
		if s.Code() != codes.DeadlineExceeded || s.Message() != reasonTimeout {
			t.Fatalf("status = %v", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("took %v", el)
		}
		<-done
		if sum.Status != 200 || !errors.Is(sum.Err, errTimeout) {
			t.Errorf("summary = %+v", sum)
		}
	})
	t.Run("route timeout mid-stream", func(t *testing.T) {
		addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: backend, Timeout: 200 * time.Millisecond})})
		c := grpcClient(t, addr)
		st, err := c.FullDuplexCall(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("a")}})
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv() // the backend waits for us; the route timeout fires
		if s, _ := status.FromError(err); s.Code() != codes.DeadlineExceeded {
			t.Fatalf("status = %v", err)
		}
	})
}

// TestGRPCLocalAnswerText: a local answer with a body (an RBAC denial)
// gives gRPC clients that text as the status message.
func TestGRPCLocalAnswerText(t *testing.T) {
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Status: 403, Reason: "rbac_access_denied", Body: []byte("RBAC: access denied")})})
	_, err := grpcClient(t, addr).UnaryCall(ctxT(t), &testgrpc.SimpleRequest{})
	if s, _ := status.FromError(err); s.Code() != codes.PermissionDenied || s.Message() != "RBAC: access denied" {
		t.Fatalf("status = %v %q", s.Code(), s.Message())
	}
}

func TestGRPCLocalAnswers(t *testing.T) {
	tests := []struct {
		status int
		code   codes.Code
	}{
		{503, codes.Unavailable},
		{404, codes.Unimplemented},
		{403, codes.PermissionDenied},
		{429, codes.Unavailable},
		{504, codes.DeadlineExceeded},
		{500, codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			reason := "no_healthy_upstream_" + strconv.Itoa(tt.status)
			addr, _ := startProxy(t, Config{Router: static(h1.Decision{Status: tt.status, Reason: reason})})
			c := grpcClient(t, addr)
			var hdr metadata.MD
			_, err := c.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{}, grpc.Header(&hdr))
			s, _ := status.FromError(err)
			if s.Code() != tt.code || s.Message() != reason {
				t.Fatalf("status = %v %q, want %v %q", s.Code(), s.Message(), tt.code, reason)
			}
			// Streams get the same answer.
			st, err := c.FullDuplexCall(ctxT(t))
			if err == nil {
				_, err = st.Recv()
			}
			if s, _ := status.FromError(err); s.Code() != tt.code {
				t.Fatalf("stream status = %v", err)
			}
		})
	}
}

func TestGRPCUpstreamDown(t *testing.T) {
	var sum h1.Summary
	done := make(chan struct{})
	addr, _ := startProxy(t, Config{
		Router:   static(h1.Decision{Upstream: closedAddr(t)}),
		Observer: observerFunc(func(_ *Request, s h1.Summary) { sum = s; close(done) }),
	})
	c := grpcClient(t, addr)
	_, err := c.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{})
	s, _ := status.FromError(err)
	if s.Code() != codes.Unavailable || s.Message() != reasonConnectFailure {
		t.Fatalf("status = %v", err)
	}
	<-done
	if !errors.Is(sum.Err, h1.ErrConnectFailure) {
		t.Errorf("summary err = %v", sum.Err)
	}
}

func TestGRPCUpstreamReset(t *testing.T) {
	backend, _ := startGRPC(t)
	srvAddr, gsStop := backend, func() {}
	_ = gsStop
	pool := NewPool(PoolConfig{})
	defer pool.Close()
	addr, _ := startProxy(t, Config{Router: static(h1.Decision{Upstream: srvAddr}), Pool: pool})
	c := grpcClient(t, addr)
	st, err := c.FullDuplexCall(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("a")}})
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	pool.Close() // kills the upstream connection under the stream
	_, err = st.Recv()
	if s, _ := status.FromError(err); s.Code() != codes.Unavailable {
		t.Fatalf("status = %v", err)
	}
}
