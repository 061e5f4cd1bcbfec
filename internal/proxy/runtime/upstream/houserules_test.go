package upstream

import (
	"go/parser"
	"go/token"
	"os/exec"
	"strings"
	"testing"
)

// TestHouseRules enforces that weft-proxy stays lean: this package must not
// link Kubernetes, Helm, the control plane, or go-control-plane's server and
// cache (those are allowed in tests only), and it carries a package doc.
func TestHouseRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	forbidden := []string{
		"k8s.io/", "sigs.k8s.io/controller-runtime", "helm.sh/",
		"github.com/weftmesh/weft/internal/config", "github.com/weftmesh/weft/internal/model",
		"github.com/weftmesh/weft/internal/translate", "github.com/weftmesh/weft/internal/xds",
		"github.com/envoyproxy/go-control-plane/pkg/server", "github.com/envoyproxy/go-control-plane/pkg/cache",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("links forbidden package %s", dep)
			}
		}
	}
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range pkgs {
		if strings.HasSuffix(name, "_test") {
			continue
		}
		doc := false
		for _, f := range p.Files {
			if f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Package "+name+" ") {
				doc = true
			}
		}
		if !doc {
			t.Errorf("package %s has no \"// Package %s ...\" doc comment", name, name)
		}
	}
}
