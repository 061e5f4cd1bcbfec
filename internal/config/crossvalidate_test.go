package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

// named returns a decoded object renamed, with an origin source and creation time.
func named(t *testing.T, kind Kind, ns, name, source string, created int, spec string) *Object {
	t.Helper()
	o := mustObject(t, kind, spec)
	o.Namespace, o.Name = ns, name
	o.Origin = Origin{Source: source}
	o.CreationTimestamp = time.Unix(int64(created), 0)
	return o
}

func keys(objs []*Object) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.Origin.Source+":"+o.Key().String())
	}
	return strings.Join(s, ",")
}

func TestCrossValidate(t *testing.T) {
	tests := []struct {
		name      string
		objs      func(t *testing.T) []*Object
		wantKept  string
		wantDiags []string // "severity field key" for each diagnostic, sorted
	}{
		{
			name: "duplicate key across sources: earlier source wins",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindSidecar, "ns", "a", "dir", 2, "egress: [{hosts: ['./*']}]"),
					named(t, KindSidecar, "ns", "a", "store", 1, "egress: [{hosts: ['*/*']}]"),
				}
			},
			wantKept:  "dir:Sidecar ns/a",
			wantDiags: []string{"error metadata.name Sidecar ns/a"},
		},
		{
			name: "duplicate host same visibility: older wins regardless of order",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindServiceEntry, "ns", "new", "dir", 20, "hosts: [api.example.com]"),
					named(t, KindServiceEntry, "other", "old", "dir", 10, "hosts: [api.example.com]"),
				}
			},
			wantKept:  "dir:ServiceEntry other/old",
			wantDiags: []string{"error spec.hosts[0] ServiceEntry ns/new"},
		},
		{
			name: "same creation time: key order decides",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindServiceEntry, "ns", "b", "dir", 10, "hosts: [x.com, api.example.com]"),
					named(t, KindServiceEntry, "ns", "a", "dir", 10, "hosts: [api.example.com]"),
				}
			},
			wantKept:  "dir:ServiceEntry ns/a",
			wantDiags: []string{"error spec.hosts[1] ServiceEntry ns/b"},
		},
		{
			name: "short host resolves in its namespace",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindServiceEntry, "bookinfo", "a", "dir", 1, "hosts: [reviews]"),
					named(t, KindServiceEntry, "bookinfo", "b", "dir", 2, "hosts: [reviews.bookinfo.svc.cluster.local]"),
					named(t, KindServiceEntry, "other", "c", "dir", 3, "hosts: [reviews]"),
				}
			},
			wantKept:  "dir:ServiceEntry bookinfo/a,dir:ServiceEntry other/c",
			wantDiags: []string{"error spec.hosts[0] ServiceEntry bookinfo/b"},
		},
		{
			name: "same host, different visibility, is allowed",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindServiceEntry, "a", "se", "dir", 1, "hosts: [db.example.com]\nexportTo: [.]"),
					named(t, KindServiceEntry, "b", "se", "dir", 2, "hosts: [db.example.com]\nexportTo: [.]"),
				}
			},
			wantKept: "dir:ServiceEntry a/se,dir:ServiceEntry b/se",
		},
		{
			name: "conflicting protocol on overlapping visibility",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindServiceEntry, "a", "se", "dir", 1, "hosts: [db.example.com]\nports: [{number: 5432, name: pg, protocol: TCP}]"),
					named(t, KindServiceEntry, "b", "se", "dir", 2, "hosts: [db.example.com]\nexportTo: [., a]\nports: [{number: 80, name: h, protocol: HTTP}, {number: 5432, name: pg, protocol: HTTP}]"),
				}
			},
			wantKept:  "dir:ServiceEntry a/se",
			wantDiags: []string{"error spec.ports[1].protocol ServiceEntry b/se"},
		},
		{
			name: "same protocol different case is not a conflict",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindServiceEntry, "a", "se", "dir", 1, "hosts: [db.example.com]\nports: [{number: 80, name: h, protocol: http}]"),
					named(t, KindServiceEntry, "b", "se", "dir", 2, "hosts: [db.example.com]\nexportTo: [b]\nports: [{number: 80, name: h, protocol: HTTP}]"),
				}
			},
			wantKept: "dir:ServiceEntry a/se,dir:ServiceEntry b/se",
		},
		{
			name: "missing subset warns, object kept",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindDestinationRule, "bookinfo", "reviews", "dir", 1, "host: reviews\nsubsets: [{name: v1}, {name: v2}]"),
					named(t, KindVirtualService, "bookinfo", "reviews", "dir", 1,
						"hosts: [reviews]\nhttp: [{route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: v1}, weight: 50}, {destination: {host: reviews, subset: v3}, weight: 50}]}]"),
				}
			},
			wantKept:  "dir:DestinationRule bookinfo/reviews,dir:VirtualService bookinfo/reviews",
			wantDiags: []string{"warning spec.http[0].route[1].destination.subset VirtualService bookinfo/reviews"},
		},
		{
			name: "DR in another namespace does not define short-host subsets",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindDestinationRule, "other", "reviews", "dir", 1, "host: reviews\nsubsets: [{name: v1}]"),
					named(t, KindVirtualService, "bookinfo", "reviews", "dir", 1, "hosts: [reviews]\ntcp: [{route: [{destination: {host: reviews, subset: v1}}]}]"),
				}
			},
			wantKept:  "dir:DestinationRule other/reviews,dir:VirtualService bookinfo/reviews",
			wantDiags: []string{"warning spec.tcp[0].route[0].destination.subset VirtualService bookinfo/reviews"},
		},
		{
			name: "wildcard DR host defines subsets",
			objs: func(t *testing.T) []*Object {
				return []*Object{
					named(t, KindDestinationRule, "ns", "all", "dir", 1, "host: '*.example.com'\nsubsets: [{name: v1}]"),
					named(t, KindVirtualService, "ns", "vs", "dir", 1, "hosts: [api.example.com]\nhttp: [{route: [{destination: {host: api.example.com, subset: v1}}]}]"),
				}
			},
			wantKept: "dir:DestinationRule ns/all,dir:VirtualService ns/vs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept, diags := CrossValidate(tt.objs(t))
			if got := keys(kept); got != tt.wantKept {
				t.Errorf("kept = %s, want %s", got, tt.wantKept)
			}
			diags.Sort()
			var got []string
			for _, d := range diags {
				got = append(got, d.Severity.String()+" "+d.Field+" "+d.Key.String())
			}
			if strings.Join(got, "|") != strings.Join(tt.wantDiags, "|") {
				t.Errorf("diagnostics:\n got %q\nwant %q", got, tt.wantDiags)
			}
		})
	}
}

func TestCrossValidateBookinfoClean(t *testing.T) {
	data, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, diags := Decode(data, Origin{Source: "dir"})
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	kept, diags := CrossValidate(objs)
	if len(kept) != len(objs) || len(diags) != 0 {
		t.Fatalf("bookinfo should cross-validate cleanly: kept %d/%d, %v", len(kept), len(objs), diags)
	}
}
