package h2

import (
	"context"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// TestNoGoroutineLeakOnClientDisconnect drops clients in the middle of
// streams in both directions and checks every goroutine the proxy, the
// pool and the backends started for them goes away.
func TestNoGoroutineLeakOnClientDisconnect(t *testing.T) {
	grpcBackend, _ := startGRPC(t)
	httpBackend, _ := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upload" {
			_, _ = io.Copy(io.Discard, r.Body)
			return
		}
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil { // endless download
			if _, err := w.Write(make([]byte, 16<<10)); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}))
	pool := NewPool(PoolConfig{})
	defer pool.Close()
	addr, _ := startProxy(t, Config{Pool: pool, Router: RouterFunc(func(req *Request) h1.Decision {
		if req.IsGRPC() {
			return h1.Decision{Upstream: grpcBackend}
		}
		return h1.Decision{Upstream: httpBackend}
	})})

	dialGRPC := func() (*grpc.ClientConn, testgrpc.TestServiceClient) {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		return cc, testgrpc.NewTestServiceClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Warm up: pool connections to both backends exist in the baseline.
	gcc, c := dialGRPC()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	gcc.Close()
	hc := h2cConn(t, addr)
	do(t, hc, "POST", "http://"+addr+"/upload", nil)
	hc.Close()
	time.Sleep(50 * time.Millisecond)
	base := settledGoroutines()

	// 1. Bidi stream, client connection closed mid-stream.
	gcc, c = dialGRPC()
	st, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}})
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	gcc.Close()

	// 2. Server stream, client cancels after the first message.
	gcc, c = dialGRPC()
	sctx, scancel := context.WithCancel(ctx)
	var params []*testgrpc.ResponseParameters
	for range 1000 {
		params = append(params, &testgrpc.ResponseParameters{Size: 10, IntervalUs: 10000})
	}
	ss, err := c.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Recv(); err != nil {
		t.Fatal(err)
	}
	scancel()
	gcc.Close()

	// 3. Endless download, client connection closed mid-body.
	hc = h2cConn(t, addr)
	req, _ := http.NewRequest("GET", "http://"+addr+"/download", nil)
	resp, err := hc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	hc.Close()

	// 4. Upload, client gone half-way through the body.
	hc = h2cConn(t, addr)
	pr, pw := io.Pipe()
	req, _ = http.NewRequest("POST", "http://"+addr+"/upload", pr)
	go func() {
		_, _ = pw.Write(make([]byte, 64<<10))
		time.Sleep(20 * time.Millisecond)
		hc.Close()
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}()
	if resp, err := hc.RoundTrip(req); err == nil {
		resp.Body.Close()
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Fatalf("goroutines: %d, baseline %d", n, base)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}
