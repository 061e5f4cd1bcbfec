// Package vmbundle is the on-disk bootstrap bundle a host needs to join the
// mesh: where weftd is, the root certificate to trust it by, a bootstrap
// token bound to a WorkloadGroup, mesh settings, an env file and a systemd
// unit. weftctl writes it; weft-proxy --bundle reads it. It depends on the
// standard library (and the stdlib-only ca/certpem) because weft-proxy links it.
package vmbundle

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/weftmesh/weft/internal/ca/certpem"
)

// File names inside a bundle directory.
const (
	MeshFile    = "mesh.json"
	RootFile    = "root-cert.pem"
	TokenFile   = "token"
	EnvFile     = "weft-proxy.env"
	UnitFile    = "weft-proxy.service"
	ReadmeFile  = "README.txt"
	ProbeFile   = "probe.json"
	DefaultPath = "/etc/weft"
)

// Mesh is mesh.json: everything weft-proxy needs besides the root and the token.
type Mesh struct {
	// CAAddr is weftd's secure address (CA and TLS xDS), host:port.
	CAAddr string `json:"caAddr"`
	// ServerName is the name weft-proxy verifies weftd's certificate against.
	ServerName     string `json:"serverName"`
	TrustDomain    string `json:"trustDomain"`
	DomainSuffix   string `json:"domainSuffix"`
	Namespace      string `json:"namespace"`
	WorkloadGroup  string `json:"workloadGroup"`
	ServiceAccount string `json:"serviceAccount"`
	// Address is the address the host advertises (NAT, several NICs); empty: the proxy picks its interface IP.
	Address string `json:"address,omitempty"`
	// Network names the host's network for multi-network meshes (optional).
	Network string `json:"network,omitempty"`
	// TokenExpires tells the operator until when the bundle can be used to join.
	TokenExpires time.Time `json:"tokenExpires"`
}

// Bundle is a whole bundle in memory.
type Bundle struct {
	Mesh  Mesh
	Root  []byte // PEM, one or more certificates (the trust bundle)
	Token string
	// Probe is the WorkloadGroup's readiness probe as Istio JSON (protojson
	// of networking.istio.io ReadinessProbe); nil when the group has none.
	Probe []byte
}

// Validate reports what makes the bundle unusable, all at once.
func (b *Bundle) Validate() error {
	var errs []error
	m := b.Mesh
	if _, _, err := net.SplitHostPort(m.CAAddr); err != nil {
		errs = append(errs, fmt.Errorf("caAddr %q: want host:port", m.CAAddr))
	}
	for name, v := range map[string]string{"namespace": m.Namespace, "workloadGroup": m.WorkloadGroup, "trustDomain": m.TrustDomain} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	if m.Address != "" && net.ParseIP(m.Address) == nil {
		errs = append(errs, fmt.Errorf("address %q is not an IP", m.Address))
	}
	if _, err := ParseRoots(b.Root); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(b.Token) == "" {
		errs = append(errs, errors.New("token is empty"))
	}
	return errors.Join(errs...)
}

// ParseRoots parses the trust bundle PEM.
func ParseRoots(data []byte) ([]*x509.Certificate, error) {
	roots, err := certpem.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}
	return roots, nil
}

// Write creates dir and writes the bundle; the token file is 0600. installDir
// is where the bundle will live on the host (used in the unit and env file).
func Write(dir, installDir string, b *Bundle) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("vmbundle: %w", err)
	}
	if installDir == "" {
		installDir = DefaultPath
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("vmbundle: %w", err)
	}
	mesh, err := json.MarshalIndent(b.Mesh, "", "  ")
	if err != nil {
		return err
	}
	var env, unit, readme strings.Builder
	data := struct {
		Mesh
		Dir string
	}{b.Mesh, installDir}
	for _, t := range []struct {
		tmpl string
		out  *strings.Builder
	}{{envTmpl, &env}, {unitTmpl, &unit}, {readmeTmpl, &readme}} {
		if err := template.Must(template.New("").Parse(t.tmpl)).Execute(t.out, data); err != nil {
			return fmt.Errorf("vmbundle: %w", err)
		}
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{MeshFile, append(mesh, '\n'), 0o644},
		{RootFile, b.Root, 0o644},
		{TokenFile, []byte(strings.TrimSpace(b.Token) + "\n"), 0o600},
		{EnvFile, []byte(env.String()), 0o644},
		{UnitFile, []byte(unit.String()), 0o644},
		{ReadmeFile, []byte(readme.String()), 0o644},
	}
	if len(b.Probe) > 0 {
		files = append(files, struct {
			name string
			data []byte
			mode os.FileMode
		}{ProbeFile, append(append([]byte(nil), b.Probe...), '\n'), 0o644})
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("vmbundle: write %s: %w", f.name, err)
		}
	}
	return nil
}

// Read loads and validates a bundle directory.
func Read(dir string) (*Bundle, error) {
	var b Bundle
	mesh, err := os.ReadFile(filepath.Join(dir, MeshFile))
	if err != nil {
		return nil, fmt.Errorf("vmbundle: %w (is %s a bundle from `weftctl vm bundle`?)", err, dir)
	}
	dec := json.NewDecoder(strings.NewReader(string(mesh)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Mesh); err != nil {
		return nil, fmt.Errorf("vmbundle: %s: %w", MeshFile, err)
	}
	if b.Root, err = os.ReadFile(filepath.Join(dir, RootFile)); err != nil {
		return nil, fmt.Errorf("vmbundle: %w", err)
	}
	tok, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		return nil, fmt.Errorf("vmbundle: %w", err)
	}
	b.Token = strings.TrimSpace(string(tok))
	if p, err := os.ReadFile(filepath.Join(dir, ProbeFile)); err == nil {
		b.Probe = p
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("vmbundle: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("vmbundle: %s: %w", dir, err)
	}
	return &b, nil
}

const envTmpl = `# weft-proxy settings for {{.WorkloadGroup}}.{{.Namespace}}; read by weft-proxy.service.
WEFT_PROXY_ARGS=--bundle {{.Dir}} --mode transparent
`

const unitTmpl = `[Unit]
Description=Weft mesh proxy ({{.WorkloadGroup}}.{{.Namespace}})
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile={{.Dir}}/weft-proxy.env
# Transparent mode: the capture rules are installed with full privileges
# ("+") before the proxy starts and removed after it stops; the proxy runs
# as the uid they exempt, so its own traffic is never captured.
ExecStartPre=+/usr/local/bin/weft-proxy capture install --proxy-uid 1337 --dns
ExecStart=/usr/local/bin/weft-proxy $WEFT_PROXY_ARGS
ExecStopPost=+/usr/local/bin/weft-proxy capture remove
User=1337
Group=1337
Restart=always
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
`

const readmeTmpl = `Weft bootstrap bundle: WorkloadGroup {{.WorkloadGroup}} in namespace {{.Namespace}}
CA and xDS: {{.CAAddr}} (certificate name {{.ServerName}}), trust domain {{.TrustDomain}}
The token in this directory is a secret; it lets one host join until {{.TokenExpires.Format "2006-01-02 15:04 MST"}}.

On the host:
  sudo mkdir -p {{.Dir}} && sudo cp -r ./* {{.Dir}}/ && sudo chmod 600 {{.Dir}}/token
  sudo chown -R 1337:1337 {{.Dir}}    # the proxy runs as uid 1337, the uid the capture rules exempt
  sudo cp weft-proxy /usr/local/bin/
  sudo cp {{.Dir}}/weft-proxy.service /etc/systemd/system/ && sudo systemctl daemon-reload
  sudo systemctl enable --now weft-proxy
Or, in the foreground:
  sudo weft-proxy capture install --proxy-uid 1337 --dns
  sudo -u '#1337' weft-proxy --bundle {{.Dir}} --mode transparent
`
