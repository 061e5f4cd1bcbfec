package translate

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
)

// This file simulates requests through generated config the way Envoy
// evaluates it (STYLE.md rule 5): virtual host by domain, first matching
// route, and, for connections, listener by original destination then filter
// chain by SNI. It implements exactly the matchers the generators emit and
// fails loudly on anything else, so a new matcher cannot go untested.

// simulateRoute returns where a request lands in rc:
//
//	"CLUSTER"                       a single cluster
//	"weighted:C1=W1,C2=W2"          weighted clusters
//	"redirect:CODE:scheme://host:port/path" (empty parts omitted)
//	"direct:STATUS"                 direct response
//	"404:no-vhost" / "404:no-route" nothing matched
func simulateRoute(rc *routev3.RouteConfiguration, authority, path string, headers map[string]string) string {
	vh := selectVirtualHost(rc.GetVirtualHosts(), authority)
	if vh == nil {
		return "404:no-vhost"
	}
	h := map[string]string{":authority": authority, ":path": path, ":method": "GET", ":scheme": "http"}
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	for _, r := range vh.GetRoutes() {
		if !routeMatches(r.GetMatch(), path, h) {
			continue
		}
		switch a := r.GetAction().(type) {
		case *routev3.Route_Route:
			switch cs := a.Route.GetClusterSpecifier().(type) {
			case *routev3.RouteAction_Cluster:
				return cs.Cluster
			case *routev3.RouteAction_WeightedClusters:
				var parts []string
				for _, c := range cs.WeightedClusters.GetClusters() {
					parts = append(parts, fmt.Sprintf("%s=%d", c.GetName(), c.GetWeight().GetValue()))
				}
				return "weighted:" + strings.Join(parts, ",")
			}
			panic(fmt.Sprintf("simulateRoute: unsupported cluster specifier %T", a.Route.GetClusterSpecifier()))
		case *routev3.Route_Redirect:
			rd := a.Redirect
			s := fmt.Sprintf("redirect:%d:", redirectCode(rd.GetResponseCode()))
			if rd.GetSchemeRedirect() != "" {
				s += rd.GetSchemeRedirect() + "://"
			}
			s += rd.GetHostRedirect()
			if rd.GetPortRedirect() != 0 {
				s += fmt.Sprintf(":%d", rd.GetPortRedirect())
			}
			return s + rd.GetPathRedirect() + rd.GetPrefixRewrite()
		case *routev3.Route_DirectResponse:
			return fmt.Sprintf("direct:%d", a.DirectResponse.GetStatus())
		default:
			panic(fmt.Sprintf("simulateRoute: unsupported action %T", r.GetAction()))
		}
	}
	return "404:no-route"
}

func redirectCode(c routev3.RedirectAction_RedirectResponseCode) int {
	return map[routev3.RedirectAction_RedirectResponseCode]int{
		routev3.RedirectAction_MOVED_PERMANENTLY: 301, routev3.RedirectAction_FOUND: 302, routev3.RedirectAction_SEE_OTHER: 303,
		routev3.RedirectAction_TEMPORARY_REDIRECT: 307, routev3.RedirectAction_PERMANENT_REDIRECT: 308,
	}[c]
}

// selectVirtualHost follows Envoy: exact domain, then the longest suffix
// wildcard ("*.foo.com"), then the longest prefix wildcard ("foo.*"), then "*".
func selectVirtualHost(vhs []*routev3.VirtualHost, authority string) *routev3.VirtualHost {
	host := strings.ToLower(authority)
	var suffixBest, prefixBest, star *routev3.VirtualHost
	suffixLen, prefixLen := -1, -1
	for _, vh := range vhs {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				star = vh
			case d == host:
				return vh
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				if len(d) > suffixLen {
					suffixBest, suffixLen = vh, len(d)
				}
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				if len(d) > prefixLen {
					prefixBest, prefixLen = vh, len(d)
				}
			}
		}
	}
	switch {
	case suffixBest != nil:
		return suffixBest
	case prefixBest != nil:
		return prefixBest
	}
	return star
}

func routeMatches(m *routev3.RouteMatch, rawPath string, h map[string]string) bool {
	p, query, _ := strings.Cut(rawPath, "?")
	cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	fold := func(s string) string {
		if cs {
			return s
		}
		return strings.ToLower(s)
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(fold(p), fold(ps.Prefix)) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if fold(p) != fold(ps.Path) {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !regexp.MustCompile("^(?:" + ps.SafeRegex.GetRegex() + ")$").MatchString(p) {
			return false
		}
	default:
		panic(fmt.Sprintf("simulateRoute: unsupported path specifier %T", m.GetPathSpecifier()))
	}
	for _, hm := range m.GetHeaders() {
		v, present := h[strings.ToLower(hm.GetName())]
		var ok bool
		switch s := hm.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			ok = present == s.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			ok = present && stringMatches(s.StringMatch, v)
		default:
			panic(fmt.Sprintf("simulateRoute: unsupported header matcher %T", hm.GetHeaderMatchSpecifier()))
		}
		if ok == hm.GetInvertMatch() {
			return false
		}
	}
	if len(m.GetQueryParameters()) > 0 {
		q, _ := url.ParseQuery(query)
		for _, qm := range m.GetQueryParameters() {
			vals, present := q[qm.GetName()]
			switch s := qm.GetQueryParameterMatchSpecifier().(type) {
			case *routev3.QueryParameterMatcher_PresentMatch:
				if !present {
					return false
				}
			case *routev3.QueryParameterMatcher_StringMatch:
				if !present || !stringMatches(s.StringMatch, vals[0]) {
					return false
				}
			default:
				panic(fmt.Sprintf("simulateRoute: unsupported query matcher %T", qm.GetQueryParameterMatchSpecifier()))
			}
		}
	}
	if m.GetRuntimeFraction() != nil || m.GetGrpc() != nil {
		panic("simulateRoute: runtime fraction and grpc matching are not simulated")
	}
	return true
}

func stringMatches(sm *matcherv3.StringMatcher, v string) bool {
	if sm.GetIgnoreCase() {
		panic("simulateRoute: ignore_case is not simulated")
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, p.Prefix)
	case *matcherv3.StringMatcher_SafeRegex:
		return regexp.MustCompile("^(?:" + p.SafeRegex.GetRegex() + ")$").MatchString(v)
	}
	panic(fmt.Sprintf("simulateRoute: unsupported string matcher %T", sm.GetMatchPattern()))
}

// simulateOutboundConnection follows a connection captured on 15001 to its
// original destination ip:port: the listener named "IP_PORT", else
// "0.0.0.0_PORT", else the virtual outbound listener itself; then the filter
// chain by SNI. It returns the listener name and either "rds:NAME" or the
// tcp_proxy target ("C" or "weighted:C=W,...").
func simulateOutboundConnection(listeners map[string]proto.Message, ip string, port uint32, sni string) (listener, target string) {
	var l *listenerv3.Listener
	for _, name := range []string{OutboundListenerName(ip, port), OutboundListenerName("0.0.0.0", port), VirtualOutboundListener} {
		if m, ok := listeners[name]; ok {
			l = m.(*listenerv3.Listener)
			break
		}
	}
	if l == nil {
		return "", "no-listener"
	}
	return l.GetName(), chainTarget(selectFilterChain(l, sni, 0))
}

// selectFilterChain picks by destination port, then server name (exact
// before wildcard), falling back to a chain without match, then the default chain.
func selectFilterChain(l *listenerv3.Listener, sni string, dstPort uint32) *listenerv3.FilterChain {
	var exact, wildcard, bare *listenerv3.FilterChain
	for _, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		if m.GetDestinationPort() != nil && m.GetDestinationPort().GetValue() != dstPort {
			continue
		}
		if len(m.GetServerNames()) == 0 {
			if bare == nil || m.GetDestinationPort() != nil {
				bare = fc
			}
			continue
		}
		for _, n := range m.GetServerNames() {
			switch {
			case n == sni:
				exact = fc
			case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]) && wildcard == nil:
				wildcard = fc
			}
		}
	}
	for _, fc := range []*listenerv3.FilterChain{exact, wildcard, bare} {
		if fc != nil {
			return fc
		}
	}
	return l.GetDefaultFilterChain()
}

func chainTarget(fc *listenerv3.FilterChain) string {
	if fc == nil {
		return "no-chain"
	}
	for _, f := range fc.GetFilters() {
		inner, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			panic(err)
		}
		switch c := inner.(type) {
		case *hcmv3.HttpConnectionManager:
			if rc := c.GetRouteConfig(); rc != nil {
				return "inline:" + rc.GetName()
			}
			return "rds:" + c.GetRds().GetRouteConfigName()
		case *tcpproxyv3.TcpProxy:
			if cl := c.GetCluster(); cl != "" {
				return cl
			}
			var parts []string
			for _, w := range c.GetWeightedClusters().GetClusters() {
				parts = append(parts, fmt.Sprintf("%s=%d", w.GetName(), w.GetWeight()))
			}
			sort.Strings(parts)
			return "weighted:" + strings.Join(parts, ",")
		}
	}
	return "no-terminal-filter"
}
