package health

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults applied to zero-valued Probe fields, the same as Kubernetes'.
const (
	DefaultPeriod           = 10 * time.Second
	DefaultTimeout          = 1 * time.Second
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
	// DefaultHost is where probes connect when Host is empty: the
	// application on this host, reached over loopback.
	DefaultHost = "127.0.0.1"
)

// Probe is a readiness probe. It mirrors Istio's WorkloadGroup
// ReadinessProbe (networking.istio.io/v1 WorkloadGroup.probe), with seconds
// turned into durations; exactly one of HTTPGet, TCPSocket, Exec and GRPC is
// set.
type Probe struct {
	// HTTPGet succeeds when GET returns a status from 200 to 399.
	HTTPGet *HTTPGet
	// TCPSocket succeeds when a TCP connection can be opened.
	TCPSocket *TCPSocket
	// Exec succeeds when the command exits with status 0.
	Exec *Exec
	// GRPC succeeds when the gRPC health service answers SERVING.
	GRPC *GRPC

	// InitialDelay is how long after start the first probe runs; until then
	// the workload is unhealthy.
	InitialDelay time.Duration
	// Period is the interval between probe starts (default 10s).
	Period time.Duration
	// Timeout bounds one probe (default 1s). A probe that exceeds it fails;
	// an exec probe's whole process group is killed.
	Timeout time.Duration
	// SuccessThreshold is how many consecutive successes make an unhealthy
	// workload healthy (default 1).
	SuccessThreshold int
	// FailureThreshold is how many consecutive failures make a healthy
	// workload unhealthy (default 3).
	FailureThreshold int
}

// HTTPGet is an HTTP GET probe.
type HTTPGet struct {
	// Path to request; "/" when empty.
	Path string
	// Port on Host (1-65535).
	Port int
	// Host to connect to; 127.0.0.1 when empty. A "Host" entry in Headers
	// sets the request's Host header instead.
	Host string
	// Scheme is "HTTP" (default) or "HTTPS". Like the kubelet, HTTPS does
	// not verify the server's certificate.
	Scheme string
	// Headers are added to the request, in order.
	Headers []Header
}

// Header is one HTTP request header of an HTTPGet probe.
type Header struct {
	Name  string
	Value string
}

// TCPSocket is a TCP connect probe.
type TCPSocket struct {
	// Host to connect to; 127.0.0.1 when empty.
	Host string
	// Port on Host (1-65535).
	Port int
}

// Exec runs a command on the host, as the proxy's user, without a shell.
type Exec struct {
	// Command is the program and its arguments; the program is looked up in
	// PATH. Use ["sh", "-c", "..."] for shell syntax.
	Command []string
}

// GRPC is a gRPC health-checking-protocol probe (grpc.health.v1.Health/Check)
// over plaintext.
type GRPC struct {
	// Port on 127.0.0.1 (1-65535).
	Port int
	// Service is the service name to check; empty checks the whole server.
	Service string
	// Host to connect to; 127.0.0.1 when empty. (Not in Istio's API; the
	// kubelet uses the pod IP.)
	Host string
}

// Validate reports every problem with p, joined into one error, each naming
// the field. It accepts zero values that have defaults.
func (p *Probe) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("health: probe: "+format, args...))
	}
	n := 0
	if h := p.HTTPGet; h != nil {
		n++
		checkPort(bad, "httpGet.port", h.Port)
		checkHost(bad, "httpGet.host", h.Host)
		switch strings.ToUpper(h.Scheme) {
		case "", "HTTP", "HTTPS":
		default:
			bad("httpGet.scheme %q: want HTTP or HTTPS", h.Scheme)
		}
		if strings.ContainsAny(h.Path, " \r\n") {
			bad("httpGet.path %q contains whitespace", h.Path)
		}
		for i, hd := range h.Headers {
			if !validHeaderName(hd.Name) {
				bad("httpGet.headers[%d].name %q is not a valid header name", i, hd.Name)
			}
			if strings.ContainsAny(hd.Value, "\r\n\x00") {
				bad("httpGet.headers[%d].value for %q contains a line break or NUL", i, hd.Name)
			}
		}
	}
	if t := p.TCPSocket; t != nil {
		n++
		checkPort(bad, "tcpSocket.port", t.Port)
		checkHost(bad, "tcpSocket.host", t.Host)
	}
	if e := p.Exec; e != nil {
		n++
		if len(e.Command) == 0 || e.Command[0] == "" {
			bad("exec.command is empty")
		}
	}
	if g := p.GRPC; g != nil {
		n++
		checkPort(bad, "grpc.port", g.Port)
		checkHost(bad, "grpc.host", g.Host)
	}
	if n != 1 {
		bad("exactly one of httpGet, tcpSocket, exec, grpc must be set (have %d)", n)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"initialDelay", p.InitialDelay}, {"period", p.Period}, {"timeout", p.Timeout}} {
		if d.v < 0 {
			bad("%s %v is negative", d.name, d.v)
		}
	}
	if p.SuccessThreshold < 0 {
		bad("successThreshold %d is negative", p.SuccessThreshold)
	}
	if p.FailureThreshold < 0 {
		bad("failureThreshold %d is negative", p.FailureThreshold)
	}
	return errors.Join(errs...)
}

func checkPort(bad func(string, ...any), field string, port int) {
	if port < 1 || port > 65535 {
		bad("%s %d out of range 1-65535", field, port)
	}
}

func checkHost(bad func(string, ...any), field, host string) {
	// A host is a name or an IP literal; a port, scheme or path in it is a
	// common mistake that would otherwise surface only as a dial error.
	if strings.ContainsAny(host, "/ []") || (strings.Count(host, ":") == 1) {
		bad("%s %q: want a host name or IP address without port or scheme", field, host)
	}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// withDefaults returns p with zero fields set to their defaults.
func (p Probe) withDefaults() Probe {
	if p.Period == 0 {
		p.Period = DefaultPeriod
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultFailureThreshold
	}
	return p
}

// handlerName names the probe's handler for logs and errors.
func (p *Probe) handlerName() string {
	switch {
	case p.HTTPGet != nil:
		return "httpGet"
	case p.TCPSocket != nil:
		return "tcpSocket"
	case p.Exec != nil:
		return "exec"
	case p.GRPC != nil:
		return "grpc"
	}
	return "none"
}

func hostOr(h string) string {
	if h == "" {
		return DefaultHost
	}
	return h
}
