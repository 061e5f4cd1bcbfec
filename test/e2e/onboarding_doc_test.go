package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/proxy/capture"
)

// TestOnboardingDocCaptureRules keeps the rules docs/vm-onboarding.md tells
// users to install by hand identical to what internal/proxy/capture
// renders for the same settings.
func TestOnboardingDocCaptureRules(t *testing.T) {
	doc, err := os.ReadFile("../../docs/vm-onboarding.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "cat > capture.rules <<'EOF'\n")
	rules, _, ok2 := strings.Cut(rest, "EOF\n")
	if !ok || !ok2 {
		t.Fatal("docs/vm-onboarding.md has no capture.rules heredoc")
	}
	plan, err := capture.Plan(capture.Config{ProxyUID: 1337, ProxyGID: 1337, RedirectDNS: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := plan.Describe(); rules != want {
		t.Errorf("docs/vm-onboarding.md capture.rules differ from capture.Plan:\n--- doc\n%s\n--- code\n%s", rules, want)
	}
}
