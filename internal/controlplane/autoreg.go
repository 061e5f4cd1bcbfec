package controlplane

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/autoreg"
	"github.com/weftmesh/weft/internal/ca"
	"github.com/weftmesh/weft/internal/model"
	"github.com/weftmesh/weft/internal/xds"
)

// grantKey carries the *ca.Grant of an authenticated xDS stream in its
// context, from authenticateXDS to the xDS connect hook.
type grantKey struct{}

func grantFrom(ctx context.Context) *ca.Grant {
	g, _ := ctx.Value(grantKey{}).(*ca.Grant)
	return g
}

// grantStream is a ServerStream whose context carries the caller's grant.
type grantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (g grantStream) Context() context.Context { return g.ctx }

// onConnect registers proxies that ask for auto-registration
// (AUTO_REGISTER_GROUP); every other proxy passes untouched.
func (s *Server) onConnect(ctx context.Context, p *model.Proxy) error {
	group := p.Metadata[xds.MetaAutoRegisterGroup]
	if group == "" {
		return nil
	}
	c := autoreg.Conn{ProxyID: p.ID, Namespace: p.Namespace, Group: group, Network: p.Metadata["NETWORK"], Labels: p.Labels}
	if len(p.IPs) > 0 {
		c.Address = p.IPs[0]
	} else if pr, ok := peer.FromContext(ctx); ok {
		if host, _, err := net.SplitHostPort(pr.Addr.String()); err == nil {
			c.Address = host
		}
	}
	if g := grantFrom(ctx); g != nil {
		c.Identity = &autoreg.Identity{Namespace: g.ID.Namespace, ServiceAccount: g.ID.ServiceAccount, WorkloadGroup: g.WorkloadGroup}
	}
	err := s.autoreg.Connect(ctx, c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, autoreg.ErrRefused):
		s.log.Warn("auto-registration refused", "proxy", p.ID, "err", err)
		return status.Error(codes.PermissionDenied, err.Error())
	default:
		s.log.Error("auto-registration failed", "proxy", p.ID, "err", err)
		return status.Error(codes.Unavailable, err.Error())
	}
}

func (s *Server) onDisconnect(p *model.Proxy) {
	if p.Metadata[xds.MetaAutoRegisterGroup] != "" {
		s.autoreg.Disconnect(p.ID)
	}
}

func (s *Server) onHealth(p *model.Proxy, healthy bool, msg string) {
	if p.Metadata[xds.MetaAutoRegisterGroup] != "" {
		s.autoreg.SetHealth(p.ID, healthy, msg)
	}
}
