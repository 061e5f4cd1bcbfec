package xds

import (
	"testing"

	networkingv1 "istio.io/api/networking/v1"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/model"
)

func snapshotOf(t *testing.T, version uint64, eps []string, extra ...*config.Object) *model.Snapshot {
	t.Helper()
	se := &networkingv1.ServiceEntry{Hosts: []string{"a.ns.svc.cluster.local"},
		Ports: []*networkingv1.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}}
	for _, ip := range eps {
		se.Endpoints = append(se.Endpoints, &networkingv1.WorkloadEntry{Address: ip})
	}
	objs := append([]*config.Object{{Kind: config.KindServiceEntry, Meta: config.Meta{Name: "a", Namespace: "ns"}, Spec: se}}, extra...)
	m, err := model.Build(config.NewSnapshot(version, objs, nil), model.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func vs(timeout string) *config.Object {
	return &config.Object{Kind: config.KindVirtualService, Meta: config.Meta{Name: "v", Namespace: "ns"},
		Spec: &networkingv1.VirtualService{Hosts: []string{"a"}, Http: []*networkingv1.HTTPRoute{{Name: timeout}}}}
}

func TestEndpointOnlyChange(t *testing.T) {
	base := snapshotOf(t, 1, []string{"10.0.0.1"}, vs("x"))
	tests := []struct {
		name       string
		prev, next *model.Snapshot
		want       bool
	}{
		{"first model", nil, base, false},
		{"endpoint changed", base, snapshotOf(t, 2, []string{"10.0.0.2"}, vs("x")), true},
		{"equal VirtualService rebuilt", base, snapshotOf(t, 2, []string{"10.0.0.2"}, vs("x")), true},
		{"VirtualService changed", base, snapshotOf(t, 2, []string{"10.0.0.2"}, vs("y")), false},
		{"VirtualService removed", base, snapshotOf(t, 2, []string{"10.0.0.2"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endpointOnlyChange(tt.prev, tt.next); got != tt.want {
				t.Errorf("endpointOnlyChange = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOwnEndpointsForceFullGeneration(t *testing.T) {
	p := &model.Proxy{Namespace: "ns", IPs: []string{"10.0.0.1"}}
	before := snapshotOf(t, 1, []string{"10.0.0.1", "10.0.0.5"})
	other := snapshotOf(t, 2, []string{"10.0.0.1", "10.0.0.6"})
	gone := snapshotOf(t, 3, []string{"10.0.0.6"})
	if ownEndpoints(before, p) != ownEndpoints(other, p) {
		t.Error("another workload's endpoint change should not touch this proxy's own endpoints")
	}
	if ownEndpoints(before, p) == ownEndpoints(gone, p) {
		t.Error("the proxy's own endpoint disappearing must force full generation")
	}
}
