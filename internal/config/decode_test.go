package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
)

func TestDecodeBookinfo(t *testing.T) {
	data, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, diags := Decode(data, Origin{Source: "test", File: "bookinfo.yaml"})
	if len(diags) != 0 {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	want := []struct {
		kind       Kind
		name       string
		apiVersion string
		line       int
	}{
		{KindServiceEntry, "reviews", "networking.istio.io/v1", 2},
		{KindServiceEntry, "ratings", "networking.istio.io/v1beta1", 29},
		{KindVirtualService, "reviews", "networking.istio.io/v1alpha3", 49},
		{KindDestinationRule, "reviews", "networking.istio.io/v1", 83},
		{KindDestinationRule, "ratings", "networking.istio.io/v1", 109},
	}
	if len(objs) != len(want) {
		t.Fatalf("got %d objects, want %d", len(objs), len(want))
	}
	for i, w := range want {
		o := objs[i]
		if o.Kind != w.kind || o.Name != w.name || o.Namespace != "bookinfo" || o.APIVersion != w.apiVersion {
			t.Errorf("object %d = %s %s (%s), want %s %s (%s)", i, o.Kind, o.Key(), o.APIVersion, w.kind, w.name, w.apiVersion)
		}
		if o.Origin.Doc != i || o.Origin.Line != w.line || o.Origin.File != "bookinfo.yaml" {
			t.Errorf("object %d origin = %+v, want doc %d line %d", i, o.Origin, i, w.line)
		}
		if ds := Validate(o); ds.HasErrors() {
			t.Errorf("object %d does not validate: %v", i, ds)
		}
	}
	vs := objs[2].Spec.(*networkingv1.VirtualService)
	if got := vs.Http[1].Route[1].Weight; got != 10 {
		t.Errorf("canary weight = %d, want 10", got)
	}
	if got := vs.Http[1].Timeout.AsDuration(); got != 2*time.Second {
		t.Errorf("timeout = %v, want 2s", got)
	}
	// Go-style durations ("500ms") are accepted, not only protojson's seconds form.
	if got := vs.Http[1].Retries.PerTryTimeout.AsDuration(); got != 500*time.Millisecond {
		t.Errorf("perTryTimeout = %v, want 500ms", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string
		wantMsg   string
		wantObjs  int
	}{
		{
			name:      "unknown nested field has its path",
			in:        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {hots: x}\n",
			wantField: "spec.http[0].route[0].destination.hots",
			wantMsg:   `unknown field "hots"`,
		},
		{
			name:      "bad duration has its path",
			in:        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - timeout: soon\n",
			wantField: "spec.http[0].timeout",
			wantMsg:   "Duration",
		},
		{
			name:      "wrong type",
			in:        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: a\n",
			wantField: "spec.hosts",
		},
		{
			name:      "unknown kind names what is accepted",
			in:        "apiVersion: networking.istio.io/v1\nkind: VirtualServis\nmetadata: {name: a}\n",
			wantField: "kind",
			wantMsg:   "VirtualService (networking.istio.io/{v1,v1beta1,v1alpha3})",
		},
		{
			name:      "unknown apiVersion",
			in:        "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n",
			wantField: "kind",
			wantMsg:   "accepted:",
		},
		{
			name:      "name required",
			in:        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {namespace: x}\n",
			wantField: "metadata.name",
		},
		{
			name:      "name must be DNS-1123",
			in:        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: Bad_Name}\n",
			wantField: "metadata.name",
			wantMsg:   "DNS-1123",
		},
		{
			name:      "YAML boolean trap in name",
			in:        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: n}\n",
			wantField: "metadata.name",
			wantMsg:   "must be a string, not a bool (quote the value",
		},
		{
			name:      "bad List item has an items path",
			in:        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: Sidecar\n  metadata: {name: ok}\n- apiVersion: networking.istio.io/v1\n  kind: Sidecar\n  metadata: {name: bad}\n  spec: {egress: [{hostz: []}]}\n",
			wantField: "items[1].spec.egress[0].hostz",
			wantMsg:   `unknown field "hostz"`,
			wantObjs:  1,
		},
		{
			name:    "malformed YAML",
			in:      "apiVersion: [\n",
			wantMsg: "malformed YAML",
		},
		{
			name:    "scalar document",
			in:      "hello\n",
			wantMsg: "not an object",
		},
		{
			name:      "bad doc does not hide good one",
			in:        "apiVersion: networking.istio.io/v1\nkind: Nope\nmetadata: {name: a}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: b}\nspec: {}\n",
			wantField: "kind",
			wantObjs:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, diags := Decode([]byte(tt.in), Origin{File: "f.yaml"})
			if len(objs) != tt.wantObjs {
				t.Errorf("got %d objects, want %d", len(objs), tt.wantObjs)
			}
			if len(diags) != 1 {
				t.Fatalf("got %d diagnostics, want 1: %v", len(diags), diags)
			}
			d := diags[0]
			if d.Severity != SeverityError || d.Field != tt.wantField || !strings.Contains(d.Message, tt.wantMsg) {
				t.Errorf("diagnostic = %q field %q, want field %q message containing %q", d.Message, d.Field, tt.wantField, tt.wantMsg)
			}
			if d.Origin.File != "f.yaml" {
				t.Errorf("diagnostic origin = %+v, want file f.yaml", d.Origin)
			}
		})
	}
}

func TestDecodeShapes(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantNames []string
		wantDocs  []int
		wantLines []int
	}{
		{
			name:      "leading separator and empty docs are skipped",
			in:        "---\n# comment only\n---\n\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n--- # trailing comment\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: b}\n",
			wantNames: []string{"a", "b"},
			wantDocs:  []int{0, 1},
			wantLines: []int{6, 10},
		},
		{
			name:      "JSON object",
			in:        "\n{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Sidecar\",\"metadata\":{\"name\":\"j\"},\"spec\":{}}",
			wantNames: []string{"j"},
			wantDocs:  []int{0},
			wantLines: []int{2},
		},
		{
			name:      "YAML List",
			in:        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: Sidecar\n  metadata: {name: one}\n- apiVersion: networking.istio.io/v1\n  kind: Sidecar\n  metadata: {name: two}\n",
			wantNames: []string{"one", "two"},
			wantDocs:  []int{0, 0},
			wantLines: []int{1, 1},
		},
		{
			name:      "JSON List",
			in:        `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"p","namespace":"ns"},"spec":{"mtls":{"mode":"STRICT"}}}]}`,
			wantNames: []string{"p"},
			wantDocs:  []int{0},
			wantLines: []int{1},
		},
		{
			name: "empty input",
			in:   "\n\n# nothing\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, diags := Decode([]byte(tt.in), Origin{})
			if len(diags) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diags)
			}
			if len(objs) != len(tt.wantNames) {
				t.Fatalf("got %d objects, want %d", len(objs), len(tt.wantNames))
			}
			for i, o := range objs {
				if o.Name != tt.wantNames[i] || o.Origin.Doc != tt.wantDocs[i] || o.Origin.Line != tt.wantLines[i] {
					t.Errorf("object %d = %s doc %d line %d, want %s doc %d line %d",
						i, o.Name, o.Origin.Doc, o.Origin.Line, tt.wantNames[i], tt.wantDocs[i], tt.wantLines[i])
				}
				if o.Namespace == "" {
					t.Errorf("object %d has empty namespace; want defaulted", i)
				}
			}
		})
	}
}

func TestDecodeDefaultsNamespace(t *testing.T) {
	objs, _ := Decode([]byte("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n"), Origin{})
	if len(objs) != 1 || objs[0].Namespace != "default" {
		t.Fatalf("namespace not defaulted: %+v", objs)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, file := range []string{"testdata/bookinfo.yaml", "testdata/security.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		objs, diags := Decode(data, Origin{})
		if len(diags) != 0 {
			t.Fatalf("%s: %v", file, diags)
		}
		for _, o := range objs {
			o.Labels = map[string]string{"app": "x"}
			o.ResourceVersion = "7"
			o.Generation = 3
			o.CreationTimestamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			out, err := Encode(o)
			if err != nil {
				t.Fatalf("encode %s: %v", o.Key(), err)
			}
			back, diags := Decode(out, Origin{})
			if len(diags) != 0 || len(back) != 1 {
				t.Fatalf("decode(encode(%s)) = %d objects, %v\n%s", o.Key(), len(back), diags, out)
			}
			b := back[0]
			if b.Key() != o.Key() || b.APIVersion != o.APIVersion || b.ResourceVersion != "7" || b.Generation != 3 ||
				!b.CreationTimestamp.Equal(o.CreationTimestamp) || b.Labels["app"] != "x" {
				t.Errorf("meta did not round-trip: got %+v want %+v", b.Meta, o.Meta)
			}
			if !proto.Equal(b.Spec, o.Spec) {
				t.Errorf("%s: spec did not round-trip:\n%s", o.Key(), out)
			}
		}
	}
}

func TestEncodeUsesCamelCase(t *testing.T) {
	o := &Object{Kind: KindDestinationRule, Meta: Meta{Name: "r", Namespace: "ns"},
		Spec: &networkingv1.DestinationRule{Host: "r", TrafficPolicy: &networkingv1.TrafficPolicy{
			OutlierDetection: &networkingv1.OutlierDetection{MaxEjectionPercent: 10}}}}
	out, err := Encode(o)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"apiVersion: networking.istio.io/v1\n", "kind: DestinationRule\n", "trafficPolicy:", "maxEjectionPercent: 10"} {
		if !strings.Contains(s, want) {
			t.Errorf("encoded YAML lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "creationTimestamp") {
		t.Errorf("zero creationTimestamp should be omitted:\n%s", s)
	}
}

func TestNormalizeDuration(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2s", "2s"},
		{"0.25s", "0.25s"},
		{"500ms", "0.5s"},
		{"1m30s", "90s"},
		{"1h", "3600s"},
		{"1500us", "0.0015s"},
		{"-2ms", "-0.002s"},
		{"soon", "soon"},
	}
	for _, tt := range tests {
		if got := normalizeDuration(tt.in); got != tt.want {
			t.Errorf("normalizeDuration(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
