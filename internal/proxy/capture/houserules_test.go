package capture

import (
	"os/exec"
	"strings"
	"testing"
)

// TestHouseRules: weft-proxy links this package, so it may depend only on
// the standard library and golang.org/x/sys.
func TestHouseRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/weftmesh/weft/internal/proxy/capture" && !strings.HasPrefix(dep, "golang.org/x/sys/") {
			t.Errorf("capture links %s; only the standard library and golang.org/x/sys are allowed", dep)
		}
	}
}
