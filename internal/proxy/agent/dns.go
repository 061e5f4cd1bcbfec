package agent

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"strings"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/dnsproxy"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// dnsTable keeps the latest listeners and route configurations and derives
// the DNS name table from them: every mesh host weftd sends this proxy has a
// virtual host named "HOST:PORT" whose domains list its VIPs, and every TCP
// service has a "VIP_PORT" listener whose tcp_proxy targets
// "outbound|PORT|SUBSET|HOST". Deriving the table from LDS/RDS (instead of
// Istio's separate NDS resource) means it is scoped exactly like the proxy's
// routes (exportTo, Sidecar) and arrives with the same push. Wildcard hosts
// ("*.example.com") with an address are passed on as wildcards.
type dnsTable struct {
	mu        sync.Mutex
	listeners []proto.Message
	routes    []proto.Message
}

func (d *dnsTable) update(u xdsclient.Update) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch u.TypeURL {
	case xdsclient.ListenerType:
		d.listeners = u.Resources
	case xdsclient.RouteType:
		d.routes = u.Resources
	default:
		return false
	}
	return true
}

// hosts returns host -> VIPs.
func (d *dnsTable) hosts() []dnsproxy.Host {
	d.mu.Lock()
	defer d.mu.Unlock()
	vips := map[string]map[netip.Addr]bool{}
	add := func(host string, ip netip.Addr) {
		host = strings.ToLower(host)
		// "*.example.com" (a wildcard ServiceEntry with an address) is
		// answered for every name below example.com; a bare "*" or a "*"
		// elsewhere is not a DNS name.
		if host == "" || strings.Contains(strings.TrimPrefix(host, "*."), "*") || ip.IsUnspecified() {
			return
		}
		if vips[host] == nil {
			vips[host] = map[netip.Addr]bool{}
		}
		vips[host][ip] = true
	}
	for _, m := range d.routes {
		rc, ok := m.(*routev3.RouteConfiguration)
		if !ok {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			host, _, ok := strings.Cut(vh.GetName(), ":")
			if !ok {
				continue // allow_any and inline inbound hosts
			}
			for _, dom := range vh.GetDomains() {
				if ap, err := netip.ParseAddrPort(dom); err == nil {
					add(host, ap.Addr())
				} else if ip, err := netip.ParseAddr(dom); err == nil {
					add(host, ip)
				} else if ip, err := netip.ParseAddr(strings.Trim(dom, "[]")); err == nil {
					add(host, ip)
				}
			}
		}
	}
	for _, m := range d.listeners {
		l, ok := m.(*listenerv3.Listener)
		if !ok {
			continue
		}
		ipStr, _, ok := strings.Cut(l.GetName(), "_")
		ip, err := netip.ParseAddr(ipStr)
		if !ok || err != nil || ip.IsUnspecified() {
			continue
		}
		chains := l.GetFilterChains()
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(chains[:len(chains):len(chains)], dc)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				var tp tcpproxyv3.TcpProxy
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&tp) != nil {
					continue
				}
				cluster := tp.GetCluster()
				if wc := tp.GetWeightedClusters().GetClusters(); cluster == "" && len(wc) > 0 {
					cluster = wc[0].GetName()
				}
				if parts := strings.SplitN(cluster, "|", 4); len(parts) == 4 && parts[0] == "outbound" {
					add(parts[3], ip)
				}
			}
		}
	}
	out := make([]dnsproxy.Host, 0, len(vips))
	for h, set := range vips {
		var e dnsproxy.HostEntry
		for ip := range set {
			if ip.Is4() || ip.Is4In6() {
				e.IPv4 = append(e.IPv4, ip.Unmap())
			} else {
				e.IPv6 = append(e.IPv6, ip)
			}
		}
		sort.Slice(e.IPv4, func(i, j int) bool { return e.IPv4[i].Less(e.IPv4[j]) })
		sort.Slice(e.IPv6, func(i, j int) bool { return e.IPv6[i].Less(e.IPv6[j]) })
		if parts := strings.Split(h, "."); len(parts) >= 3 && parts[2] == "svc" {
			e.Namespace = parts[1]
		}
		out = append(out, dnsproxy.Host{Name: h, HostEntry: e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// refreshDNS rebuilds the DNS proxy's table after a listener or route update.
func (a *Agent) refreshDNS(u xdsclient.Update) {
	if a.dns == nil || !a.dnsTable.update(u) {
		return
	}
	t, err := dnsproxy.BuildTable(a.dnsTable.hosts(), a.cfg.Namespace, a.cfg.DomainSuffix)
	if err != nil {
		a.log.Warn("DNS name table not updated", "err", err)
		return
	}
	a.dns.SetTable(t)
}

// startDNS starts the DNS proxy when cfg.DNSAddr is set, and exports its
// counters with the proxy's metrics (/stats/prometheus).
func (a *Agent) startDNS(ctx context.Context) error {
	if a.dns == nil {
		return nil
	}
	if err := a.dns.Start(ctx); err != nil {
		return err
	}
	if err := a.metrics.Registry().Register(dnsCollector{a.dns}); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) { // a second Run of the same Agent keeps the first
			a.log.Warn("DNS proxy counters not exported", "err", err)
		}
	}
	return nil
}

// dnsCollector exports dnsproxy.Stats as counters, read at scrape time.
type dnsCollector struct{ s *dnsproxy.Server }

var dnsCounters = []struct {
	desc *prometheus.Desc
	get  func(dnsproxy.Stats) uint64
}{
	{prometheus.NewDesc("weft_dns_queries_total", "Well-formed DNS queries handled by the DNS proxy.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.Queries }},
	{prometheus.NewDesc("weft_dns_mesh_answers_total", "DNS queries answered from the mesh name table.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.MeshAnswers }},
	{prometheus.NewDesc("weft_dns_cache_hits_total", "DNS queries answered from the forwarding cache.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.CacheHits }},
	{prometheus.NewDesc("weft_dns_forwarded_total", "DNS queries sent to an upstream resolver.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.Forwarded }},
	{prometheus.NewDesc("weft_dns_coalesced_total", "DNS queries answered with the result of an identical query in flight.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.Coalesced }},
	{prometheus.NewDesc("weft_dns_upstream_errors_total", "Forwarded DNS queries that ended in SERVFAIL.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.UpstreamErrors }},
	{prometheus.NewDesc("weft_dns_rejected_total", "DNS queries answered SERVFAIL because too many were being forwarded.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.Rejected }},
	{prometheus.NewDesc("weft_dns_dropped_total", "DNS queries dropped by the rate limit.", nil, nil), func(s dnsproxy.Stats) uint64 { return s.Dropped }},
	{prometheus.NewDesc("weft_dns_malformed_total", "DNS packets that could not be parsed or were refused (FORMERR, NOTIMP).", nil, nil), func(s dnsproxy.Stats) uint64 { return s.Malformed }},
}

func (c dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range dnsCounters {
		ch <- d.desc
	}
}

func (c dnsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, d := range dnsCounters {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.get(st)))
	}
}

var _ prometheus.Collector = dnsCollector{}

// DNSAddr is the DNS proxy's address ("" when off).
func (a *Agent) DNSAddr() string {
	if a.dns == nil {
		return ""
	}
	return a.dns.Addr()
}
