package health

import (
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// HealthInformationType is the xDS type URL of health reports from a proxy
// to its control plane, the one Istio's agent uses. It names no real proto
// message: the report is the DiscoveryRequest itself.
const HealthInformationType = "type.googleapis.com/istio.v1.HealthInformation"

// Reporter sends a Status to the control plane. The agent implements it
// over its xDS stream to weftd (see DiscoveryRequest) and calls it from
// Prober's OnChange, and again with Prober.Status() after every reconnect.
type Reporter interface {
	Report(ctx context.Context, s Status) error
}

// DiscoveryRequest is the message that reports s, matching Istio's agent:
// a DiscoveryRequest with TypeUrl HealthInformationType, no ErrorDetail when
// healthy, and ErrorDetail{Code: INTERNAL, Message: s.LastError} when not.
// The caller sets Node if its stream requires it on every request.
func DiscoveryRequest(s Status) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: HealthInformationType}
	if !s.Healthy {
		msg := s.LastError
		if msg == "" {
			// Succeeding, but not yet SuccessThreshold times in a row.
			msg = "not ready: waiting for consecutive successful probes"
		}
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.Internal), Message: msg}
	}
	return req
}
