package router_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
)

// corsSnapshot is shaped like weftd's output for a VirtualService with a
// corsPolicy: /strict does not forward unmatched preflights.
func corsSnapshot(t *testing.T, v1 string) *wrt.Holder {
	t.Helper()
	policy := func(forward bool) map[string]*anypb.Any {
		return map[string]*anypb.Any{"envoy.filters.http.cors": mustAny(&corsv3.CorsPolicy{
			AllowOriginStringMatch: []*matcherv3.StringMatcher{
				{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://shop.example"}},
				{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".trusted.example"}},
			},
			AllowMethods:                 "GET,POST",
			AllowHeaders:                 "x-custom",
			ExposeHeaders:                "x-version",
			MaxAge:                       "600",
			AllowCredentials:             wrapperspb.Bool(true),
			ForwardNotMatchingPreflights: wrapperspb.Bool(forward),
		})}
	}
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{
		Name:    host + ":9080",
		Domains: []string{host, host + ":9080"},
		Routes: []*routev3.Route{
			{Match: prefix("/strict"), Action: toCluster(v1Name), TypedPerFilterConfig: policy(false)},
			{Match: prefix("/plain"), Action: toCluster(v1Name)},
			{Match: prefix("/"), Action: toCluster(v1Name), TypedPerFilterConfig: policy(true)},
		},
	}}}
	s, err := wrt.Build(nil, edsCluster(v1Name, 1024), cla(v1Name, v1), rc)
	if err != nil {
		t.Fatal(err)
	}
	return wrt.NewHolder(s)
}

func TestCORS(t *testing.T) {
	addr := serve(t, corsSnapshot(t, backend(t, "v1")), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	do := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req := method + " " + path + " HTTP/1.1\r\nHost: " + host + ":9080\r\n"
		for _, h := range hdr {
			req += h + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	const (
		good   = "Origin: https://shop.example"
		suffix = "Origin: https://app.trusted.example"
		evil   = "Origin: https://evil.example"
		pre    = "Access-Control-Request-Method: POST"
	)
	tests := []struct {
		name         string
		method, path string
		hdr          []string
		wantStatus   int
		upstream     bool              // the backend answered (body starts with "v1")
		want         map[string]string // response headers ("" = must be absent)
	}{
		{"preflight from an allowed origin is answered locally", "OPTIONS", "/a", []string{good, pre}, 200, false, map[string]string{
			"Access-Control-Allow-Origin": "https://shop.example", "Access-Control-Allow-Methods": "GET,POST",
			"Access-Control-Allow-Headers": "x-custom", "Access-Control-Max-Age": "600", "Access-Control-Allow-Credentials": "true"}},
		{"suffix origin match", "OPTIONS", "/a", []string{suffix, pre}, 200, false, map[string]string{
			"Access-Control-Allow-Origin": "https://app.trusted.example"}},
		{"preflight from another origin is forwarded", "OPTIONS", "/a", []string{evil, pre}, 200, true, map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"unmatched preflight not forwarded when configured", "OPTIONS", "/strict", []string{evil, pre}, 200, false, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""}},
		{"OPTIONS without request method is not a preflight", "OPTIONS", "/a", []string{good}, 200, true, map[string]string{
			"Access-Control-Allow-Origin": "https://shop.example", "Access-Control-Allow-Methods": ""}},
		{"actual request from an allowed origin", "GET", "/a", []string{good}, 200, true, map[string]string{
			"Access-Control-Allow-Origin": "https://shop.example", "Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers": "x-version", "Access-Control-Allow-Methods": ""}},
		{"actual request from another origin", "GET", "/a", []string{evil}, 200, true, map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"no origin: not a CORS request", "GET", "/a", nil, 200, true, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"route without a policy", "OPTIONS", "/plain", []string{good, pre}, 200, true, map[string]string{
			"Access-Control-Allow-Origin": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(tt.method, tt.path, tt.hdr...)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (%q)", resp.StatusCode, tt.wantStatus, body)
			}
			if got := strings.HasPrefix(body, "v1 "); got != tt.upstream {
				t.Fatalf("reached upstream = %v, want %v (body %q)", got, tt.upstream, body)
			}
			for k, v := range tt.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
