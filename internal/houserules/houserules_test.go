package houserules

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// TestPackageDocs requires a "// Package x ..." comment in every package.
func TestPackageDocs(t *testing.T) {
	root := repoRoot(t)
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		for name, pkg := range pkgs {
			documented := false
			for _, f := range pkg.Files {
				if f.Doc != nil && (strings.HasPrefix(f.Doc.Text(), "Package "+name+" ") || strings.HasPrefix(f.Doc.Text(), "Command ")) {
					documented = true
				}
			}
			if !documented {
				rel, _ := filepath.Rel(root, dir)
				t.Errorf("%s: package %s has no package doc comment (\"// Package %s ...\" or \"// Command ...\")", rel, name, name)
			}
		}
	}
}

// TestProxyStaysLean keeps Kubernetes, Helm and control-plane packages out of
// weft-proxy: the binary and every package it may link (internal/proxy/...,
// the CA client). go-control-plane's server and cache are allowed in tests only.
func TestProxyStaysLean(t *testing.T) {
	root := repoRoot(t)
	patterns := []string{"./internal/proxy/...", "./internal/ca/caclient", "./internal/dnsproxy", "./internal/vmbundle"}
	if _, err := os.Stat(filepath.Join(root, "cmd", "weft-proxy", "main.go")); err == nil {
		patterns = append(patterns, "./cmd/weft-proxy")
	}
	cmd := exec.Command("go", append([]string{"list", "-f", `{{.ImportPath}} {{join .Deps " "}}`}, patterns...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{
		"k8s.io/", "sigs.k8s.io/controller-runtime", "helm.sh/",
		"github.com/weftmesh/weft/internal/config", "github.com/weftmesh/weft/internal/model",
		"github.com/weftmesh/weft/internal/translate", "github.com/weftmesh/weft/internal/xds",
		"github.com/weftmesh/weft/internal/controlplane", "github.com/envoyproxy/go-control-plane/pkg/cache",
		"github.com/envoyproxy/go-control-plane/pkg/server",
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3 {
		t.Fatalf("go list found too few packages: %q", out)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		for _, dep := range fields[1:] {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s (rule: weft-proxy must not link Kubernetes, Helm or control-plane code)", fields[0], dep)
				}
			}
		}
	}
}
