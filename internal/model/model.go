// Package model owns Weft's service registry: an immutable Snapshot of
// services, endpoints and the traffic and security policies that apply to
// them, built from a config.Snapshot. It imports neither Kubernetes nor Envoy.
package model

import (
	"github.com/weftmesh/weft/internal/config"
)

// Protocol is a service port protocol, as Istio names them.
type Protocol string

// Protocols Istio defines; anything else is Unsupported (treated as TCP).
const (
	ProtocolHTTP        Protocol = "HTTP"
	ProtocolHTTP2       Protocol = "HTTP2"
	ProtocolHTTPS       Protocol = "HTTPS"
	ProtocolGRPC        Protocol = "GRPC"
	ProtocolGRPCWeb     Protocol = "GRPC-Web"
	ProtocolTCP         Protocol = "TCP"
	ProtocolTLS         Protocol = "TLS"
	ProtocolMongo       Protocol = "Mongo"
	ProtocolRedis       Protocol = "Redis"
	ProtocolMySQL       Protocol = "MySQL"
	ProtocolUDP         Protocol = "UDP"
	ProtocolUnsupported Protocol = ""
)

// IsHTTP reports whether the protocol is routed at L7 (HTTP route tables).
func (p Protocol) IsHTTP() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolGRPCWeb:
		return true
	}
	return false
}

// IsHTTP2 reports whether upstream connections must speak HTTP/2.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// IsTLS reports whether the protocol is TLS routed by SNI.
func (p Protocol) IsTLS() bool { return p == ProtocolHTTPS || p == ProtocolTLS }

// Port is a service port.
type Port struct {
	Name     string
	Number   uint32
	Protocol Protocol
	// TargetPort is the port on endpoints when they do not name one (0: same as Number).
	TargetPort uint32
}

// Resolution says how a service's endpoints are found.
type Resolution int

// Resolutions, matching ServiceEntry.Resolution.
const (
	ResolutionStatic Resolution = iota
	ResolutionDNS
	ResolutionDNSRoundRobin
	ResolutionNone // passthrough: the original destination is used
)

// Service is one mesh host (a ServiceEntry host, later a Kubernetes Service).
type Service struct {
	// Hostname is the fully qualified host, e.g. "reviews.default.svc.cluster.local" or "*.example.com".
	Hostname string
	// Namespace is the namespace of the config object that defined the service.
	Namespace string
	// Addresses are the VIPs; when the ServiceEntry had none, one auto-allocated
	// address from 240.240.0.0/16 (AutoAllocated is then true).
	Addresses     []string
	AutoAllocated bool
	Ports         []Port
	Resolution    Resolution
	// MeshExternal is true for location MESH_EXTERNAL.
	MeshExternal bool
	// ExportTo is the set of namespaces that may see the service; "*" means all,
	// "." is already resolved to Namespace. Empty means all (the mesh default).
	ExportTo []string
	// SubjectAltNames from the ServiceEntry.
	SubjectAltNames []string
	// Source is the config object that defined the service.
	Source config.Key
}

// PortByNumber returns the port with number n.
func (s *Service) PortByNumber(n uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == n {
			return p, true
		}
	}
	return Port{}, false
}

// PortByName returns the port named name.
func (s *Service) PortByName(name string) (Port, bool) {
	for _, p := range s.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}

// VisibleTo reports whether a proxy in namespace ns may see the service
// according to exportTo ("*" all, "~" none, a namespace name).
func (s *Service) VisibleTo(ns string) bool {
	if len(s.ExportTo) == 0 {
		return true
	}
	for _, e := range s.ExportTo {
		if e == "*" || e == ns {
			return true
		}
	}
	return false
}

// Health of an endpoint.
type Health int

// Health states; Healthy is the zero value so static endpoints are healthy.
const (
	Healthy Health = iota
	Unhealthy
)

// Endpoint is one instance of a service on one service port.
type Endpoint struct {
	// Address is an IP or, for DNS resolution, a hostname; for a Unix domain
	// socket it starts with "unix://".
	Address string
	// Port is the endpoint port for ServicePort.
	Port uint32
	// ServicePort is the number of the service port this endpoint serves.
	ServicePort uint32
	Labels      map[string]string
	Network     string
	// Locality is "region/zone/subzone".
	Locality       string
	Weight         uint32
	ServiceAccount string
	Health         Health
	// Workload is the WorkloadEntry that produced the endpoint, if any.
	Workload config.Key
}

// Proxy is a connected data-plane client, as identified by its xDS node.
type Proxy struct {
	// ID is the xDS node id.
	ID   string
	Type ProxyType
	// Namespace, ServiceAccount and Labels come from node metadata (NAMESPACE,
	// SERVICE_ACCOUNT, LABELS) or, failing that, from an Istio-style node id
	// "sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local".
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	IPs            []string
	// Metadata holds the remaining node metadata as strings.
	Metadata map[string]string
	// Workload is the WorkloadEntry for this proxy, when one matches.
	Workload config.Key
}

// ProxyType says what kind of xDS client a proxy is; translation differs per type.
type ProxyType int

// Proxy types.
const (
	// ProxySidecar is weft-proxy or Envoy next to a workload.
	ProxySidecar ProxyType = iota
	// ProxyRouter is a gateway.
	ProxyRouter
	// ProxyGRPC is a proxyless gRPC client (grpc-go's xds resolver).
	ProxyGRPC
)

func (t ProxyType) String() string {
	switch t {
	case ProxyRouter:
		return "router"
	case ProxyGRPC:
		return "grpc"
	}
	return "sidecar"
}
