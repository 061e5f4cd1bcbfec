package listener

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
	"github.com/weftmesh/weft/internal/proxy/telemetry"
)

// tunnel serves an HTTP CONNECT request handed over by h1 (the router marks
// CONNECT requests Tunnel) on the explicit listener: the authority is
// resolved to a mesh cluster (tcp_proxy listener for an IP, the HTTP route
// table's virtual host for a mesh name, or the cluster outbound|PORT||HOST),
// else passed through to the host itself. rest holds bytes the client sent
// behind the CONNECT head; h1 closes c when this returns.
func (m *Manager) tunnel(c net.Conn, req *h1.Request, rest []byte) {
	host, portB := splitHostPort(req.Host())
	port, err := strconv.ParseUint(string(portB), 10, 16)
	if portB == nil || err != nil || len(host) == 0 {
		writeStatus(c, 400, "bad_connect_authority")
		return
	}
	authority := string(req.Host())
	snap := m.cfg.Holder.Load()
	cl, clusterName := resolveConnect(snap, string(bytes.Trim(host, "[]")), uint16(port), authority)
	var ep *upstream.Endpoint
	addr := net.JoinHostPort(string(bytes.Trim(host, "[]")), string(portB))
	if cl != nil && cl.Type != clusterv3.Cluster_ORIGINAL_DST {
		if ep = cl.Pick(0, false); ep == nil {
			writeStatus(c, 503, "no_healthy_upstream")
			return
		}
		addr = ep.Addr
	}
	if clusterName == "" {
		clusterName = "PassthroughCluster"
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	if len(rest) > 0 {
		// rest aliases h1's buffer, which is only lent for this call;
		// forwardTo returns before that, but a copy keeps it obvious.
		c = &prefixConn{Conn: c, prefix: bytes.Clone(rest)}
	}
	m.forwardTo(c, cl, ep, addr, 0, m.cfg.Metrics.Dest(telemetry.Source, clusterName))
}

func resolveConnect(snap *runtime.Snapshot, host string, port uint16, authority string) (*upstream.Cluster, string) {
	ps := strconv.Itoa(int(port))
	if ip, err := netip.ParseAddr(host); err == nil {
		if l := snap.OutboundListenerFor(ip, port); l != nil && !l.UseOriginalDst {
			fc := l.FilterChainFor(runtime.ConnInfo{DstIP: ip, DstPort: port, TransportProtocol: "raw_buffer"})
			if fc != nil && fc.TCP != nil {
				name := fc.TCP.PickCluster(rand.Uint32())
				return snap.Cluster(name), name
			}
		}
	}
	if t := snap.RouteTable(ps); t != nil {
		vh := t.VirtualHostFor([]byte(authority))
		if vh == nil {
			vh = t.VirtualHostFor([]byte(host))
		}
		if vh != nil && vh.Name != "allow_any" {
			for _, r := range vh.Routes {
				if c := r.PickCluster(rand.Uint32()); c != nil {
					return c, c.Name
				}
			}
		}
	}
	name := "outbound|" + ps + "||" + host
	if c := snap.Cluster(name); c != nil {
		return c, name
	}
	return nil, ""
}

func writeStatus(c net.Conn, status int, reason string) {
	_, _ = io.WriteString(c, "HTTP/1.1 "+strconv.Itoa(status)+" "+reason+"\r\nx-weft-reason: "+reason+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	c.Close()
}

// prefixConn replays bytes read past the CONNECT head.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite keeps tcp.Pipe's half-close working through the wrapper.
func (p *prefixConn) CloseWrite() error {
	if hc, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return p.Conn.Close()
}
