package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/model"
)

var updateClustersGolden = flag.Bool("update-clusters", false, "rewrite internal/translate/testdata/clusters/*.golden")

// cdsRender prints resources in name order as indented JSON with sorted
// keys, so golden files are stable across protojson's deliberate
// whitespace randomisation.
func cdsRender(t testing.TB, res map[string]proto.Message, warnings []string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, name := range cdsSortedKeys(res) {
		raw, err := protojson.Marshal(res[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		out, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("# " + name + "\n")
		b.Write(out)
		b.WriteString("\n")
	}
	for _, w := range warnings {
		b.WriteString("# warning: " + w + "\n")
	}
	return b.Bytes()
}

func cdsGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "clusters", file)
	if *updateClustersGolden {
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
		t.Fatalf("%v (run go test ./internal/translate/ -update-clusters)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from generated output; rerun with -update-clusters and review the diff.\n%s", path, cdsFirstDiff(want, got))
	}
}

func cdsFirstDiff(want, got []byte) string {
	wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + string(w) + "\n  got: " + string(g)
		}
	}
	return ""
}

func TestClustersGolden(t *testing.T) {
	m := cdsMesh(t)
	for _, tc := range []struct {
		name  string
		proxy *model.Proxy
	}{
		{"sidecar", cdsSidecar()},
		{"grpc", cdsGRPCProxy()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Model: m, Proxy: tc.proxy}
			cds, warns := Clusters(in)
			eds := Endpoints(in)
			cdsValidate(t, cds)
			cdsValidate(t, eds)
			cdsGolden(t, tc.name+"_clusters.golden", cdsRender(t, cds, warns))
			cdsGolden(t, tc.name+"_endpoints.golden", cdsRender(t, eds, nil))

			// Determinism: a second run renders byte-for-byte the same.
			cds2, warns2 := Clusters(in)
			if !bytes.Equal(cdsRender(t, cds, warns), cdsRender(t, cds2, warns2)) {
				t.Error("Clusters is not deterministic")
			}
		})
	}
}
