package xdsclient

import (
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

func errorDetail(detail string) *statuspb.Status {
	if detail == "" {
		return nil
	}
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail}
}

// sotwStream speaks state-of-the-world ADS.
type sotwStream struct {
	s    discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	c    *Client
	sent bool // node sent
}

func newSotwStream(ctx context.Context, cc *grpc.ClientConn, c *Client) (stream, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &sotwStream{s: s, c: c}, nil
}

func (s *sotwStream) send(req *discoveryv3.DiscoveryRequest) error {
	if !s.sent {
		req.Node = s.c.cfg.Node
		s.sent = true
	}
	return s.s.Send(req)
}

func (s *sotwStream) recv() (response, error) {
	r, err := s.s.Recv()
	if err != nil {
		return response{}, err
	}
	return response{typeURL: r.GetTypeUrl(), version: r.GetVersionInfo(), nonce: r.GetNonce(), resources: r.GetResources()}, nil
}

// request announces the last accepted version so a reconnecting client is
// not sent what it already has.
func (s *sotwStream) request(t *typeState) error {
	return s.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       t.url,
		VersionInfo:   t.version,
		ResourceNames: sortedNames(t.names),
		ResponseNonce: t.nonce,
	})
}

func (s *sotwStream) ack(t *typeState, r response, detail string) error {
	v := r.version
	if detail != "" {
		v = t.version // NACK carries the last good version
	}
	return s.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       r.typeURL,
		VersionInfo:   v,
		ResourceNames: sortedNames(t.names),
		ResponseNonce: r.nonce,
		ErrorDetail:   errorDetail(detail),
	})
}

// deltaStream speaks incremental (delta) ADS.
type deltaStream struct {
	s    discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	c    *Client
	sent bool
}

func newDeltaStream(ctx context.Context, cc *grpc.ClientConn, c *Client) (stream, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &deltaStream{s: s, c: c}, nil
}

func (s *deltaStream) send(req *discoveryv3.DeltaDiscoveryRequest) error {
	if !s.sent {
		req.Node = s.c.cfg.Node
		s.sent = true
	}
	return s.s.Send(req)
}

func (s *deltaStream) recv() (response, error) {
	r, err := s.s.Recv()
	if err != nil {
		return response{}, err
	}
	out := response{typeURL: r.GetTypeUrl(), version: r.GetSystemVersionInfo(), nonce: r.GetNonce(), removed: r.GetRemovedResources(), isDelta: true}
	for _, res := range r.GetResources() {
		out.delta = append(out.delta, deltaResource{name: res.GetName(), version: res.GetVersion(), resource: res.GetResource()})
	}
	return out, nil
}

// request sends the initial subscription of a stream, with the versions the
// client already holds (initial_resource_versions), or the subscription
// diff on an open stream.
func (s *deltaStream) request(t *typeState) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t.url}
	if !t.requested {
		if t.wildcard {
			req.ResourceNamesSubscribe = []string{"*"}
		} else {
			req.ResourceNamesSubscribe = sortedNames(t.names)
		}
		if len(t.resources) > 0 {
			req.InitialResourceVersions = make(map[string]string, len(t.resources))
			for n, e := range t.resources {
				req.InitialResourceVersions[n] = e.version
			}
		}
	} else if !t.wildcard {
		for n := range t.names {
			if !t.sent[n] {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for n := range t.sent {
			if !t.names[n] {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			}
		}
		if len(req.ResourceNamesSubscribe)+len(req.ResourceNamesUnsubscribe) == 0 {
			return nil
		}
	} else {
		return nil
	}
	t.sent = make(map[string]bool, len(t.names))
	for n := range t.names {
		t.sent[n] = true
	}
	return s.send(req)
}

func (s *deltaStream) ack(t *typeState, r response, detail string) error {
	return s.send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl:       r.typeURL,
		ResponseNonce: r.nonce,
		ErrorDetail:   errorDetail(detail),
	})
}
