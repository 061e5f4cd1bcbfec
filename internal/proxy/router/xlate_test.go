package router_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/router"
	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
)

// protoServer answers with the HTTP version it was spoken to in and echoes
// the body; h2only serves prior-knowledge HTTP/2 only.
func protoServer(t *testing.T, h2only bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("x-proto", r.Proto)
		fmt.Fprintf(w, "%s %s %s host=%s", r.Proto, r.URL.Path, b, r.Host)
	})
	if h2only {
		go func() {
			srv := &http2.Server{}
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
			}
		}()
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func h2Cluster(name string) *clusterv3.Cluster {
	c := edsCluster(name, 1024)
	opts, _ := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}
	return c
}

// An HTTP/1.1 client reaches an HTTP/2-only upstream (HTTP2 cluster) and an
// HTTP/2 client an HTTP/1.1-only upstream (plain HTTP cluster): the proxy
// speaks each side's protocol, as Envoy does.
func TestProtocolTranslation(t *testing.T) {
	const h2Name = "outbound|9080|h2|" + host
	h2Up, h1Up := protoServer(t, true), protoServer(t, false)
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{
		Name: host + ":9080", Domains: []string{host, host + ":9080"},
		Routes: []*routev3.Route{
			{Match: prefix("/to-h2"), Action: toCluster(h2Name),
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-route", Value: "h2"}}}},
			{Match: prefix("/"), Action: toCluster(v1Name)},
		},
	}}}
	s, err := wrt.Build(nil, h2Cluster(h2Name), edsCluster(v1Name, 1024), cla(h2Name, h2Up), cla(v1Name, h1Up), rc)
	if err != nil {
		t.Fatal(err)
	}
	h2pool := h2.NewPool(h2.PoolConfig{})
	defer h2pool.Close()
	h1pool := h2.NewHTTP1Pool(nil)
	defer h1pool.Close()
	rt := router.New(router.Config{Holder: wrt.NewHolder(s), Source: portSource{}})
	h1srv, err := h1.NewServer(h1.Config{Router: rt, Observer: rt, H2Upstream: h2pool})
	if err != nil {
		t.Fatal(err)
	}
	h2srv := h2.NewServer(h2.Config{Router: rt.H2(), Observer: rt.H2(), Pool: h2pool, HTTP1: h1pool})
	defer h2srv.Close()
	ln1, _ := net.Listen("tcp", "127.0.0.1:0")
	go h1srv.Serve(ln1)
	defer h1srv.Close()
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			go h2srv.ServeConn(c)
		}
	}()
	defer ln2.Close()

	t.Run("HTTP/1.1 client to HTTP/2 upstream", func(t *testing.T) {
		c, err := net.Dial("tcp", ln1.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; i < 3; i++ { // keep-alive across translated requests
			body := strings.Repeat("x", 10+i)
			fmt.Fprintf(c, "POST /to-h2/a HTTP/1.1\r\nHost: %s:9080\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "HTTP/2.0 /to-h2/a " + body + " host=" + host + ":9080"
			if resp.StatusCode != 200 || string(b) != want || resp.Header.Get("x-route") != "h2" || resp.Header.Get("x-proto") != "HTTP/2.0" {
				t.Fatalf("got %d %q %v, want %q", resp.StatusCode, b, resp.Header, want)
			}
		}
		fmt.Fprintf(c, "POST /to-h2/chunked HTTP/1.1\r\nHost: %s:9080\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", host)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 || resp.Header.Get("X-Weft-Reason") != "upstream_protocol_translation_unsupported" {
			t.Fatalf("chunked body to an HTTP/2 upstream: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("HTTP/2 client to HTTP/1.1 upstream", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		defer tr.CloseIdleConnections()
		for _, path := range []string{"/plain", "/to-h2/b"} {
			req, _ := http.NewRequest("POST", "http://"+ln2.Addr().String()+path, strings.NewReader("hi"))
			req.Host = host + ":9080"
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantProto := "HTTP/1.1"
			if path == "/to-h2/b" {
				wantProto = "HTTP/2.0"
			}
			if resp.StatusCode != 200 || !strings.HasPrefix(string(b), wantProto+" "+path+" hi") {
				t.Fatalf("%s: got %d %q, want %s upstream", path, resp.StatusCode, b, wantProto)
			}
		}
	})
}
