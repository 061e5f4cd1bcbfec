package model

import (
	"fmt"
	"sort"
	"strings"

	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
)

// BuildOptions is everything Build may read besides the config snapshot.
type BuildOptions struct {
	Mesh MeshConfig
	// VIPs allocates addresses for hosts without one; nil disables auto-allocation.
	VIPs VIPAllocator
	// Health overrides endpoint health by workload (auto-registered workloads
	// reporting probe results); nil means every endpoint is healthy.
	Health func(workload config.Key) (Health, bool)
}

// Build turns a config snapshot into a registry snapshot. It never fails on
// config content (that was validated before); it fails only if VIP
// allocation cannot be persisted.
func Build(cfg *config.Snapshot, opts BuildOptions) (*Snapshot, error) {
	if opts.Mesh.DomainSuffix == "" {
		opts.Mesh = DefaultMeshConfig()
	}
	s := &Snapshot{
		Mesh:      opts.Mesh,
		Config:    cfg,
		byHost:    map[string]*Service{},
		endpoints: map[string][]*Endpoint{},
	}

	// Services from ServiceEntries; the first definition of a host wins
	// (config validation reports the conflict on the later one).
	ses := append([]*config.Object(nil), cfg.List(config.KindServiceEntry)...)
	sort.SliceStable(ses, func(i, j int) bool { return olderFirst(ses[i], ses[j]) })
	type pending struct {
		svc *Service
		obj *config.Object
	}
	var built []pending
	var needVIP []string
	for _, o := range ses {
		se := o.Spec.(*networkingv1.ServiceEntry)
		for _, h := range se.GetHosts() {
			host := s.Mesh.ResolveHost(h, o.Namespace)
			if _, dup := s.byHost[host]; dup {
				continue
			}
			svc := serviceFromEntry(host, o, se)
			s.byHost[host] = svc
			built = append(built, pending{svc, o})
			if len(svc.Addresses) == 0 && svc.Resolution != ResolutionNone && !strings.HasPrefix(host, "*") {
				needVIP = append(needVIP, host)
			}
		}
	}
	if opts.VIPs != nil {
		vips, err := opts.VIPs.VIPs(needVIP)
		if err != nil {
			return nil, err
		}
		for _, h := range needVIP {
			if ip := vips[h]; ip != "" {
				s.byHost[h].Addresses = []string{ip}
				s.byHost[h].AutoAllocated = true
			}
		}
	}

	workloads := cfg.List(config.KindWorkloadEntry)
	for _, p := range built {
		se := p.obj.Spec.(*networkingv1.ServiceEntry)
		var eps []*Endpoint
		for _, we := range se.GetEndpoints() {
			eps = append(eps, endpointsFor(p.svc, we, config.Key{}, opts)...)
		}
		if sel := se.GetWorkloadSelector(); sel != nil {
			for _, wo := range workloads {
				if wo.Namespace != p.obj.Namespace {
					continue
				}
				we := wo.Spec.(*networkingv1.WorkloadEntry)
				if LabelsMatch(sel.GetLabels(), we.GetLabels()) {
					eps = append(eps, endpointsFor(p.svc, we, wo.Key(), opts)...)
				}
			}
		}
		if len(eps) == 0 && (p.svc.Resolution == ResolutionDNS || p.svc.Resolution == ResolutionDNSRoundRobin) &&
			!strings.HasPrefix(p.svc.Hostname, "*") {
			// DNS services with no endpoints resolve their own host name (Istio semantics).
			for _, port := range p.svc.Ports {
				eps = append(eps, &Endpoint{Address: p.svc.Hostname, Port: targetPort(port), ServicePort: port.Number, Weight: 1})
			}
		}
		sort.SliceStable(eps, func(i, j int) bool {
			if eps[i].ServicePort != eps[j].ServicePort {
				return eps[i].ServicePort < eps[j].ServicePort
			}
			if eps[i].Address != eps[j].Address {
				return eps[i].Address < eps[j].Address
			}
			return eps[i].Port < eps[j].Port
		})
		s.endpoints[p.svc.Hostname] = eps
	}

	for _, h := range sortedKeys(s.byHost) {
		s.services = append(s.services, s.byHost[h])
	}

	for _, o := range cfg.List(config.KindVirtualService) {
		vs := o.Spec.(*networkingv1.VirtualService)
		v := &VirtualService{Object: o, Spec: vs, Gateways: vs.GetGateways()}
		for _, h := range vs.GetHosts() {
			v.Hosts = append(v.Hosts, s.Mesh.ResolveHost(h, o.Namespace))
		}
		s.virtualServices = append(s.virtualServices, v)
	}
	sort.SliceStable(s.virtualServices, func(i, j int) bool {
		return olderFirst(s.virtualServices[i].Object, s.virtualServices[j].Object)
	})
	for _, o := range cfg.List(config.KindDestinationRule) {
		dr := o.Spec.(*networkingv1.DestinationRule)
		s.destinationRules = append(s.destinationRules, &DestinationRule{Object: o, Spec: dr, Host: s.Mesh.ResolveHost(dr.GetHost(), o.Namespace)})
	}
	s.sidecars = cfg.List(config.KindSidecar)

	var svcParts, epParts []string
	for _, svc := range s.services {
		svcParts = append(svcParts, serviceFingerprint(svc))
		for _, e := range s.endpoints[svc.Hostname] {
			epParts = append(epParts, endpointFingerprint(svc.Hostname, e))
		}
	}
	s.ServicesHash = hashStrings(svcParts)
	s.EndpointsHash = hashStrings(epParts)
	s.Version = fmt.Sprintf("%d-%s-%s", cfg.Version, s.ServicesHash[:8], s.EndpointsHash[:8])
	return s, nil
}

func olderFirst(a, b *config.Object) bool {
	if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
		return a.CreationTimestamp.Before(b.CreationTimestamp)
	}
	return a.Key().Less(b.Key())
}

func serviceFromEntry(host string, o *config.Object, se *networkingv1.ServiceEntry) *Service {
	svc := &Service{
		Hostname:        host,
		Namespace:       o.Namespace,
		Addresses:       append([]string(nil), se.GetAddresses()...),
		MeshExternal:    se.GetLocation() == networkingv1.ServiceEntry_MESH_EXTERNAL,
		SubjectAltNames: se.GetSubjectAltNames(),
		Source:          o.Key(),
	}
	switch se.GetResolution() {
	case networkingv1.ServiceEntry_DNS:
		svc.Resolution = ResolutionDNS
	case networkingv1.ServiceEntry_DNS_ROUND_ROBIN:
		svc.Resolution = ResolutionDNSRoundRobin
	case networkingv1.ServiceEntry_NONE:
		svc.Resolution = ResolutionNone
	default:
		svc.Resolution = ResolutionStatic
	}
	for _, e := range se.GetExportTo() {
		if e == "." {
			e = o.Namespace
		}
		svc.ExportTo = append(svc.ExportTo, e)
	}
	for _, p := range se.GetPorts() {
		svc.Ports = append(svc.Ports, Port{
			Name:       p.GetName(),
			Number:     p.GetNumber(),
			Protocol:   ParseProtocol(p.GetProtocol()),
			TargetPort: p.GetTargetPort(),
		})
	}
	return svc
}

// ParseProtocol maps an Istio protocol name (case-insensitive) to a Protocol.
func ParseProtocol(s string) Protocol {
	for _, p := range []Protocol{ProtocolHTTP, ProtocolHTTP2, ProtocolHTTPS, ProtocolGRPC, ProtocolGRPCWeb,
		ProtocolTCP, ProtocolTLS, ProtocolMongo, ProtocolRedis, ProtocolMySQL, ProtocolUDP} {
		if strings.EqualFold(string(p), s) {
			return p
		}
	}
	return ProtocolUnsupported
}

func targetPort(p Port) uint32 {
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

func endpointsFor(svc *Service, we *networkingv1.WorkloadEntry, key config.Key, opts BuildOptions) []*Endpoint {
	health := Healthy
	if opts.Health != nil && key.Name != "" {
		if h, ok := opts.Health(key); ok {
			health = h
		}
	}
	weight := we.GetWeight()
	if weight == 0 {
		weight = 1
	}
	var out []*Endpoint
	for _, sp := range svc.Ports {
		port := targetPort(sp)
		if p, ok := we.GetPorts()[sp.Name]; ok && p != 0 {
			port = p
		}
		out = append(out, &Endpoint{
			Address:        we.GetAddress(),
			Port:           port,
			ServicePort:    sp.Number,
			Labels:         we.GetLabels(),
			Network:        we.GetNetwork(),
			Locality:       we.GetLocality(),
			Weight:         weight,
			ServiceAccount: we.GetServiceAccount(),
			Health:         health,
			Workload:       key,
		})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
