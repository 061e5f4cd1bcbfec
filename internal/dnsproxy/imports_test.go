package dnsproxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package linkable by weft-proxy: besides the standard
// library it may depend only on miekg/dns and the x/ packages it pulls in —
// never Kubernetes or control-plane code (the same rule internal/houserules
// applies to internal/proxy/...).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"github.com/weftmesh/weft/internal/dnsproxy", "github.com/miekg/dns", "golang.org/x/net/", "golang.org/x/sys/"}
	for dep := range strings.FieldsSeq(string(out)) {
		ok := false
		for _, a := range allowed {
			if dep == a || strings.HasPrefix(dep, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("dnsproxy depends on %s; weft-proxy links this package, keep it to stdlib + miekg/dns + x/net", dep)
		}
	}
}
