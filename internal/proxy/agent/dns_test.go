package agent

import (
	"net/netip"
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/dnsproxy"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// TestDNSTableFromXDS: the name table derived from LDS/RDS has every mesh
// host with its VIPs, wildcard hosts as wildcards, and nothing for names
// that are not DNS names.
func TestDNSTableFromXDS(t *testing.T) {
	tp, err := anypb.New(&tcpproxyv3.TcpProxy{ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "outbound|3306||mysql.db.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	routes := []proto.Message{&routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"reviews.default.svc.cluster.local", "reviews", "240.240.0.3", "240.240.0.3:9080", "[fd00::3]:9080"}},
		{Name: "*.example.internal:9080", Domains: []string{"*.example.internal", "*.example.internal:9080", "240.241.0.7", "240.241.0.7:9080"}},
		{Name: "*:9080", Domains: []string{"*", "10.1.1.1"}},
		{Name: "a.*.example.com:9080", Domains: []string{"10.1.1.2"}},
		{Name: "allow_any", Domains: []string{"*"}},
	}}}
	listeners := []proto.Message{&listenerv3.Listener{Name: "10.96.7.7_3306", FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
	}}}}
	var d dnsTable
	d.update(xdsclient.Update{TypeURL: xdsclient.RouteType, Resources: routes})
	d.update(xdsclient.Update{TypeURL: xdsclient.ListenerType, Resources: listeners})
	hosts := d.hosts()
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	if want := []string{"*.example.internal", "mysql.db.svc.cluster.local", "reviews.default.svc.cluster.local"}; !slices.Equal(names, want) {
		t.Fatalf("hosts %v, want %v", names, want)
	}
	tbl, err := dnsproxy.BuildTable(hosts, "default", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	wild := tbl.Hosts["*.example.internal"]
	if !wild.Wildcard || !slices.Equal(wild.IPv4, []netip.Addr{netip.MustParseAddr("240.241.0.7")}) {
		t.Errorf("wildcard entry %+v", wild)
	}
	rev := tbl.Hosts["reviews"]
	if !slices.Equal(rev.IPv4, []netip.Addr{netip.MustParseAddr("240.240.0.3")}) || !slices.Equal(rev.IPv6, []netip.Addr{netip.MustParseAddr("fd00::3")}) {
		t.Errorf("reviews (short name) %+v", rev)
	}
	if db := tbl.Hosts["mysql.db"]; len(db.IPv4) != 1 || db.IPv4[0] != netip.MustParseAddr("10.96.7.7") {
		t.Errorf("mysql.db %+v", db)
	}
}
