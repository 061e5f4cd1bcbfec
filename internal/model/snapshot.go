package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
)

// VirtualService is a VirtualService with hosts resolved to FQDNs.
type VirtualService struct {
	Object *config.Object
	Spec   *networkingv1.VirtualService
	// Hosts are the spec hosts resolved against the object's namespace.
	Hosts []string
	// Gateways as written; empty means the "mesh" gateway only.
	Gateways []string
}

// AppliesToMesh reports whether the VirtualService applies to sidecars
// (its gateways list is empty or contains "mesh").
func (v *VirtualService) AppliesToMesh() bool {
	if len(v.Gateways) == 0 {
		return true
	}
	for _, g := range v.Gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// DestinationRule is a DestinationRule with its host resolved.
type DestinationRule struct {
	Object *config.Object
	Spec   *networkingv1.DestinationRule
	Host   string
}

// Subset returns the named subset.
func (d *DestinationRule) Subset(name string) (*networkingv1.Subset, bool) {
	if d == nil {
		return nil, false
	}
	for _, s := range d.Spec.GetSubsets() {
		if s.GetName() == name {
			return s, true
		}
	}
	return nil, false
}

// Snapshot is an immutable registry view. Build makes one; nothing mutates it afterwards.
type Snapshot struct {
	Mesh   MeshConfig
	Config *config.Snapshot
	// Version identifies the whole snapshot; ServicesHash and EndpointsHash
	// let consumers tell an endpoint-only change from a config change.
	Version       string
	ServicesHash  string
	EndpointsHash string

	services         []*Service
	byHost           map[string]*Service
	endpoints        map[string][]*Endpoint
	virtualServices  []*VirtualService
	destinationRules []*DestinationRule
	sidecars         []*config.Object
}

// Services returns all services sorted by hostname.
func (s *Snapshot) Services() []*Service { return s.services }

// Service returns the service for an exact hostname.
func (s *Snapshot) Service(host string) *Service { return s.byHost[host] }

// Endpoints returns the endpoints of a service host (all ports), sorted.
func (s *Snapshot) Endpoints(host string) []*Endpoint { return s.endpoints[host] }

// EndpointsForPort returns the endpoints of host serving service port n.
func (s *Snapshot) EndpointsForPort(host string, n uint32) []*Endpoint {
	var out []*Endpoint
	for _, e := range s.endpoints[host] {
		if e.ServicePort == n {
			out = append(out, e)
		}
	}
	return out
}

// VirtualServices returns every VirtualService sorted by namespace/name.
func (s *Snapshot) VirtualServices() []*VirtualService { return s.virtualServices }

// DestinationRules returns every DestinationRule sorted by namespace/name.
func (s *Snapshot) DestinationRules() []*DestinationRule { return s.destinationRules }

// ServicesFor returns the services a proxy may see: exportTo allows its
// namespace, and, if a Sidecar applies to the proxy, its egress hosts select
// the service ("ns/host", "*/host", "./host", "~/*").
func (s *Snapshot) ServicesFor(p *Proxy) []*Service {
	sc := s.SidecarFor(p)
	var out []*Service
	for _, svc := range s.services {
		if !svc.VisibleTo(p.Namespace) {
			continue
		}
		if sc != nil && !sidecarSelects(sc, p.Namespace, svc) {
			continue
		}
		out = append(out, svc)
	}
	return out
}

// SidecarFor returns the Sidecar resource that scopes proxy p: one in its
// namespace whose workloadSelector matches its labels, else one without a
// selector in its namespace, else one without selector in the root namespace.
func (s *Snapshot) SidecarFor(p *Proxy) *networkingv1.Sidecar {
	var nsDefault, rootDefault *networkingv1.Sidecar
	for _, o := range s.sidecars {
		sc := o.Spec.(*networkingv1.Sidecar)
		switch {
		case o.Namespace == p.Namespace && sc.GetWorkloadSelector() != nil:
			if LabelsMatch(sc.GetWorkloadSelector().GetLabels(), p.Labels) {
				return sc
			}
		case o.Namespace == p.Namespace && nsDefault == nil:
			nsDefault = sc
		case o.Namespace == s.Mesh.RootNamespace && sc.GetWorkloadSelector() == nil && rootDefault == nil:
			rootDefault = sc
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}

func sidecarSelects(sc *networkingv1.Sidecar, proxyNS string, svc *Service) bool {
	if len(sc.GetEgress()) == 0 {
		return true
	}
	for _, eg := range sc.GetEgress() {
		for _, h := range eg.GetHosts() {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				continue
			}
			switch ns {
			case "*":
			case ".":
				if svc.Namespace != proxyNS {
					continue
				}
			case "~":
				continue
			default:
				if svc.Namespace != ns {
					continue
				}
			}
			if HostMatches(host, svc.Hostname) {
				return true
			}
		}
	}
	return false
}

// VirtualServicesFor returns the mesh VirtualServices visible to proxy p
// (exportTo), in the order Istio merges them (oldest first, then name).
func (s *Snapshot) VirtualServicesFor(p *Proxy) []*VirtualService {
	var out []*VirtualService
	for _, vs := range s.virtualServices {
		if !vs.AppliesToMesh() {
			continue
		}
		if !exported(vs.Spec.GetExportTo(), vs.Object.Namespace, p.Namespace) {
			continue
		}
		out = append(out, vs)
	}
	return out
}

// DestinationRuleFor returns the DestinationRule that applies to host for a
// proxy in proxyNS, following Istio's lookup: the proxy's namespace, then the
// service's namespace, then the root namespace; within one namespace the most
// specific host wins.
func (s *Snapshot) DestinationRuleFor(p *Proxy, host string) *DestinationRule {
	svcNS := ""
	if svc := s.byHost[host]; svc != nil {
		svcNS = svc.Namespace
	}
	for _, ns := range []string{p.Namespace, svcNS, s.Mesh.RootNamespace} {
		if ns == "" {
			continue
		}
		var best *DestinationRule
		for _, dr := range s.destinationRules {
			if dr.Object.Namespace != ns || !HostMatches(dr.Host, host) {
				continue
			}
			if !exported(dr.Spec.GetExportTo(), dr.Object.Namespace, p.Namespace) {
				continue
			}
			if sel := dr.Spec.GetWorkloadSelector(); sel != nil && !LabelsMatch(sel.GetMatchLabels(), p.Labels) {
				continue
			}
			if best == nil || dr.Host == host || (best.Host != host && len(dr.Host) > len(best.Host)) {
				best = dr
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// PeerAuthentications returns all PeerAuthentication objects.
func (s *Snapshot) PeerAuthentications() []*config.Object {
	return s.Config.List(config.KindPeerAuthentication)
}

// AuthorizationPolicies returns all AuthorizationPolicy objects.
func (s *Snapshot) AuthorizationPolicies() []*config.Object {
	return s.Config.List(config.KindAuthorizationPolicy)
}

// RequestAuthentications returns all RequestAuthentication objects.
func (s *Snapshot) RequestAuthentications() []*config.Object {
	return s.Config.List(config.KindRequestAuthentication)
}

func exported(exportTo []string, objNS, proxyNS string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if objNS == proxyNS {
				return true
			}
		case proxyNS:
			return true
		}
	}
	return false
}

// LabelsMatch reports whether every selector label is present in labels.
// An empty selector matches everything.
func LabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

func hashStrings(parts []string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func serviceFingerprint(s *Service) string {
	return fmt.Sprintf("%s|%s|%v|%v|%v|%d|%v|%v|%v|%s", s.Hostname, s.Namespace, s.Addresses, s.AutoAllocated,
		s.Ports, s.Resolution, s.MeshExternal, s.ExportTo, s.SubjectAltNames, s.Source)
}

func endpointFingerprint(host string, e *Endpoint) string {
	keys := make([]string, 0, len(e.Labels))
	for k, v := range e.Labels {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return fmt.Sprintf("%s|%s|%d|%d|%v|%s|%s|%d|%s|%d|%s", host, e.Address, e.Port, e.ServicePort, keys,
		e.Network, e.Locality, e.Weight, e.ServiceAccount, e.Health, e.Workload)
}
