package xds

import (
	"context"
	"errors"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/model"
)

// HealthInfoType is the type URL of the health reports Istio's agent sends
// on its xDS stream (a DiscoveryRequest with no error_detail means healthy,
// one with error_detail means unhealthy, its message saying why). It is
// not a resource type: weftd never answers it.
const HealthInfoType = "type.googleapis.com/istio.v1.HealthInformation"

// MetaAutoRegisterGroup is the node metadata key naming the WorkloadGroup a
// host asks to be auto-registered in (set by Istio's agent from its
// bootstrap). ProxyFromNode keeps it in Proxy.Metadata.
const MetaAutoRegisterGroup = "AUTO_REGISTER_GROUP"

// connectHooks serializes OnConnect and OnDisconnect per node id, so a
// proxy that reconnects while its old stream is closing always sees its
// hooks in stream order (connect, disconnect, connect), never a stale
// disconnect after the new connect. Different nodes never wait for each
// other, so a slow hook (a store write) does not hold up other proxies.
type connectHooks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (h *connectHooks) lock(id string) func() {
	h.mu.Lock()
	if h.locks == nil {
		h.locks = map[string]*keyedLock{}
	}
	l := h.locks[id]
	if l == nil {
		l = &keyedLock{}
		h.locks[id] = l
	}
	l.refs++
	h.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		h.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(h.locks, id)
		}
		h.mu.Unlock()
	}
}

// connect runs Config.OnConnect for a node's first stream; its error
// refuses the stream with PermissionDenied and the hook's message.
func (s *Server) connect(ctx context.Context, p *model.Proxy) error {
	if s.cfg.OnConnect == nil {
		return nil
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := s.cfg.OnConnect(ctx, p); err != nil {
		if _, ok := grpcstatus.FromError(err); ok {
			return err // the hook chose its own status code
		}
		s.log.Warn("xDS stream refused by the connect hook", "proxy", p.ID, "error", err)
		return grpcstatus.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// streamContext returns the context of an open stream (set by the stream
// open callbacks), carrying what interceptors put there (the caller's
// authenticated identity on the secure port).
func (s *Server) streamContext(key streamKey) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx := s.streamCtx[key]; ctx != nil {
		return ctx
	}
	return context.Background()
}

func (s *Server) openStream(ctx context.Context, key streamKey) {
	s.mu.Lock()
	s.streamCtx[key] = ctx
	s.mu.Unlock()
}

// health passes a health report of the stream's proxy to Config.OnHealth.
func (s *Server) health(key streamKey, errDetail interface{ GetMessage() string }, failed bool) {
	s.mu.Lock()
	n := s.nodeOf(key)
	s.mu.Unlock()
	if n == nil || s.cfg.OnHealth == nil {
		return
	}
	msg := ""
	if failed {
		msg = errDetail.GetMessage()
	}
	s.cfg.OnHealth(n.proxy, !failed, msg)
}

// healthSink is the cache behind HealthInfoType requests: it opens watches
// that never answer, so a health report neither breaks the stream nor
// gets a response the agent does not expect.
type healthSink struct{}

var _ cache.Cache = healthSink{}

func (healthSink) CreateWatch(*cache.Request, cache.Subscription, chan cache.Response) (func(), error) {
	return func() {}, nil
}

func (healthSink) CreateDeltaWatch(*cache.DeltaRequest, cache.Subscription, chan cache.DeltaResponse) (func(), error) {
	return func() {}, nil
}

func (healthSink) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xds: health reports are not fetched")
}
