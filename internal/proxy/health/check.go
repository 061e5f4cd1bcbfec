package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// userAgent is sent by HTTP and gRPC probes unless a header overrides it,
// as the kubelet sends "kube-probe/<version>".
const userAgent = "weft-probe/1"

// maxBodyInError bounds how much of a failing HTTP response body ends up in
// LastError; the kubelet reads at most 10 KiB, we keep the error short.
const maxBodyInError = 256

// checker runs one probe attempt within the probe's timeout. It returns nil
// on success, else an error that reads well as Status.LastError.
type checker func(ctx context.Context) error

// handler is one kind of probe; it fails with fail(...) so that every kind
// words a timeout the same way.
type handler func(ctx context.Context, fail failFunc) error

// failFunc wraps err with what was attempted; when the probe's deadline
// caused err it says "timeout after <Timeout>" instead.
type failFunc func(what string, err error) error

// newChecker builds the checker for p, which must be valid and defaulted.
func newChecker(p *Probe) checker {
	h := newHandler(p)
	timeout := p.Timeout
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		fail := func(what string, err error) error {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: timeout after %v", what, timeout)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		return h(ctx, fail)
	}
}

func newHandler(p *Probe) handler {
	switch {
	case p.HTTPGet != nil:
		return newHTTPHandler(p.HTTPGet)
	case p.TCPSocket != nil:
		addr := net.JoinHostPort(hostOr(p.TCPSocket.Host), strconv.Itoa(p.TCPSocket.Port))
		return func(ctx context.Context, fail failFunc) error { return checkTCP(ctx, fail, addr) }
	case p.Exec != nil:
		argv := append([]string(nil), p.Exec.Command...)
		return func(ctx context.Context, fail failFunc) error { return runExec(ctx, fail, argv) }
	case p.GRPC != nil:
		addr := net.JoinHostPort(hostOr(p.GRPC.Host), strconv.Itoa(p.GRPC.Port))
		service := p.GRPC.Service
		return func(ctx context.Context, fail failFunc) error { return checkGRPC(ctx, fail, addr, service) }
	}
	return func(context.Context, failFunc) error { return errors.New("health: probe has no handler") }
}

func newHTTPHandler(h *HTTPGet) handler {
	scheme := "http"
	if strings.EqualFold(h.Scheme, "HTTPS") {
		scheme = "https"
	}
	path := h.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(hostOr(h.Host), strconv.Itoa(h.Port))}
	// Path may carry a query, as in Kubernetes ("/healthz?verbose").
	target := u.String() + path
	headers := append([]Header(nil), h.Headers...)

	// Like the kubelet: no keep-alives (nothing idles between probes), no
	// environment proxy, no compression, no certificate verification.
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:              nil,
			DisableKeepAlives:  true,
			DisableCompression: true,
			TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes do not verify, as kubelet's
			DialContext:        (&net.Dialer{}).DialContext,
		},
		CheckRedirect: sameHostRedirects,
	}
	return func(ctx context.Context, fail failFunc) error {
		what := "http probe: GET " + target
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return fail(what, err)
		}
		for _, hd := range headers {
			if strings.EqualFold(hd.Name, "Host") {
				req.Host = hd.Value
				continue
			}
			req.Header.Add(hd.Name, hd.Value)
		}
		// Defaults the probe's headers may override, as with the kubelet.
		for name, v := range map[string]string{"User-Agent": userAgent, "Accept": "*/*"} {
			if _, ok := req.Header[name]; !ok {
				req.Header.Set(name, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			return fail(what, unwrapURLError(err))
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyInError))
		if resp.StatusCode >= 200 && resp.StatusCode < 400 {
			return nil
		}
		msg := fmt.Sprintf("%s: status %d", what, resp.StatusCode)
		if b := strings.TrimSpace(string(body)); b != "" {
			msg += ": " + strconv.Quote(b)
		}
		return errors.New(msg)
	}
}

// sameHostRedirects follows redirects on the same host, as the kubelet does;
// a redirect elsewhere is not followed and its 3xx status counts as success.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	return nil
}

// unwrapURLError drops *url.Error's "Get "<url>": " prefix, which would
// repeat what the caller already says.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func checkTCP(ctx context.Context, fail failFunc, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail("tcp probe: connect "+addr, err)
	}
	return conn.Close()
}

func checkGRPC(ctx context.Context, fail failFunc, addr, service string) error {
	what := fmt.Sprintf("grpc probe: %s service %q", addr, service)
	// A fresh connection per probe, as the kubelet makes: nothing stays
	// open between probes, and a restarted server is seen at once.
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(userAgent),
	)
	if err != nil {
		return fail(what, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fail(what, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s: status %s", what, s)
	}
	return nil
}
