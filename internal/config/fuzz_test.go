package config

import (
	"testing"
)

// FuzzDecode feeds arbitrary bytes through Decode, Validate, Encode and
// CrossValidate: none may panic, and whatever decodes cleanly must survive an
// Encode/Decode round trip. Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\nspec: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, diags := Decode(data, Origin{Source: "fuzz", File: "f.yaml"})
		for _, d := range diags {
			if d.Message == "" {
				t.Errorf("diagnostic without message: %+v", d)
			}
		}
		for _, o := range objs {
			if o == nil || o.Spec == nil || o.Name == "" || o.Namespace == "" {
				t.Fatalf("Decode returned an incomplete object: %+v", o)
			}
			_ = Validate(o)
			out, err := Encode(o)
			if err != nil {
				t.Fatalf("Encode(%s): %v", o.Key(), err)
			}
			back, bdiags := Decode(out, Origin{})
			if len(bdiags) != 0 || len(back) != 1 || back[0].Key() != o.Key() {
				t.Fatalf("round trip of %s failed: %v\n%s", o.Key(), bdiags, out)
			}
		}
		_, _ = CrossValidate(objs)
	})
}
