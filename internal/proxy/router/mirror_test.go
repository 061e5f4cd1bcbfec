package router_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/mirror"
	"github.com/weftmesh/weft/internal/proxy/router"
	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
)

type shadowSeen struct {
	host, path, body, added string
}

// shadowBackend records every request it gets.
func shadowBackend(t *testing.T) (string, chan shadowSeen) {
	t.Helper()
	ch := make(chan shadowSeen, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- shadowSeen{r.Host, r.URL.Path, string(b), r.Header.Get("x-added")}
		w.WriteHeader(500) // a shadow's answer must never reach the client
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ch
}

func TestMirror(t *testing.T) {
	const shadowName = "outbound|9080|shadow|" + host
	mirrorAll := []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: shadowName}}
	mirrorNone := []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: shadowName, RuntimeFraction: &corev3.RuntimeFractionalPercent{
		DefaultValue: &typev3.FractionalPercent{Numerator: 0, Denominator: typev3.FractionalPercent_HUNDRED}}}}
	route := func(p string, ms []*routev3.RouteAction_RequestMirrorPolicy) *routev3.Route {
		return &routev3.Route{Match: prefix(p), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: v1Name}, RequestMirrorPolicies: ms}},
			RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "yes"}}}}
	}
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{
		Name: host + ":9080", Domains: []string{host, host + ":9080"},
		Routes: []*routev3.Route{route("/none", mirrorNone), route("/", mirrorAll)},
	}}}
	shadowAddr, seen := shadowBackend(t)
	s, err := wrt.Build(nil, edsCluster(v1Name, 1024), edsCluster(shadowName, 1024), cla(v1Name, backend(t, "v1")), cla(shadowName, shadowAddr), rc)
	if err != nil {
		t.Fatal(err)
	}
	snd := mirror.New(mirror.Config{})
	t.Cleanup(snd.Close)
	rt := router.New(router.Config{Holder: wrt.NewHolder(s), Source: portSource{}})
	srv, err := h1.NewServer(h1.Config{Router: rt, Observer: rt, Mirrorer: snd})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	post := func(path, body string) string {
		t.Helper()
		req := "POST " + path + " HTTP/1.1\r\nHost: " + host + ":9080\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %q", resp.StatusCode, b)
		}
		return string(b)
	}

	if got := post("/a", "hello shadow"); !strings.HasPrefix(got, "v1 /a") {
		t.Fatalf("original answered %q", got)
	}
	select {
	case sh := <-seen:
		want := shadowSeen{host: "reviews.default.svc.cluster.local-shadow:9080", path: "/a", body: "hello shadow", added: "yes"}
		if sh != want {
			t.Fatalf("shadow got %+v, want %+v", sh, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no shadow request")
	}

	post("/none", "x")
	post("/b", "y") // mirrored: proves the /none request had its turn first
	select {
	case sh := <-seen:
		if sh.path != "/b" {
			t.Fatalf("a 0%% mirror sent %+v", sh)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no shadow request for /b")
	}
	// Sent is counted once the shadow's answer is read: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && snd.Stats().Sent < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	if st := snd.Stats(); st.Sent != 2 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}
