// Package dnsproxy is the DNS proxy that runs inside weft-proxy.
//
// It listens on 127.0.0.1:15053 (UDP and TCP) and answers A and AAAA queries
// for mesh hosts from a [NameTable] pushed by the control plane — ServiceEntry
// hosts (exact and wildcard, including auto-allocated VIPs) and Kubernetes
// services together with their short names — and forwards everything else to
// the host's resolv.conf upstreams through a bounded LRU cache that respects
// TTLs (RFC 2308 negative caching included).
//
// The package owns three things and nothing else:
//
//   - the name table: its wire format ([DecodeNameTable], [EncodeNameTable])
//     and the Istio short-name expansion ([BuildTable]);
//   - the server ([Server]): mesh answers, forwarding, caching, limits;
//   - the counters ([Stats]) that weft-proxy's admin endpoint exports.
//
// weft-proxy links this package, so it depends only on the standard library,
// github.com/miekg/dns and golang.org/x/net; it never imports Kubernetes or
// control-plane packages (imports_test.go enforces it).
package dnsproxy
