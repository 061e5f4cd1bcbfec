package listener

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/runtime"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// splitHostPort splits an authority without allocating; port is nil when
// absent.
func splitHostPort(a []byte) (host, port []byte) {
	i := bytes.LastIndexByte(a, ':')
	if i < 0 || bytes.IndexByte(a[i:], ']') >= 0 {
		return a, nil
	}
	return a[:i], a[i+1:]
}

var port80 = []byte("80")

// hostPortSource serves the explicit HTTP proxy: the route table is the one
// weftd generates for the port in the request's authority (RDS "9080").
// self is the listener's own address: passing a request for it through
// would make the proxy connect to itself in a loop.
type hostPortSource struct{ self string }

func (hostPortSource) Table(s *runtime.Snapshot, req router.Request) *runtime.RouteTable {
	_, port := splitHostPort(req.Host())
	if port == nil {
		port = port80
	}
	return s.RouteTable(string(port)) // no allocation: map index by string(bytes)
}

func (h hostPortSource) Passthrough(req router.Request) string {
	a := withPort(req.Host(), "80")
	if a == h.self {
		return ""
	}
	return a
}

// Fallback follows the virtualOutbound listener's default chain for ports
// without a route table.
func (hostPortSource) Fallback(s *runtime.Snapshot) *upstream.Cluster {
	l := s.Listener("virtualOutbound")
	if l == nil || l.DefaultChain == nil || l.DefaultChain.TCP == nil {
		return nil
	}
	return s.Cluster(l.DefaultChain.TCP.Cluster)
}

func withPort(host []byte, def string) string {
	if len(host) == 0 {
		return ""
	}
	if _, p := splitHostPort(host); p != nil {
		return string(host)
	}
	return string(host) + ":" + def
}

// rdsSource serves a captured outbound connection whose filter chain has an
// HCM with RDS name; port is the original destination port.
type rdsSource struct {
	name string
	port string
}

func (r rdsSource) Table(s *runtime.Snapshot, _ router.Request) *runtime.RouteTable {
	return s.RouteTable(r.name)
}

func (r rdsSource) Passthrough(req router.Request) string { return withPort(req.Host(), r.port) }

// chainSource re-resolves the filter chain of a listener for a destination
// port on every request, for HCMs with inline route configs (virtualInbound)
// whose table changes with the listener.
type chainSource struct {
	listener string
	ci       runtime.ConnInfo
	orig     string // passthrough target: the original destination
}

func (c *chainSource) Table(s *runtime.Snapshot, req router.Request) *runtime.RouteTable {
	h := c.HCM(s, req)
	if h == nil {
		return nil
	}
	if h.RouteTable != nil {
		return h.RouteTable
	}
	return s.RouteTable(h.RouteConfigName)
}

// HCM implements router.HCMSource: the connection manager of the chain the
// connection matched, so its jwt_authn and RBAC filters run.
func (c *chainSource) HCM(s *runtime.Snapshot, _ router.Request) *runtime.HTTPConnectionManager {
	l := s.Listener(c.listener)
	if l == nil {
		return nil
	}
	fc := l.FilterChainFor(c.ci)
	if fc == nil {
		return nil
	}
	return fc.HTTP
}

// Destination implements router.HCMSource.
func (c *chainSource) Destination() netip.AddrPort {
	return netip.AddrPortFrom(c.ci.DstIP, c.ci.DstPort)
}

func (c *chainSource) Passthrough(router.Request) string { return c.orig }

var (
	_ router.TableSource    = hostPortSource{}
	_ router.FallbackSource = hostPortSource{}
	_ router.TableSource    = rdsSource{}
	_ router.HCMSource      = (*chainSource)(nil)
)

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
