package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

// Node metadata keys, as Istio's agent and proxyless gRPC bootstrap set them.
const (
	MetaNamespace      = "NAMESPACE"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaLabels         = "LABELS"
	MetaInstanceIPs    = "INSTANCE_IPS"
	MetaGenerator      = "GENERATOR"
	MetaWorkloadName   = "WORKLOAD_NAME"
)

// DefaultNamespace is used when neither metadata nor the node id names one.
const DefaultNamespace = "default"

// ErrNoNodeID is returned for a request without a node or node id: such a
// client cannot be keyed in the cache and is refused.
var ErrNoNodeID = errors.New("xds: node id is required")

// NodeMetadataError lists node fields that were malformed and replaced by
// defaults. ProxyFromNode still returns a usable proxy alongside it.
type NodeMetadataError struct {
	NodeID   string
	Problems []string
}

func (e *NodeMetadataError) Error() string {
	return fmt.Sprintf("xds: node %q: malformed metadata, using defaults: %s", e.NodeID, strings.Join(e.Problems, "; "))
}

// ProxyFromNode builds the proxy a node describes, following Istio's
// conventions: metadata NAMESPACE, SERVICE_ACCOUNT, LABELS (a struct),
// INSTANCE_IPS (comma separated), GENERATOR ("grpc" means proxyless gRPC)
// and WORKLOAD_NAME; an Istio node id "sidecar~IP~NAME.NS~NS.svc.cluster.local"
// (or "router~...") supplies the type, IP and namespace the metadata lacks; a
// user agent "grpc-go" or "grpc-*" means proxyless gRPC; anything else is a
// sidecar in namespace "default".
//
// The error is ErrNoNodeID (and the proxy nil) when the node has no id.
// Otherwise the proxy is always usable; a *NodeMetadataError reports fields
// that were malformed and ignored, so the caller can warn and still serve.
func ProxyFromNode(n *corev3.Node) (*model.Proxy, error) {
	if n.GetId() == "" {
		return nil, ErrNoNodeID
	}
	p := &model.Proxy{ID: n.GetId(), Type: model.ProxySidecar}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Istio node id: TYPE~IP~ID~DOMAIN. Only trusted for what metadata lacks.
	var idType, idIP, idNS string
	if parts := strings.Split(n.GetId(), "~"); len(parts) == 4 {
		idType, idIP = parts[0], parts[1]
		if ns, _, ok := strings.Cut(parts[3], ".svc."); ok && ns != "" {
			idNS = ns
		} else if _, ns, ok := strings.Cut(parts[2], "."); ok && ns != "" {
			idNS = ns
		}
	}

	fields := n.GetMetadata().GetFields()
	str := func(key string) string {
		v, ok := fields[key]
		if !ok {
			return ""
		}
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			bad("%s is not a string", key)
			return ""
		}
		return s.StringValue
	}

	p.Namespace = str(MetaNamespace)
	if p.Namespace == "" {
		p.Namespace = idNS
	}
	if p.Namespace == "" {
		p.Namespace = DefaultNamespace
	}
	p.ServiceAccount = str(MetaServiceAccount)

	if v, ok := fields[MetaLabels]; ok {
		if s := v.GetStructValue(); s != nil {
			p.Labels = make(map[string]string, len(s.GetFields()))
			for k, lv := range s.GetFields() {
				if sv, ok := lv.GetKind().(*structpb.Value_StringValue); ok {
					p.Labels[k] = sv.StringValue
				} else {
					bad("label %q is not a string", k)
				}
			}
		} else {
			bad("%s is not a struct", MetaLabels)
		}
	}

	if ips := str(MetaInstanceIPs); ips != "" {
		for _, ip := range strings.Split(ips, ",") {
			ip = strings.TrimSpace(ip)
			if _, err := netip.ParseAddr(ip); err != nil {
				bad("%s: %q is not an IP", MetaInstanceIPs, ip)
				continue
			}
			p.IPs = append(p.IPs, ip)
		}
	}
	if len(p.IPs) == 0 && idIP != "" {
		if _, err := netip.ParseAddr(idIP); err == nil {
			p.IPs = []string{idIP}
		}
	}

	if w := str(MetaWorkloadName); w != "" {
		p.Workload = config.Key{Kind: config.KindWorkloadEntry, Namespace: p.Namespace, Name: w}
	}

	ua := n.GetUserAgentName()
	switch {
	case str(MetaGenerator) == "grpc", ua == "grpc-go", strings.HasPrefix(ua, "grpc-"):
		p.Type = model.ProxyGRPC
	case idType == "router":
		p.Type = model.ProxyRouter
	}

	known := map[string]bool{MetaNamespace: true, MetaServiceAccount: true, MetaLabels: true,
		MetaInstanceIPs: true, MetaWorkloadName: true}
	for k, v := range fields {
		if known[k] {
			continue
		}
		if p.Metadata == nil {
			p.Metadata = map[string]string{}
		}
		p.Metadata[k] = valueString(v)
	}

	if len(problems) > 0 {
		sort.Strings(problems)
		return p, &NodeMetadataError{NodeID: n.GetId(), Problems: problems}
	}
	return p, nil
}

// valueString renders a metadata value as a string: strings as written,
// anything else as JSON.
func valueString(v *structpb.Value) string {
	if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
		return s.StringValue
	}
	b, err := json.Marshal(v.AsInterface())
	if err != nil {
		return ""
	}
	return string(b)
}
