package workloadmeta

import "testing"

func TestFromLabels(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   Workload
	}{
		{"app and version", map[string]string{"app": "reviews", "version": "v2"},
			Workload{"reviews-v2", "default", "reviews", "v2", "reviews", "v2", "unknown"}},
		{"canonical labels win", map[string]string{"app": "reviews", "version": "v2", "service.istio.io/canonical-name": "rev", "service.istio.io/canonical-revision": "r7"},
			Workload{"reviews-v2", "default", "reviews", "v2", "rev", "r7", "unknown"}},
		{"kubernetes recommended labels", map[string]string{"app.kubernetes.io/name": "reviews", "app.kubernetes.io/version": "1.2"},
			Workload{"reviews-v2", "default", "reviews", "1.2", "reviews", "1.2", "unknown"}},
		{"no labels", nil,
			Workload{"reviews-v2", "default", "unknown", "unknown", "reviews-v2", "latest", "unknown"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromLabels("reviews-v2", "default", tt.labels, ""); got != tt.want {
				t.Errorf("FromLabels = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := FromLabels("", "", nil, "c1"); got.Name != Unknown || got.Namespace != Unknown || got.CanonicalService != Unknown || got.Cluster != "c1" {
		t.Errorf("FromLabels of nothing = %+v", got)
	}
}

func TestStringParseRoundTrip(t *testing.T) {
	w := FromLabels("reviews-v2", "default", map[string]string{"app": "reviews", "version": "v2"}, "")
	if s := w.String(); s != "reviews-v2;default;reviews;v2;" {
		t.Fatalf("String = %q, want Istio's form", s)
	}
	got, ok := Parse(w.String(), "reviews", "v2")
	if !ok || got != w {
		t.Errorf("Parse(String) = %+v %v, want %+v", got, ok, w)
	}
	got, ok = Parse("db;prod;;;east", "", "")
	want := Workload{"db", "prod", "unknown", "unknown", "unknown", "latest", "east"}
	if !ok || got != want {
		t.Errorf("Parse with blanks = %+v %v, want %+v", got, ok, want)
	}
	for _, bad := range []string{"", "a;b;c;d", "a;b;c;d;e;f"} {
		if _, ok := Parse(bad, "", ""); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
