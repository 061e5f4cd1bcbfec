package h2

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies enforces the house rule: weft-proxy's data path links
// only the standard library, golang.org/x and the proxy's own engines (no
// Kubernetes, no control plane, no grpc-go outside tests).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(p, "/")
		switch {
		case !strings.Contains(first, "."): // standard library
		case strings.HasPrefix(p, "golang.org/x/"):
		case strings.HasPrefix(p, "github.com/weftmesh/weft/internal/proxy/"):
		default:
			t.Errorf("h2 links %s", p)
		}
	}
}
