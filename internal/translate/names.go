package translate

import (
	"strconv"
	"strings"
)

// Istio-compatible resource names, shared by every xDS type so references
// (route -> cluster, cluster -> EDS) line up and Istio tooling reads them.
const (
	// VirtualOutboundListener captures outbound traffic on 15001 (original destination).
	VirtualOutboundListener = "virtualOutbound"
	// VirtualInboundListener captures inbound traffic on 15006.
	VirtualInboundListener = "virtualInbound"
	// PassthroughCluster forwards to the original destination.
	PassthroughCluster = "PassthroughCluster"
	// BlackHoleCluster drops traffic.
	BlackHoleCluster = "BlackHoleCluster"
	// InboundPassthroughCluster forwards inbound traffic to the original destination on loopback.
	InboundPassthroughCluster = "InboundPassthroughCluster"

	OutboundCapturePort = 15001
	InboundCapturePort  = 15006
)

// Direction of a cluster.
type Direction string

// Directions as they appear in cluster names.
const (
	Outbound Direction = "outbound"
	Inbound  Direction = "inbound"
)

// ClusterName returns Istio's cluster name "outbound|PORT|SUBSET|HOST".
func ClusterName(dir Direction, port uint32, subset, host string) string {
	// Concatenation, not fmt: this runs for every cluster of every class.
	return string(dir) + "|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// ParseClusterName splits a name made by ClusterName.
func ParseClusterName(name string) (dir Direction, port uint32, subset, host string, ok bool) {
	parts := strings.SplitN(name, "|", 4)
	if len(parts) != 4 {
		return "", 0, "", "", false
	}
	p, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return "", 0, "", "", false
	}
	return Direction(parts[0]), uint32(p), parts[2], parts[3], true
}

// HTTPRouteName is the RDS name for an outbound HTTP port on sidecars ("9080").
func HTTPRouteName(port uint32) string { return strconv.FormatUint(uint64(port), 10) }

// OutboundListenerName is "ADDR_PORT", e.g. "0.0.0.0_9080" or "240.240.1.2_3306".
func OutboundListenerName(addr string, port uint32) string {
	return addr + "_" + strconv.FormatUint(uint64(port), 10)
}

// GRPCListenerName is the API listener name proxyless gRPC clients ask for: "HOST:PORT".
func GRPCListenerName(host string, port uint32) string {
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// ShortType is the short name of an xDS type URL as Istio's metrics label it
// ("cds", "eds", "lds", "rds"; "other" for anything else).
func ShortType(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "cds"
	case EndpointType:
		return "eds"
	case ListenerType:
		return "lds"
	case RouteType:
		return "rds"
	}
	return "other"
}
