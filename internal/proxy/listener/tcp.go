package listener

import (
	"context"
	"net"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/internal/proxy/rbac"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
	"github.com/weftmesh/weft/internal/proxy/tcp"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

func (m *Manager) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.tcpConns[c] = struct{}{}
	return true
}

func (m *Manager) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.tcpConns, c)
	m.mu.Unlock()
}

// tcpAllowed runs a chain's network RBAC filters (Envoy's
// envoy.filters.network.rbac) on a new connection to dst, before any
// upstream work: the caller closes a denied connection. The decision is
// made once, when the connection is accepted; every attribute a network
// policy matches (peer identity, addresses, SNI) is known by then.
func (m *Manager) tcpAllowed(c net.Conn, fc *runtime.FilterChain, dst netip.AddrPort) bool {
	if len(fc.RBAC) == 0 {
		return true
	}
	in := rbac.Input{Destination: dst}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		in.Source = ta.AddrPort().Addr().Unmap()
	}
	in.Remote = in.Source
	if p, ok := c.(router.PeerIdentity); ok {
		in.Principal, in.SNI = p.PeerPrincipal(), p.ServerName()
	}
	return rbac.Allowed(fc.RBAC, &in, m.cfg.Logger)
}

// forwardTCP relays c to an endpoint of the named cluster (or to orig for
// ORIGINAL_DST clusters such as PassthroughCluster). It closes c.
func (m *Manager) forwardTCP(c net.Conn, snap *runtime.Snapshot, clusterName string, idle time.Duration, orig string, rep telemetry.Reporter) {
	cl := snap.Cluster(clusterName)
	if cl == nil {
		m.log.Debug("tcp: cluster not found", "cluster", clusterName)
		c.Close()
		return
	}
	var ep *upstream.Endpoint
	addr := orig
	if cl.Type != clusterv3.Cluster_ORIGINAL_DST {
		if ep = cl.Pick(0, false); ep == nil {
			m.log.Debug("tcp: no healthy upstream", "cluster", clusterName)
			c.Close()
			return
		}
		addr = ep.Addr
	}
	m.forwardTo(c, cl, ep, addr, idle, m.cfg.Metrics.Dest(rep, clusterName))
}

func (m *Manager) forwardTo(c net.Conn, cl *upstream.Cluster, ep *upstream.Endpoint, addr string, idle time.Duration, dest *telemetry.Dest) {
	if addr == "" || !m.track(c) {
		c.Close()
		return
	}
	defer m.untrack(c)
	// The transport to the upstream: the endpoint's TLS context, or for an
	// ORIGINAL_DST cluster what an endpoint without metadata would get.
	var ut *upstream.UpstreamTLS
	switch {
	case ep != nil:
		ut = ep.TLS
	case cl != nil:
		ut = cl.PassthroughTLS()
	}
	if ut != nil && ut.Unavailable != "" {
		m.log.Debug("tcp: upstream TLS unavailable", "addr", addr, "reason", ut.Unavailable)
		c.Close()
		return
	}
	if cl != nil {
		if !cl.Acquire(upstream.Connections) {
			c.Close()
			return
		}
		defer cl.Release(upstream.Connections)
	}
	if ep != nil {
		ep.Begin()
		defer ep.End()
		dest = dest.Upstream(ep.WorkloadKey, ep.Workload) // destination workload labels (source reporter)
	}
	cfg := tcp.Config{IdleTimeout: idle}
	if cl != nil {
		cfg.ConnectTimeout = cl.ConnectTimeout
	}
	if dial := m.cfg.UpstreamDial; dial != nil {
		key := ""
		if ut != nil {
			key = ut.Key
		}
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, network, addr, key)
		}
	}
	if p, ok := c.(router.PeerIdentity); ok { // inbound mTLS: the caller's identity
		dest = dest.Peer(p.PeerPrincipal())
	}
	p := tcp.New(cfg)
	up, err := p.Dial(addr)
	if err != nil {
		m.log.Debug("tcp: upstream connect failed", "addr", addr, "err", err)
		dest.TCPOpened()
		if ep != nil {
			ep.ReportResult(0, route.ErrConnectFailure)
		}
		c.Close()
		dest.TCPClosed(0, 0)
		return
	}
	if pp, ok := up.(interface{ PeerPrincipal() string }); ok { // outbound mTLS: the server's identity
		dest = dest.Peer(pp.PeerPrincipal())
	}
	dest.TCPOpened()
	st, err := p.Relay(c, up)
	if ep != nil {
		if err != nil && st.Sent == 0 && st.Received == 0 {
			ep.ReportResult(0, route.ErrConnectFailure)
		} else {
			ep.ReportResult(200, nil)
		}
	}
	dest.TCPClosed(st.Received, st.Sent)
}
