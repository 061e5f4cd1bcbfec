package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/agent"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/testenv"
)

// backend is a real net/http server on 127.0.0.1:0 that answers with its
// version; /slow sleeps 500ms first.
type backend struct {
	version string
	srv     *http.Server
	ln      net.Listener
	port    int
	hits    atomic.Int64
	lastReq atomic.Pointer[http.Request]
}

func startBackend(t *testing.T, version string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{version: version, ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.lastReq.Store(r.Clone(context.Background()))
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
		}
		w.Header().Set("x-version", version)
		fmt.Fprintf(w, "%s %s", version, r.URL.Path)
	})}
	go b.srv.Serve(ln)
	t.Cleanup(b.stop)
	return b
}

func (b *backend) stop() { b.srv.Close() }

// runningProxy is an in-process weft-proxy started with agent.New/Run.
type runningProxy struct {
	*agent.Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startProxy(t *testing.T, xdsAddr string, mutate func(*agent.Config)) *runningProxy {
	t.Helper()
	var w io.Writer = io.Discard
	if os.Getenv("WEFT_TEST_LOG") != "" {
		w = os.Stderr
	}
	var lv slog.LevelVar
	lv.Set(slog.LevelDebug)
	cfg := agent.Config{
		Level:          &lv,
		XDSAddr:        xdsAddr,
		Namespace:      "default",
		ServiceAccount: "productpage",
		Labels:         map[string]string{"app": "productpage", "version": "v1"},
		IP:             "127.0.0.1",
		WorkloadName:   "productpage-v1",
		Mode:           listener.Explicit,
		AdminAddr:      "127.0.0.1:0",
		HTTPProxyPort:  0,
		DrainTime:      3 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: &lv})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("start weft-proxy: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &runningProxy{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- a.Run(ctx) }()
	t.Cleanup(func() { p.stop(t) })
	// Ready once LDS and CDS were applied.
	testenv.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + a.AdminAddr() + "/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("ready: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	return p
}

func (p *runningProxy) stop(t *testing.T) error {
	var err error
	p.once.Do(func() {
		p.cancel()
		select {
		case err = <-p.done:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("proxy did not stop in 10s")
			t.Error(err)
		}
	})
	return err
}

// proxyClient returns an http.Client using the proxy as its HTTP proxy.
func (p *runningProxy) client() *http.Client {
	u := &url.URL{Scheme: "http", Host: p.HTTPProxyAddr()}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: 16},
		Timeout:   10 * time.Second,
	}
}
