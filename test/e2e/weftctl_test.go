package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/cli"
	"github.com/weftmesh/weft/internal/testenv"
)

// weftctl runs the real weftctl commands in-process against wd.
func weftctl(t *testing.T, wd *testenv.Weftd, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--server", wd.MonitoringAddr.String(), "--data-dir", wd.DataDir}, args...)
	code = cli.Run(full, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const reviewsSE = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.11.1}]
`

const ratingsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route:
    - {destination: {host: ratings, subset: v1}, weight: 50}
    - {destination: {host: ratings, subset: v2}, weight: 50}
`

func TestWeftctlConfigLifecycle(t *testing.T) {
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: map[string]string{"reviews.yaml": reviewsSE}})

	// The directory's object is in effect and shows its source.
	code, out, errOut := weftctl(t, wd, "", "get", "serviceentries")
	if code != 0 || !strings.Contains(out, "reviews") || !strings.Contains(out, "dir:reviews.yaml") {
		t.Fatalf("get se: code %d\n%s%s", code, out, errOut)
	}

	// Apply from stdin into the embedded store.
	code, out, errOut = weftctl(t, wd, ratingsVS, "apply", "-f", "-")
	if code != 0 || !strings.Contains(out, "virtualservice.networking.istio.io/ratings -n default created") {
		t.Fatalf("apply: code %d\n%s%s", code, out, errOut)
	}
	code, out, _ = weftctl(t, wd, ratingsVS, "apply", "-f", "-")
	if code != 0 || !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply should be unchanged: code %d\n%s", code, out)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		code, out, errOut := weftctl(t, wd, "", "get", "vs", "ratings", "-o", "yaml")
		if code != 0 || !strings.Contains(out, "kind: VirtualService") || !strings.Contains(out, "weight: 50") {
			return &cliErr{code, out + errOut}
		}
		return nil
	})

	// A bad apply is refused with file, object and field, and changes nothing.
	bad := strings.Replace(ratingsVS, "weight: 50}", "weight: 40}", 1)
	code, _, errOut = weftctl(t, wd, bad, "apply", "-f", "-")
	if code != 1 || !strings.Contains(errOut, "VirtualService default/ratings") || !strings.Contains(errOut, "spec.http[0]") {
		t.Fatalf("bad apply: want exit 1 with object and field in the error, got %d\n%s", code, errOut)
	}
	_, out, _ = weftctl(t, wd, "", "get", "vs", "ratings", "-o", "yaml")
	if !strings.Contains(out, "weight: 50") {
		t.Fatalf("bad apply changed the config in effect:\n%s", out)
	}

	// Applying an object that the directory owns is refused.
	code, _, errOut = weftctl(t, wd, reviewsSE, "apply", "-f", "-")
	if code != 1 || !strings.Contains(errOut, "dir") {
		t.Fatalf("apply over a dir-owned object: want refusal naming the source, got %d\n%s", code, errOut)
	}

	// Delete from the store.
	code, out, errOut = weftctl(t, wd, "", "delete", "vs", "ratings")
	if code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = weftctl(t, wd, "", "delete", "vs", "ratings")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("second delete: want not found, got %d\n%s", code, errOut)
	}

	// A broken file keeps its last good objects serving and shows up in analyze.
	testenv.WriteFile(t, filepath.Join(wd.ConfigDir, "reviews.yaml"), "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews\n")
	testenv.Eventually(t, 5*time.Second, func() error {
		code, out, errOut := weftctl(t, wd, "", "analyze")
		if code != 1 || !strings.Contains(out, "reviews.yaml") {
			return &cliErr{code, out + errOut}
		}
		return nil
	})
	_, out, _ = weftctl(t, wd, "", "get", "se", "reviews")
	if !strings.Contains(out, "reviews") {
		t.Fatalf("last good ServiceEntry no longer served after a broken edit:\n%s", out)
	}

	// A wrong token is refused with a hint.
	badTok := filepath.Join(t.TempDir(), "bad.token")
	if err := os.WriteFile(badTok, []byte(strings.Repeat("0", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = weftctl(t, wd, "", "--token-file", badTok, "get", "vs")
	if code != 1 || !strings.Contains(errOut, "admin token") {
		t.Fatalf("wrong token: want refusal, got %d\n%s", code, errOut)
	}
}

func TestWeftctlValidateOffline(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "good.yaml"), reviewsSE)
	testenv.WriteFile(t, filepath.Join(dir, "bad.yaml"), "---\n"+strings.Replace(ratingsVS, "weight: 50}", "weight: 40}", 1))
	var out, errb bytes.Buffer
	code := cli.Run([]string{"validate", "-f", dir}, strings.NewReader(""), &out, &errb)
	if code != 1 {
		t.Fatalf("validate with a bad file: want exit 1, got %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "bad.yaml") || !strings.Contains(out.String(), "spec.http[0]") {
		t.Fatalf("validate output lacks file or field:\n%s", out.String())
	}
	out.Reset()
	code = cli.Run([]string{"validate", "-f", filepath.Join(dir, "good.yaml")}, strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("validate good file: exit %d\n%s", code, out.String())
	}
}

func TestWeftdRestartKeepsStoreAndVIPs(t *testing.T) {
	noAddr := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
`
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{})
	if code, out, errOut := weftctl(t, wd, noAddr, "apply", "-f", "-"); code != 0 {
		t.Fatalf("apply: %d %s%s", code, out, errOut)
	}
	var vip string
	testenv.Eventually(t, 5*time.Second, func() error {
		m := wd.Model()
		if m == nil || m.Service("api.example.com") == nil || len(m.Service("api.example.com").Addresses) == 0 {
			return &cliErr{0, "service not in model yet"}
		}
		vip = m.Service("api.example.com").Addresses[0]
		return nil
	})
	if !strings.HasPrefix(vip, "240.240.") {
		t.Fatalf("auto-allocated VIP %q not in 240.240.0.0/16", vip)
	}
	dataDir := wd.DataDir
	wd.Stop()

	wd2 := testenv.StartWeftd(t, testenv.WeftdOptions{DataDir: dataDir})
	testenv.Eventually(t, 5*time.Second, func() error {
		m := wd2.Model()
		if m == nil || m.Service("api.example.com") == nil {
			return &cliErr{0, "service lost across restart"}
		}
		if got := m.Service("api.example.com").Addresses[0]; got != vip {
			return &cliErr{0, "VIP changed across restart: " + vip + " -> " + got}
		}
		return nil
	})
}

type cliErr struct {
	code int
	out  string
}

func (e *cliErr) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.out) }
