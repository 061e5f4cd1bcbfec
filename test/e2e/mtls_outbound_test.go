package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/testenv"
)

// Mesh mTLS between two real weft-proxy processes: A (reviews) is the
// client's explicit HTTP proxy, B (productpage) serves the workload's
// inbound ports under a STRICT PeerAuthentication. Nothing but mesh mTLS
// gets from A to B.

const (
	reviewsID     = "spiffe://cluster.local/ns/default/sa/reviews"
	productpageID = "spiffe://cluster.local/ns/default/sa/productpage"
	productpageFQ = "productpage.default.svc.cluster.local"
)

// meshApps are productpage's applications on 127.0.0.1: HTTP, gRPC and a
// TCP echo server.
type meshApps struct {
	http              *backend
	grpcPort, tcpPort int
}

// closingHandler answers "productpage PATH"; under /close/ it answers
// without a length and closes the connection, which makes both proxies
// drop their connections too (the mesh connection is churned, so new
// handshakes keep happening under load).
func closingHandler(b *backend) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.lastReq.Store(r.Clone(context.Background()))
		if strings.HasPrefix(r.URL.Path, "/close/") {
			if c, rw, err := http.NewResponseController(w).Hijack(); err == nil {
				fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nproductpage %s", r.URL.Path)
				_ = rw.Flush()
				c.Close()
			}
			return
		}
		fmt.Fprintf(w, "productpage %s", r.URL.Path)
	})
}

func startMeshApps(t *testing.T) meshApps {
	t.Helper()
	apps := meshApps{http: startBackend(t, "productpage")}
	apps.http.srv.Handler = closingHandler(apps.http)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, streamingEcho{})
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	apps.grpcPort = gl.Addr().(*net.TCPAddr).Port
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	apps.tcpPort = tl.Addr().(*net.TCPAddr).Port
	return apps
}

// productpageMesh is productpage's service (HTTP, gRPC, TCP ports) with
// its workload at addr, STRICT mTLS mesh-wide, and no retries, so that any
// failed connection shows as a failed request.
func productpageMesh(addr string, apps meshApps) map[string]string {
	return map[string]string{
		"productpage.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [%[1]s]
  location: MESH_INTERNAL
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 7070, name: grpc, protocol: GRPC}
  - {number: 3306, name: tcp, protocol: TCP}
  resolution: STATIC
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: %[2]s, ports: {http: %[3]d, grpc: %[4]d, tcp: %[5]d}, labels: {app: productpage, version: v1}, serviceAccount: productpage}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: [%[1]s]
  http: [{route: [{destination: {host: %[1]s}}], retries: {attempts: 0}}]
`, productpageFQ, addr, apps.http.port, apps.grpcPort, apps.tcpPort),
		"pa.yaml": meshPeerAuthentication("STRICT"),
	}
}

// proxyProc is a weft-proxy process on its own loopback address with
// Istio's default ports (admin 15000, HTTP proxy 15080).
type proxyProc struct {
	addr string
	out  *syncBuffer
}

// startMeshProxyProc runs the weft-proxy binary with a workload identity
// for default/sa (bootstrap token from weftctl, bundle from weftctl ca
// bundle) and waits until it is ready.
func startMeshProxyProc(t *testing.T, bin string, wd *testenv.Weftd, pki *meshPKI, addr, sa string, certTTL time.Duration, extra ...string) *proxyProc {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(pki.token(t, sa)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--xds-addr", "127.0.0.1:1", "--ca-addr", wd.SecureAddr.String(), "--root-cert", pki.bundleFile, "--token-file", tokenFile,
		"--bind-addr", addr, "--ip", addr, "--workload-name", sa + "-v1", "--namespace", "default", "--service-account", sa,
		"--labels", "app=" + sa + ",version=v1", "--health-port", "0", "--drain-time", "1s", "--log-level", "debug"}
	if certTTL > 0 {
		args = append(args, "--cert-ttl", certTTL.String())
	}
	p := &proxyProc{addr: addr, out: &syncBuffer{}}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			out := p.out.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("weft-proxy %s (%s) output:\n%s", sa, addr, out)
		}
	})
	testenv.Eventually(t, 15*time.Second, func() error {
		select {
		case err := <-exited:
			t.Fatalf("weft-proxy %s exited: %v", sa, err)
		default:
		}
		code, body := getURL("http://" + addr + ":15000/ready")
		if code != 200 {
			return fmt.Errorf("ready %d %s", code, body)
		}
		return nil
	})
	return p
}

func getURL(u string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proxyProc) stats(t *testing.T) string {
	t.Helper()
	code, body := getURL("http://" + p.addr + ":15000/stats/prometheus")
	if code != 200 {
		t.Fatalf("stats: %d %s", code, body)
	}
	return body
}

// seriesWith returns the samples of metric name whose labels include
// every name="value" pair given.
func seriesWith(body, name string, labels ...string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(l, labels[i]+`="`+labels[i+1]+`"`) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// seriesSum adds the values of seriesWith.
func seriesSum(body, name string, labels ...string) float64 {
	var sum float64
	for _, l := range seriesWith(body, name, labels...) {
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// meshSetup is weftd, productpage's apps, B in front of them and A as the
// client's proxy.
type meshSetup struct {
	wd   *testenv.Weftd
	pki  *meshPKI
	apps meshApps
	a, b *proxyProc
}

// startMeshSetup starts everything with certificates of aTTL and bTTL (0:
// weftd's default); A starts stagger after B.
func startMeshSetup(t *testing.T, aAddr, bAddr string, aTTL, bTTL, stagger time.Duration) *meshSetup {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not installed (.ci/run installs it)")
	}
	bin := buildProxy(t)
	apps := startMeshApps(t)
	wd := testenv.StartWeftd(t, testenv.WeftdOptions{ConfigFiles: productpageMesh(bAddr, apps)})
	pki := newMeshPKI(t, wd)
	s := &meshSetup{wd: wd, pki: pki, apps: apps}
	s.b = startMeshProxyProc(t, bin, wd, pki, bAddr, "productpage", bTTL, "--explicit-inbound")
	time.Sleep(stagger)
	s.a = startMeshProxyProc(t, bin, wd, pki, aAddr, "reviews", aTTL)
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, port := range []int{apps.http.port, apps.grpcPort, apps.tcpPort} {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(bAddr, strconv.Itoa(port)), time.Second)
			if err != nil {
				return fmt.Errorf("B's inbound socket %d: %v", port, err)
			}
			c.Close()
		}
		return nil
	})
	return s
}

// curlVia sends one request through proxy p with curl and returns the
// status, the x-weft-reason header and the body.
func curlVia(t *testing.T, p *proxyProc, path string) (code int, reason, body string) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "-D", "-", "-x", "http://"+p.addr+":15080",
		"http://"+productpageFQ+":9080"+path).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	head, body, _ := strings.Cut(string(out), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if f := strings.Fields(lines[0]); len(f) >= 2 {
		code, _ = strconv.Atoi(f[1])
	}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "x-weft-reason") {
			reason = strings.TrimSpace(v)
		}
	}
	return code, reason, body
}

// TestMTLSOutboundHTTP: curl through A reaches the app behind B over mesh
// mTLS; B reports the caller's identity, A the server's. A DestinationRule
// that turns TLS off fails against STRICT; one that asks for ISTIO_MUTUAL
// explicitly works like auto mTLS.
func TestMTLSOutboundHTTP(t *testing.T) {
	const aAddr, bAddr = "127.0.20.11", "127.0.20.12"
	s := startMeshSetup(t, aAddr, bAddr, 0, 0, 0)

	if code, reason, body := curlVia(t, s.a, "/hello"); code != 200 || body != "productpage /hello" {
		t.Fatalf("through A: %d %q %q", code, reason, body)
	}
	// Only mTLS gets in: plaintext straight to B is refused.
	if out, err := curlPlain(t, net.JoinHostPort(bAddr, strconv.Itoa(s.apps.http.port))); err == nil {
		t.Fatalf("plaintext to B under STRICT: %q", out)
	}
	// A request is recorded just after its answer went out: poll briefly.
	testenv.Eventually(t, 5*time.Second, func() error {
		if in := seriesWith(s.b.stats(t), "istio_requests_total", "reporter", "destination", "response_code", "200",
			"connection_security_policy", "mutual_tls", "source_principal", reviewsID, "destination_principal", productpageID); len(in) != 1 {
			return fmt.Errorf("B's istio_requests_total with mutual_tls and A's identity: %q", in)
		}
		aStats := s.a.stats(t)
		if out := seriesWith(aStats, "istio_requests_total", "reporter", "source", "response_code", "200",
			"destination_principal", productpageID, "source_principal", reviewsID); len(out) != 1 {
			return fmt.Errorf("A's istio_requests_total with B's identity: %q", out)
		}
		if n := seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "ok"); n < 1 {
			return fmt.Errorf("A made %v full TLS handshakes", n)
		}
		return nil
	})

	t.Run("DestinationRule tls DISABLE against STRICT", func(t *testing.T) {
		dr := filepath.Join(s.wd.ConfigDir, "dr.yaml")
		testenv.WriteFile(t, dr, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: `+productpageFQ+`
  trafficPolicy: {tls: {mode: DISABLE}}
`)
		var code int
		var reason string
		var hits int64
		testenv.Eventually(t, 10*time.Second, func() error {
			hits = s.apps.http.hits.Load()
			code, reason, _ = curlVia(t, s.a, "/plain")
			if code == 200 {
				return fmt.Errorf("still 200")
			}
			return nil
		})
		// B's STRICT chain drops a plaintext request without an answer: the
		// upstream reset the connection after taking the request.
		if code != 502 || reason != "upstream_reset" {
			t.Errorf("plaintext to STRICT: %d %s, want 502 upstream_reset", code, reason)
		}
		if n := s.apps.http.hits.Load(); n != hits {
			t.Error("the plaintext request reached the app")
		}
		testenv.WriteFile(t, dr, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: `+productpageFQ+`
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`)
		testenv.Eventually(t, 10*time.Second, func() error {
			if code, reason, body := curlVia(t, s.a, "/istio-mutual"); code != 200 || body != "productpage /istio-mutual" {
				return fmt.Errorf("ISTIO_MUTUAL: %d %s %q", code, reason, body)
			}
			return nil
		})
	})
}

// TestMTLSOutboundGRPCAndTCP: a grpc-go client (h2c prior knowledge to A's
// explicit port) and a raw TCP client (CONNECT through A) reach their apps
// over mesh mTLS; B sniffs HTTP/2 inside TLS.
func TestMTLSOutboundGRPCAndTCP(t *testing.T) {
	const aAddr, bAddr = "127.0.20.21", "127.0.20.22"
	s := startMeshSetup(t, aAddr, bAddr, 0, 0, 0)

	conn, err := grpc.NewClient(aAddr+":15080", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(productpageFQ+":7070"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var trailer metadata.MD
	resp, err := client.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-user", "jason"), &testgrpc.SimpleRequest{}, grpc.Trailer(&trailer))
	if err != nil || resp.GetHostname() != "app" || resp.GetUsername() != "jason" || strings.Join(trailer.Get("x-trailer"), "") != "t1" {
		t.Fatalf("unary over mesh mTLS: %v %+v trailer %v", err, resp, trailer)
	}
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such book"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("status over mesh mTLS: %v", err)
	}
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		body := []byte(fmt.Sprintf("msg-%d", i))
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			t.Fatal(err)
		}
		if got, err := stream.Recv(); err != nil || string(got.GetPayload().GetBody()) != string(body) {
			t.Fatalf("bidi message %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		grpcIn := seriesWith(s.b.stats(t), "istio_requests_total", "reporter", "destination", "destination_service", productpageFQ,
			"connection_security_policy", "mutual_tls", "source_principal", reviewsID)
		if seriesSum(strings.Join(grpcIn, "\n"), "istio_requests_total") < 3 {
			return fmt.Errorf("B's mTLS request metrics after the gRPC calls: %q", grpcIn)
		}
		return nil
	})

	// Raw TCP through an HTTP CONNECT tunnel on A.
	c, err := net.DialTimeout("tcp", aAddr+":15080", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:3306 HTTP/1.1\r\nHost: %s:3306\r\n\r\n", productpageFQ, productpageFQ)
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("CONNECT: %q %v", line, err)
	}
	for l := ""; l != "\r\n"; {
		if l, err = br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("tcp over mesh mTLS %d\n", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	c.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := seriesSum(s.b.stats(t), "istio_tcp_connections_closed_total", "reporter", "destination",
			"connection_security_policy", "mutual_tls", "source_principal", reviewsID); n < 1 {
			return fmt.Errorf("B's mTLS TCP connections closed: %v", n)
		}
		if n := seriesSum(s.a.stats(t), "istio_tcp_received_bytes_total", "reporter", "source", "destination_principal", productpageID); n < 60 {
			return fmt.Errorf("A's TCP bytes to B's identity: %v", n)
		}
		return nil
	})
}

// loadResult counts a bounded load run through A.
type loadResult struct {
	ok, failed atomic.Int64
	firstErr   atomic.Pointer[string]
	done       chan struct{}
}

// runLoad sends GETs through A with fixed concurrency until stop is closed
// or limit requests per worker were sent.
func runLoad(t *testing.T, a *proxyProc, workers, limit int, stop <-chan struct{}) *loadResult {
	t.Helper()
	res := &loadResult{done: make(chan struct{})}
	u := &url.URL{Scheme: "http", Host: a.addr + ":15080"}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: workers}, Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < limit; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path := fmt.Sprintf("/load/%d/%d", w, i)
				if i%10 == 9 {
					path = fmt.Sprintf("/close/%d/%d", w, i)
				}
				resp, err := client.Get("http://" + productpageFQ + ":9080" + path)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || string(body) != "productpage "+path) {
						err = fmt.Errorf("%d %s %q", resp.StatusCode, resp.Header.Get("x-weft-reason"), body)
					}
				}
				if err != nil {
					res.failed.Add(1)
					msg := fmt.Sprintf("%s at %s: %v", path, time.Now().Format("15:04:05.000"), err)
					res.firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				res.ok.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(res.done) }()
	return res
}

func (r *loadResult) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatal("load workers did not stop")
	}
}

func (r *loadResult) check(t *testing.T) {
	t.Helper()
	t.Logf("%d requests succeeded, %d failed", r.ok.Load(), r.failed.Load())
	if n := r.failed.Load(); n != 0 {
		t.Errorf("%d requests failed; first: %s", n, *r.firstErr.Load())
	}
	if r.ok.Load() < 200 {
		t.Errorf("only %d requests in the run", r.ok.Load())
	}
}

func issued(t *testing.T, wd *testenv.Weftd) float64 {
	t.Helper()
	code, body := getURL("http://" + wd.MonitoringAddr.String() + "/metrics")
	if code != 200 {
		t.Fatalf("weftd metrics: %d", code)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "citadel_server_success_cert_issuance_count "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	t.Fatal("weftd has no citadel_server_success_cert_issuance_count")
	return 0
}

// TestMTLSOutboundRotationUnderLoad: with 4s certificates both proxies
// renew every ~2s while four clients keep sending through A for 16s (every
// tenth request closes the mesh connection, so new handshakes keep
// happening); not one request fails.
func TestMTLSOutboundRotationUnderLoad(t *testing.T) {
	const aAddr, bAddr = "127.0.20.31", "127.0.20.32"
	s := startMeshSetup(t, aAddr, bAddr, 4*time.Second, 4*time.Second, 0)
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, _, _ := curlVia(t, s.a, "/warm"); code != 200 {
			return fmt.Errorf("warm-up %d", code)
		}
		return nil
	})
	aStats := s.a.stats(t)
	before := issued(t, s.wd)
	hsBefore, resBefore := seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "ok"), seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "resumed")
	stop := make(chan struct{})
	load := runLoad(t, s.a, 4, 1_000_000, stop)
	time.Sleep(16 * time.Second)
	close(stop)
	load.wait(t)
	load.check(t)
	renewals := issued(t, s.wd) - before
	aStats = s.a.stats(t)
	hs := seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "ok") - hsBefore
	res := seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "resumed") - resBefore
	t.Logf("%v certificates issued during the run; A's upstream handshakes: %v full, %v resumed", renewals, hs, res)
	if renewals < 8 {
		t.Errorf("%v certificates issued in 16s with a 4s TTL, want >= 8 (both proxies renew every ~2s)", renewals)
	}
	// A session taken with an older certificate is never resumed: each of
	// A's renewals shows as (at least) one full handshake.
	if hs < 6 || res < 100 {
		t.Errorf("A made %v full and %v resumed handshakes: the mesh connection did not churn or rotation did not reach new handshakes", hs, res)
	}
}

// TestMTLSOutboundRootRotation: rotate the mesh root under load, let every
// proxy renew under the new root, retire the old one — no request fails,
// and B ends up serving a certificate of the new root.
func TestMTLSOutboundRootRotation(t *testing.T) {
	const aAddr, bAddr = "127.0.20.41", "127.0.20.42"
	// B renews every ~2s, A every ~4s: after the rotation B usually holds a
	// certificate of the new root before A trusts it (A fetches the bundle
	// on the unknown root), otherwise A offers B its previous certificate.
	s := startMeshSetup(t, aAddr, bAddr, 8*time.Second, 4*time.Second, time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, _, _ := curlVia(t, s.a, "/warm"); code != 200 {
			return fmt.Errorf("warm-up %d", code)
		}
		return nil
	})
	oldRoot := s.wd.CA().TrustBundle()[0]
	// The new root's name carries its creation time to the second: make
	// it differ from the old one's (peers name the CAs they accept).
	time.Sleep(time.Until(oldRoot.NotBefore.Add(time.Minute + 1100*time.Millisecond)))

	stop := make(chan struct{})
	load := runLoad(t, s.a, 4, 1_000_000, stop)
	time.Sleep(2 * time.Second)
	if code, out, errOut := weftctl(t, s.wd, "", "ca", "rotate-root"); code != 0 {
		t.Fatalf("rotate-root: %s %s", out, errOut)
	}
	newRoot := s.wd.CA().TrustBundle()[0]
	if newRoot.Equal(oldRoot) {
		t.Fatal("rotate-root did not change the active root")
	}
	// Certificates live 8s (A) and 4s (B) and renew at half-life: after 6s
	// every proxy holds one from the new root.
	time.Sleep(6 * time.Second)
	if issuer := servedBy(t, s, bAddr); !issuer.Equal(newRoot) {
		t.Fatalf("B still serves a certificate of the old root after 6s")
	}
	if code, out, errOut := weftctl(t, s.wd, "", "ca", "retire-root"); code != 0 {
		t.Fatalf("retire-root: %s %s", out, errOut)
	}
	if n := len(s.wd.CA().TrustBundle()); n != 1 {
		t.Fatalf("bundle after retire: %d roots", n)
	}
	time.Sleep(8 * time.Second) // several renewals with the one-root bundle
	close(stop)
	load.wait(t)
	load.check(t)
	if issuer := servedBy(t, s, bAddr); !issuer.Equal(newRoot) {
		t.Error("B serves a certificate of the old root after retirement")
	}
	aStats := s.a.stats(t)
	t.Logf("A's upstream handshakes: %v full, %v resumed, %v refused certificates (a peer under a root A had not learned yet: bundle fetched, retried)",
		seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "ok"), seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "resumed"),
		seriesSum(aStats, "weft_upstream_tls_handshakes_total", "result", "verify_failed"))
}

// servedBy returns the root B's inbound certificate chains to, checked
// with a client certificate issued now.
func servedBy(t *testing.T, s *meshSetup, bAddr string) *x509.Certificate {
	t.Helper()
	bundle := s.wd.CA().TrustBundle()
	pool := x509.NewCertPool()
	for _, r := range bundle {
		pool.AddCert(r)
	}
	s.pki.pool = pool // weftd's own certificate follows the active root after retirement
	client := s.pki.issue(t, "reviews", time.Minute)
	c, err := tls.Dial("tcp", net.JoinHostPort(bAddr, strconv.Itoa(s.apps.http.port)), &tls.Config{
		Certificates: []tls.Certificate{client}, InsecureSkipVerify: true, NextProtos: []string{"istio"},
	})
	if err != nil {
		t.Fatalf("handshake with B: %v", err)
	}
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	for _, r := range bundle {
		if leaf.CheckSignatureFrom(r) == nil {
			return r
		}
	}
	t.Fatalf("B's certificate chains to no root of the bundle")
	return nil
}
