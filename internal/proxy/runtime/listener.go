package runtime

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/proxy/fielderr"
	"github.com/weftmesh/weft/internal/proxy/jwtauthn"
	"github.com/weftmesh/weft/internal/proxy/rbac"
	"github.com/weftmesh/weft/internal/proxy/runtime/route"
	"github.com/weftmesh/weft/internal/proxy/runtime/upstream"
)

// Filter names weft-proxy implements.
const (
	FilterRouter       = "envoy.filters.http.router"
	FilterFault        = route.FilterFault
	FilterCors         = route.FilterCors
	FilterHCM          = "envoy.filters.network.http_connection_manager"
	FilterTCPProxy     = "envoy.filters.network.tcp_proxy"
	FilterTLSInspector = "envoy.filters.listener.tls_inspector"
	FilterHTTPInspect  = "envoy.filters.listener.http_inspector"
	FilterOriginalDst  = "envoy.filters.listener.original_dst"
	FilterRBAC         = rbac.HTTPFilterName
	FilterJWTAuthn     = jwtauthn.FilterName
	FilterNetworkRBAC  = rbac.NetworkFilterName
)

// Listener is a compiled Listener. A listener whose config did not change
// keeps its pointer (and Hash) across builds so the listener manager can keep
// its socket.
type Listener struct {
	Name           string
	Address        netip.AddrPort
	BindToPort     bool
	UseOriginalDst bool
	// Inbound is traffic_direction INBOUND: the only listeners whose
	// chains may carry authentication and authorization filters.
	Inbound         bool
	ListenerFilters []string
	FilterChains    []*FilterChain
	DefaultChain    *FilterChain
	// Hash is a content hash of the Listener proto (deterministic marshal).
	Hash uint64

	src          *listenerv3.Listener
	inlineRoutes bool
}

// ListenerChanged reports whether the listener manager must replace old with
// new (nil means absent). Equal content hashes mean the socket can be kept.
func ListenerChanged(old, new *Listener) bool {
	if old == nil || new == nil {
		return old != new
	}
	return old != new && old.Hash != new.Hash
}

// ChainMatch is a filter_chain_match.
type ChainMatch struct {
	DestinationPort      uint32 // 0: any
	PrefixRanges         []netip.Prefix
	ServerNames          []string
	TransportProtocol    string
	ApplicationProtocols []string
}

// FilterChain is one compiled filter chain; exactly one of HTTP and TCP is set.
type FilterChain struct {
	Name  string
	Match ChainMatch
	HTTP  *HTTPConnectionManager
	TCP   *TCPProxy
	// RBAC are the envoy.filters.network.rbac filters in front of the
	// terminal filter, in order: a connection they deny is closed.
	RBAC []*rbac.Filter
	// TLS is true when the chain terminates TLS; TLSContext holds its
	// compiled DownstreamTlsContext (the listener enforces it).
	TLS        bool
	TLSContext *DownstreamTLS
	// Hash is a content hash of the FilterChain proto (deterministic
	// marshal): the chain's identity across updates. The listener manager
	// drains connections whose chain no longer exists with this hash.
	Hash uint64
}

// HasChain reports whether one of l's chains (the default one included)
// has content hash h.
func (l *Listener) HasChain(h uint64) bool {
	if l == nil {
		return false
	}
	for _, fc := range l.FilterChains {
		if fc.Hash == h {
			return true
		}
	}
	return l.DefaultChain != nil && l.DefaultChain.Hash == h
}

// HTTPConnectionManager is the compiled HCM of a filter chain.
type HTTPConnectionManager struct {
	StatPrefix string
	// RouteConfigName is the RDS name; RouteTable is set instead for inline
	// route configs.
	RouteConfigName   string
	RouteTable        *RouteTable
	HTTPFilters       []string
	UseRemoteAddress  bool
	XFFTrustedHops    uint32
	StreamIdleTimeout time.Duration
	RequestTimeout    time.Duration
	WebSockets        bool
	// JWT is the envoy.filters.http.jwt_authn filter, nil when absent.
	JWT *jwtauthn.Filter
	// RBAC are the envoy.filters.http.rbac filters, in order. The router
	// runs JWT, then these, before routing.
	RBAC []*rbac.Filter
}

// HasAuth reports whether requests on this HCM are authenticated or
// authorized before routing.
func (h *HTTPConnectionManager) HasAuth() bool { return h.JWT != nil || len(h.RBAC) > 0 }

// TCPProxy is the compiled tcp_proxy of a filter chain.
type TCPProxy struct {
	StatPrefix  string
	Cluster     string
	Weighted    []TCPWeightedCluster
	TotalWeight uint32
	IdleTimeout time.Duration
}

// TCPWeightedCluster is one weighted tcp_proxy cluster.
type TCPWeightedCluster struct {
	Name   string
	Weight uint32
}

// PickCluster returns the cluster name for one connection (weighted by rnd).
func (t *TCPProxy) PickCluster(rnd uint32) string {
	if len(t.Weighted) == 0 || t.TotalWeight == 0 {
		return t.Cluster
	}
	x := rnd % t.TotalWeight
	for _, w := range t.Weighted {
		if x < w.Weight {
			return w.Name
		}
		x -= w.Weight
	}
	return t.Weighted[len(t.Weighted)-1].Name
}

// ConnInfo is what filter-chain matching looks at.
type ConnInfo struct {
	DstIP             netip.Addr
	DstPort           uint16
	ServerName        string // SNI
	TransportProtocol string // "tls" or "raw_buffer"
	ALPN              []string
}

// FilterChainFor selects the filter chain with Envoy's order of criteria
// (destination port, destination IP, server name, transport protocol,
// application protocols): at each step chains with the most specific match
// win over chains that leave the criterion empty, chains that name a
// different value drop out. Returns the default chain when nothing matches.
func (l *Listener) FilterChainFor(ci ConnInfo) *FilterChain {
	var buf [32]*FilterChain
	cand := append(buf[:0], l.FilterChains...)
	steps := [...]func(*ChainMatch) int{
		func(m *ChainMatch) int {
			if m.DestinationPort == 0 {
				return 0
			}
			return b2i(m.DestinationPort == uint32(ci.DstPort), 1)
		},
		func(m *ChainMatch) int {
			if len(m.PrefixRanges) == 0 {
				return 0
			}
			best := -1
			for _, p := range m.PrefixRanges {
				if ci.DstIP.IsValid() && p.Contains(ci.DstIP.Unmap()) {
					best = max(best, 1+p.Bits())
				}
			}
			return best
		},
		func(m *ChainMatch) int {
			if len(m.ServerNames) == 0 {
				return 0
			}
			best := -1
			for _, n := range m.ServerNames {
				switch {
				case n == ci.ServerName:
					best = max(best, 1000)
				case strings.HasPrefix(n, "*.") && strings.HasSuffix(ci.ServerName, n[1:]):
					best = max(best, len(n))
				}
			}
			return best
		},
		func(m *ChainMatch) int {
			if m.TransportProtocol == "" {
				return 0
			}
			return b2i(m.TransportProtocol == ci.TransportProtocol, 1)
		},
		func(m *ChainMatch) int {
			if len(m.ApplicationProtocols) == 0 {
				return 0
			}
			for _, a := range m.ApplicationProtocols {
				for _, b := range ci.ALPN {
					if a == b {
						return 1
					}
				}
			}
			return -1
		},
	}
	for _, score := range steps {
		best := -1
		for _, c := range cand {
			best = max(best, score(&c.Match))
		}
		if best < 0 {
			return l.DefaultChain
		}
		n := 0
		for _, c := range cand {
			if score(&c.Match) == best {
				cand[n] = c
				n++
			}
		}
		cand = cand[:n]
	}
	if len(cand) == 0 {
		return l.DefaultChain
	}
	return cand[0]
}

func b2i(ok bool, v int) int {
	if ok {
		return v
	}
	return -1
}

func buildListeners(prev, s *Snapshot, lds map[string]*listenerv3.Listener, clustersChanged bool) (*Listeners, []error) {
	var errs []error
	out := &Listeners{byName: make(map[string]*Listener, len(lds))}
	same := len(lds) == prev.Listeners.Len()
	for name, pb := range lds {
		old := prev.Listeners.byName[name]
		if old != nil && equalProto(old.src, pb) && !(old.inlineRoutes && clustersChanged) {
			out.byName[name] = old
			continue
		}
		same = false
		l, err := buildListener(pb, s.Clusters, s.opts.JWKS)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.byName[name] = l
	}
	if same && len(errs) == 0 {
		return prev.Listeners, nil
	}
	return out, errs
}

func buildListener(pb *listenerv3.Listener, clusters *Clusters, keys *jwtauthn.KeyCache) (*Listener, error) {
	name := pb.GetName()
	e := func(field, format string, args ...any) error { return rerr("Listener", name, field, format, args...) }
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return nil, e("", "marshal: %v", err)
	}
	l := &Listener{Name: name, src: pb, Hash: upstream.Hash64(b), BindToPort: true}
	if v := pb.GetBindToPort(); v != nil {
		l.BindToPort = v.GetValue()
	}
	l.UseOriginalDst = pb.GetUseOriginalDst().GetValue()
	l.Inbound = pb.GetTrafficDirection() == corev3.TrafficDirection_INBOUND
	bc := chainBuilder{clusters: clusters, keys: keys, inbound: l.Inbound}
	sa := pb.GetAddress().GetSocketAddress()
	if sa == nil {
		if pb.GetAddress() != nil {
			return nil, e("address", "only socket addresses are supported")
		}
	} else {
		ip, err := netip.ParseAddr(sa.GetAddress())
		if err != nil {
			return nil, e("address.socket_address.address", "%q is not an IP address", sa.GetAddress())
		}
		if sa.GetProtocol() != corev3.SocketAddress_TCP {
			return nil, e("address.socket_address.protocol", "only TCP listeners are supported")
		}
		l.Address = netip.AddrPortFrom(ip.Unmap(), uint16(sa.GetPortValue()))
	}
	if len(pb.GetAdditionalAddresses()) > 0 {
		return nil, e("additional_addresses", "not supported")
	}
	if pb.GetApiListener() != nil {
		return nil, e("api_listener", "API listeners are for proxyless clients; not supported")
	}
	for i, lf := range pb.GetListenerFilters() {
		switch lf.GetName() {
		case FilterTLSInspector, FilterHTTPInspect, FilterOriginalDst:
			l.ListenerFilters = append(l.ListenerFilters, lf.GetName())
		default:
			return nil, e("listener_filters["+itoa(i)+"]", "listener filter %q is not supported", lf.GetName())
		}
	}
	for i, fc := range pb.GetFilterChains() {
		c, field, err := bc.filterChain(fc)
		if err != nil {
			return nil, e("filter_chains["+itoa(i)+"]"+field, "%v", err)
		}
		l.inlineRoutes = l.inlineRoutes || (c.HTTP != nil && c.HTTP.RouteTable != nil)
		l.FilterChains = append(l.FilterChains, c)
	}
	if fc := pb.GetDefaultFilterChain(); fc != nil {
		c, field, err := bc.filterChain(fc)
		if err != nil {
			return nil, e("default_filter_chain"+field, "%v", err)
		}
		l.inlineRoutes = l.inlineRoutes || (c.HTTP != nil && c.HTTP.RouteTable != nil)
		l.DefaultChain = c
	}
	return l, nil
}

// chainBuilder compiles the filter chains of one listener.
type chainBuilder struct {
	clusters *Clusters
	keys     *jwtauthn.KeyCache
	inbound  bool
}

// defaultKeyCache serves snapshots built without Options.JWKS.
var defaultKeyCache = sync.OnceValue(func() *jwtauthn.KeyCache { return jwtauthn.NewKeyCache(jwtauthn.KeyCacheConfig{}) })

// notInbound is the NACK reason for authn/authz filters on other
// listeners: only inbound connections go through them.
func notInbound(filter string) error {
	return errf("%s is only supported on inbound listeners (traffic_direction INBOUND)", filter)
}

func (b chainBuilder) filterChain(pb *listenerv3.FilterChain) (*FilterChain, string, error) {
	c := &FilterChain{Name: pb.GetName()}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return nil, "", errf("marshal: %v", err)
	}
	c.Hash = upstream.Hash64(raw)
	if m := pb.GetFilterChainMatch(); m != nil {
		c.Match.DestinationPort = m.GetDestinationPort().GetValue()
		for i, pr := range m.GetPrefixRanges() {
			ip, err := netip.ParseAddr(pr.GetAddressPrefix())
			if err != nil {
				return nil, ".filter_chain_match.prefix_ranges[" + itoa(i) + "]", errf("bad address %q", pr.GetAddressPrefix())
			}
			bits := ip.BitLen()
			if pr.GetPrefixLen() != nil {
				bits = int(pr.GetPrefixLen().GetValue())
			}
			p, err := ip.Unmap().Prefix(bits)
			if err != nil {
				return nil, ".filter_chain_match.prefix_ranges[" + itoa(i) + "]", err
			}
			c.Match.PrefixRanges = append(c.Match.PrefixRanges, p)
		}
		c.Match.ServerNames = m.GetServerNames()
		c.Match.TransportProtocol = m.GetTransportProtocol()
		c.Match.ApplicationProtocols = m.GetApplicationProtocols()
		switch {
		case len(m.GetSourcePrefixRanges()) > 0:
			return nil, ".filter_chain_match.source_prefix_ranges", errf("not supported")
		case len(m.GetDirectSourcePrefixRanges()) > 0:
			return nil, ".filter_chain_match.direct_source_prefix_ranges", errf("not supported")
		case len(m.GetSourcePorts()) > 0:
			return nil, ".filter_chain_match.source_ports", errf("not supported")
		case m.GetSourceType() != listenerv3.FilterChainMatch_ANY:
			return nil, ".filter_chain_match.source_type", errf("not supported")
		}
	}
	if ts := pb.GetTransportSocket(); ts != nil {
		switch ts.GetName() {
		case "envoy.transport_sockets.tls", "tls":
			var dtc tlsv3.DownstreamTlsContext
			if err := ts.GetTypedConfig().UnmarshalTo(&dtc); err != nil {
				return nil, ".transport_socket.typed_config", errf("decode DownstreamTlsContext: %v", err)
			}
			t, field, err := buildDownstreamTLS(&dtc)
			if err != nil {
				return nil, ".transport_socket" + field, err
			}
			c.TLS, c.TLSContext = true, t
		case "envoy.transport_sockets.raw_buffer", "raw_buffer":
		default:
			return nil, ".transport_socket", errf("transport socket %q is not supported", ts.GetName())
		}
	}
	fs := pb.GetFilters()
	if len(fs) == 0 {
		return nil, ".filters", errf("no network filters")
	}
	for i, f := range fs {
		field := ".filters[" + itoa(i) + "]"
		if i != len(fs)-1 {
			if f.GetName() != FilterNetworkRBAC {
				return nil, field, errf("network filter %q is not supported (only %s in front of a single terminal %s or %s)",
					f.GetName(), FilterNetworkRBAC, FilterHCM, FilterTCPProxy)
			}
			if !b.inbound {
				return nil, field, notInbound(FilterNetworkRBAC)
			}
			var cfg netrbacv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return nil, field + ".typed_config", errf("decode network RBAC: %v", err)
			}
			rf, err := rbac.CompileNetwork(&cfg)
			if err != nil {
				sub, err := filterFieldErr(err)
				return nil, field + ".typed_config" + sub, err
			}
			c.RBAC = append(c.RBAC, rf)
			continue
		}
		switch f.GetName() {
		case FilterHCM:
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				return nil, field + ".typed_config", errf("decode HttpConnectionManager: %v", err)
			}
			h, sub, err := b.hcm(&hcm)
			if err != nil {
				return nil, field + sub, err
			}
			c.HTTP = h
		case FilterTCPProxy:
			var tp tcpv3.TcpProxy
			if err := f.GetTypedConfig().UnmarshalTo(&tp); err != nil {
				return nil, field + ".typed_config", errf("decode TcpProxy: %v", err)
			}
			t := &TCPProxy{StatPrefix: tp.GetStatPrefix(), Cluster: tp.GetCluster()}
			if v := tp.GetIdleTimeout(); v != nil {
				t.IdleTimeout = v.AsDuration()
			}
			for _, w := range tp.GetWeightedClusters().GetClusters() {
				t.Weighted = append(t.Weighted, TCPWeightedCluster{Name: w.GetName(), Weight: w.GetWeight()})
				t.TotalWeight += w.GetWeight()
			}
			if t.Cluster == "" && t.TotalWeight == 0 {
				return nil, field + ".typed_config.cluster_specifier", errf("no cluster")
			}
			if tp.GetTunnelingConfig() != nil {
				return nil, field + ".typed_config.tunneling_config", errf("not supported")
			}
			c.TCP = t
		default:
			return nil, field, errf("network filter %q is not supported", f.GetName())
		}
	}
	return c, "", nil
}

func (b chainBuilder) hcm(pb *hcmv3.HttpConnectionManager) (*HTTPConnectionManager, string, error) {
	const tc = ".typed_config"
	h := &HTTPConnectionManager{
		StatPrefix:       pb.GetStatPrefix(),
		UseRemoteAddress: pb.GetUseRemoteAddress().GetValue(),
		XFFTrustedHops:   pb.GetXffNumTrustedHops(),
	}
	if v := pb.GetStreamIdleTimeout(); v != nil {
		h.StreamIdleTimeout = v.AsDuration()
	}
	if v := pb.GetRequestTimeout(); v != nil {
		h.RequestTimeout = v.AsDuration()
	}
	switch rs := pb.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		h.RouteConfigName = rs.Rds.GetRouteConfigName()
		if src := rs.Rds.GetConfigSource(); src != nil && src.GetAds() == nil && src.GetConfigSourceSpecifier() != nil {
			return nil, tc + ".rds.config_source", errf("only ADS config sources are supported")
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rt, err := route.NewTable(rs.RouteConfig, b.clusters.Get)
		if err != nil {
			var fe *fielderr.Error
			if errors.As(err, &fe) {
				return nil, tc + ".route_config." + fe.Field, errors.New(fe.Msg)
			}
			return nil, tc + ".route_config", err
		}
		h.RouteTable = rt
	default:
		return nil, tc + ".route_specifier", errf("%T is not supported", rs)
	}
	for i, u := range pb.GetUpgradeConfigs() {
		if u.GetUpgradeType() != "websocket" {
			return nil, tc + ".upgrade_configs[" + itoa(i) + "]", errf("upgrade %q is not supported", u.GetUpgradeType())
		}
		h.WebSockets = true
	}
	fs := pb.GetHttpFilters()
	for i, f := range fs {
		field := tc + ".http_filters[" + itoa(i) + "]"
		switch f.GetName() {
		case FilterRouter:
			if i != len(fs)-1 {
				return nil, field, errf("%s must be the last HTTP filter", FilterRouter)
			}
		case FilterFault, FilterCors:
		case FilterJWTAuthn:
			switch {
			case !b.inbound:
				return nil, field, notInbound(FilterJWTAuthn)
			case h.JWT != nil:
				return nil, field, errf("only one %s filter is supported", FilterJWTAuthn)
			case len(h.RBAC) > 0:
				return nil, field, errf("%s must come before %s (weft-proxy authenticates before it authorizes)", FilterJWTAuthn, FilterRBAC)
			}
			var cfg jwtv3.JwtAuthentication
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return nil, field + ".typed_config", errf("decode JwtAuthentication: %v", err)
			}
			keys := b.keys
			if keys == nil {
				keys = defaultKeyCache()
			}
			jf, err := jwtauthn.Compile(&cfg, keys)
			if err != nil {
				sub, err := filterFieldErr(err)
				return nil, field + ".typed_config" + sub, err
			}
			h.JWT = jf
		case FilterRBAC:
			if !b.inbound {
				return nil, field, notInbound(FilterRBAC)
			}
			var cfg httprbacv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return nil, field + ".typed_config", errf("decode RBAC: %v", err)
			}
			rf, err := rbac.CompileHTTP(FilterRBAC, &cfg)
			if err != nil {
				sub, err := filterFieldErr(err)
				return nil, field + ".typed_config" + sub, err
			}
			h.RBAC = append(h.RBAC, rf)
		default:
			if f.GetIsOptional() {
				continue // Envoy skips unknown optional filters too
			}
			return nil, field, errf("HTTP filter %q is not supported", f.GetName())
		}
		h.HTTPFilters = append(h.HTTPFilters, f.GetName())
	}
	if len(fs) == 0 || fs[len(fs)-1].GetName() != FilterRouter {
		return nil, tc + ".http_filters", errf("the last HTTP filter must be %s", FilterRouter)
	}
	return h, "", nil
}

// filterFieldErr splits a filter compiler's FieldError into the field
// path inside the filter's typed_config (with a leading dot) and its message.
func filterFieldErr(err error) (string, error) {
	var fe *fielderr.Error
	if errors.As(err, &fe) && fe.Field != "" {
		return "." + fe.Field, errors.New(fe.Msg)
	}
	return "", err
}

func itoa(i int) string { return strconv.Itoa(i) }

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }
