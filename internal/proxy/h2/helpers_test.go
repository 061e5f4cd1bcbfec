package h2

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// startProxy serves h2 on 127.0.0.1:0 the way the listener will: sniff
// the preface, then hand the conn (with the sniffed bytes) to ServeConn.
func startProxy(t testing.TB, cfg Config) (string, *Server) {
	t.Helper()
	srv := NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, PrefaceLen)
				if _, err := io.ReadFull(c, buf); err != nil || !IsPreface(buf) {
					c.Close()
					return
				}
				srv.ServeConn(WithPrefix(c, buf))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String(), srv
}

func static(d h1.Decision) Router {
	return RouterFunc(func(*Request) h1.Decision { return d })
}

// testService implements the gRPC interop TestService with hooks the tests
// drive through request fields and metadata.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	lastMD atomic.Pointer[metadata.MD]
}

func (s *testService) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.lastMD.Store(&md)
	if v := md.Get("x-echo"); len(v) > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo-header", v[0]))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", v[0]))
	}
	if v := md.Get("x-sleep-ms"); len(v) > 0 {
		ms, _ := strconv.Atoi(v[0])
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	body := in.GetPayload().GetBody()
	if n := in.GetResponseSize(); n > 0 {
		body = make([]byte, n)
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: body}}, nil
}

func (s *testService) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		if d := p.GetIntervalUs(); d > 0 {
			time.Sleep(time.Duration(d) * time.Microsecond)
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("x-count", strconv.Itoa(len(in.GetResponseParameters()))))
	return nil
}

func (s *testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	n := 0
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("x-count", strconv.Itoa(n)))
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if st := in.GetResponseStatus(); st != nil {
			return status.Error(codes.Code(st.GetCode()), st.GetMessage())
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

func startGRPC(t testing.TB) (string, *testService) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, svc)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), svc
}

func grpcClient(t testing.TB, addr string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// startH2C serves handler as an h2c (prior knowledge) backend and counts
// accepted connections.
func startH2C(t testing.TB, handler http.Handler) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	hs := &http.Server{
		Handler: h2c.NewHandler(handler, &http2.Server{}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close(); <-done })
	return ln.Addr().String(), &conns
}

// h2cConn opens exactly one HTTP/2 client connection to addr.
func h2cConn(t testing.TB, addr string) *http2.ClientConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http2.Transport{AllowHTTP: true}
	cc, err := tr.NewClientConn(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
