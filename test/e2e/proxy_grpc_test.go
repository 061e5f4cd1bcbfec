package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/testenv"
)

// streamingEcho answers unary calls with its name and echoes full-duplex streams.
type streamingEcho struct {
	testgrpc.UnimplementedTestServiceServer
}

func (streamingEcho) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if req.GetResponseStatus().GetCode() != 0 {
		return nil, status.Error(codes.Code(req.GetResponseStatus().GetCode()), req.GetResponseStatus().GetMessage())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t1"))
	return &testgrpc.SimpleResponse{Hostname: "app", Username: strings.Join(md.Get("x-user"), ",")}, nil
}

func (streamingEcho) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestProxyInboundGRPC: a real grpc-go client talks h2c to the workload's
// address; weft-proxy detects HTTP/2, routes the stream through the inbound
// cluster to the gRPC app, with unary, status codes, trailers and bidi
// streaming intact.
func TestProxyInboundGRPC(t *testing.T) {
	const workloadAddr = "127.0.10.41"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appPort := ln.Addr().(*net.TCPAddr).Port
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, streamingEcho{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"echo.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: default}
spec: {address: %s, ports: {grpc: %d}, labels: {app: echo}, serviceAccount: echo}
`, workloadAddr, appPort)}})
	p := startProxy(t, wd.XDSAddr.String(), func(c *agent.Config) {
		c.IP, c.BindAddr = workloadAddr, netipAddr(t, workloadAddr)
		c.WorkloadName, c.ServiceAccount = "echo-1", "echo"
		c.Labels = map[string]string{"app": "echo", "version": "v3"}
		c.ExplicitInbound = true
	})

	conn, err := grpc.NewClient(net.JoinHostPort(workloadAddr, fmt.Sprint(appPort)), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var trailer metadata.MD
	var resp *testgrpc.SimpleResponse
	testenv.Eventually(t, 10*time.Second, func() error {
		var err error
		resp, err = client.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-user", "jason"), &testgrpc.SimpleRequest{}, grpc.Trailer(&trailer))
		return err
	})
	if resp.GetHostname() != "app" || resp.GetUsername() != "jason" || strings.Join(trailer.Get("x-trailer"), "") != "t1" {
		t.Fatalf("unary through the proxy: %+v trailer %v", resp, trailer)
	}
	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such book"}})
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such book" {
		t.Fatalf("status through the proxy: %v", err)
	}
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		body := []byte(fmt.Sprintf("msg-%d", i))
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			t.Fatal(err)
		}
		got, err := stream.Recv()
		if err != nil || string(got.GetPayload().GetBody()) != string(body) {
			t.Fatalf("bidi message %d: %v %q", i, err, got.GetPayload().GetBody())
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	// Istio's gRPC labels: request_protocol grpc and the grpc-status the
	// client got; the proxy's own labels fill the destination side. A
	// request is recorded just after its answer went out: poll briefly.
	testenv.Eventually(t, 5*time.Second, func() error {
		_, body := getURL("http://" + p.AdminAddr() + "/stats/prometheus")
		common := []string{"reporter", "destination", "request_protocol", "grpc", "response_code", "200",
			"destination_workload", "echo-1", "destination_app", "echo", "destination_version", "v3",
			"destination_canonical_service", "echo", "destination_canonical_revision", "v3"}
		if n := seriesSum(body, "istio_requests_total", append(common, "grpc_response_status", "0")...); n < 2 {
			return fmt.Errorf("%v OK gRPC requests (unary and bidi), want >= 2:\n%s", n, metricLines(body, "istio_requests_total"))
		}
		if n := seriesSum(body, "istio_requests_total", append(common, "grpc_response_status", "5")...); n != 1 {
			return fmt.Errorf("%v NOT_FOUND gRPC requests, want 1:\n%s", n, metricLines(body, "istio_requests_total"))
		}
		return nil
	})
}
