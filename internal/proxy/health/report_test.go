package health

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func TestDiscoveryRequest(t *testing.T) {
	tests := []struct {
		name    string
		status  Status
		wantMsg string // empty: no error_detail
	}{
		{"healthy", Status{Healthy: true}, ""},
		{"healthy ignores a stale error", Status{Healthy: true, LastError: "x"}, ""},
		{"unhealthy", Status{LastError: "http probe: GET http://127.0.0.1:8080/: status 500"}, "http probe: GET http://127.0.0.1:8080/: status 500"},
		{"unhealthy while succeeding", Status{ConsecutiveSuccesses: 1}, "not ready: waiting for consecutive successful probes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := DiscoveryRequest(tt.status)
			if req.GetTypeUrl() != "type.googleapis.com/istio.v1.HealthInformation" {
				t.Errorf("TypeUrl = %q", req.GetTypeUrl())
			}
			if req.GetVersionInfo() != "" || req.GetResponseNonce() != "" || len(req.GetResourceNames()) != 0 {
				t.Errorf("unexpected fields: %v", req)
			}
			if tt.wantMsg == "" {
				if req.GetErrorDetail() != nil {
					t.Errorf("ErrorDetail = %v, want none", req.GetErrorDetail())
				}
				return
			}
			if d := req.GetErrorDetail(); d.GetCode() != int32(codes.Internal) || d.GetMessage() != tt.wantMsg {
				t.Errorf("ErrorDetail = %v, want INTERNAL %q", d, tt.wantMsg)
			}
			// It must survive the wire.
			b, err := proto.Marshal(req)
			if err != nil || len(b) == 0 {
				t.Fatalf("marshal: %v", err)
			}
		})
	}
}

// chanReporter is the shape of the agent's Reporter: OnChange hands the
// status over, a sender goroutine calls Report.
type chanReporter chan Status

func (c chanReporter) Report(ctx context.Context, s Status) error {
	select {
	case c <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ Reporter = chanReporter(nil)
