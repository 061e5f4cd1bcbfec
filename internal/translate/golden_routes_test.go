package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/config"
)

// updateRoutesGolden rewrites testdata/routes/*.golden from current output:
//
//	go test ./internal/translate/ -run Golden -update-routes
var updateRoutesGolden = flag.Bool("update-routes", false, "rewrite testdata/routes golden files")

// checkRoutesGolden compares resources, rendered as one JSON object keyed by
// resource name (sorted), with testdata/routes/<name>.golden. protojson's
// output is deliberately unstable in whitespace, so it is compacted and
// re-indented with encoding/json before comparing.
func checkRoutesGolden(t *testing.T, name string, resources map[string]proto.Message) {
	t.Helper()
	checkRoutesGoldenBytes(t, name, renderRoutesGolden(t, resources))
}

// checkRoutesDiagnosticsGolden keeps the warnings a scenario produces
// reviewable next to its resources, one per line.
func checkRoutesDiagnosticsGolden(t *testing.T, name string, diags config.Diagnostics) {
	t.Helper()
	var buf bytes.Buffer
	for _, d := range diags {
		buf.WriteString(d.Error())
		buf.WriteString("\n")
	}
	checkRoutesGoldenBytes(t, name, buf.Bytes())
}

func checkRoutesGoldenBytes(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "routes", name+".golden")
	if *updateRoutesGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-routes to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from generated output; run `go test ./internal/translate/ -update-routes` and review the diff.\n%s",
			path, routesFirstDiff(string(want), string(got)))
	}
}

func renderRoutesGolden(t *testing.T, resources map[string]proto.Message) []byte {
	t.Helper()
	names := make([]string, 0, len(resources))
	for n := range resources {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	buf.WriteString("{")
	for i, n := range names {
		raw, err := protojson.Marshal(resources[n])
		if err != nil {
			t.Fatalf("marshal %s: %v", n, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			t.Fatal(err)
		}
		key, _ := json.Marshal(n)
		if i > 0 {
			buf.WriteString(",")
		}
		buf.Write(key)
		buf.WriteString(":")
		buf.Write(compact.Bytes())
	}
	buf.WriteString("}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	return out.Bytes()
}

func routesFirstDiff(want, got string) string {
	wl, gl := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return "line " + routesItoa(i+1) + ":\n  want: " + string(w) + "\n  got:  " + string(g)
		}
	}
	return ""
}

func routesItoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// validateRouteResources runs go-control-plane's ValidateAll on every
// resource and on every message packed in an Any inside it (ValidateAll
// stops at Any boundaries, where filter configs live).
func validateRouteResources(t testing.TB, resources map[string]proto.Message) {
	t.Helper()
	if len(resources) == 0 {
		return
	}
	for name, m := range resources {
		if err := validateDeep(m); err != nil {
			t.Errorf("resource %q: %v", name, err)
		}
	}
}

func validateDeep(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	var walk func(protoreflect.Message) error
	walk = func(rm protoreflect.Message) error {
		if a, ok := rm.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				return err
			}
			return validateDeep(inner)
		}
		var err error
		rm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := 0; i < l.Len() && err == nil; i++ {
					err = walk(l.Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = walk(mv.Message())
					return err == nil
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				err = walk(v.Message())
			}
			return err == nil
		})
		return err
	}
	return walk(m.ProtoReflect())
}
