package caclient_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanDeps keeps the CA server, the store and metrics out of the client
// that weft-proxy links.
func TestLeanDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/weftmesh/weft/internal/ca",
			strings.HasPrefix(dep, "go.etcd.io/bbolt"),
			strings.HasPrefix(dep, "github.com/prometheus/"),
			strings.HasPrefix(dep, "github.com/weftmesh/weft/internal/config"),
			strings.HasPrefix(dep, "k8s.io/"):
			t.Errorf("caclient depends on %s", dep)
		}
	}
}
