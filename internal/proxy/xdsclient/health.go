package xdsclient

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// HealthInfoType is the type URL of a proxy's health report on its ADS
// stream (Istio's agent sends the same): no error detail means healthy.
const HealthInfoType = "type.googleapis.com/istio.v1.HealthInformation"

// healthReport is the latest workload health the proxy reports.
type healthReport struct {
	healthy bool
	message string
}

// ReportHealth records the workload's health and sends it to the server on
// the current stream (and again on every new stream), so weftd can mark the
// host's endpoint. Safe to call from any goroutine; only the latest report
// is kept.
func (c *Client) ReportHealth(healthy bool, message string) {
	c.mu.Lock()
	c.health = &healthReport{healthy: healthy, message: message}
	c.mu.Unlock()
	select {
	case c.healthCh <- struct{}{}:
	default:
	}
}

func (c *Client) currentHealth() *healthReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

func healthDetail(h *healthReport) *statuspb.Status {
	if h.healthy {
		return nil
	}
	msg := h.message
	if msg == "" {
		msg = "unhealthy"
	}
	return &statuspb.Status{Code: int32(codes.Internal), Message: msg}
}

func (s *sotwStream) health(h *healthReport) error {
	return s.send(&discoveryv3.DiscoveryRequest{TypeUrl: HealthInfoType, ErrorDetail: healthDetail(h)})
}

func (s *deltaStream) health(h *healthReport) error {
	return s.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: HealthInfoType, ErrorDetail: healthDetail(h)})
}
