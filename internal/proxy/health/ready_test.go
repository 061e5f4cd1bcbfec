package health

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadyHandler(t *testing.T) {
	ok := func() error { return nil }
	noXDS := func() error { return errors.New("xds: no LDS yet") }
	noCert := func() error { return errors.New("certificate:\nnot issued") }
	tests := []struct {
		name     string
		method   string
		checks   []func() error
		wantCode int
		wantBody string
	}{
		{"no checks", "GET", nil, 200, "ready\n"},
		{"all pass", "GET", []func() error{ok, ok}, 200, "ready\n"},
		{"one fails", "GET", []func() error{ok, noXDS}, 503, "xds: no LDS yet\n"},
		{"each failure on its own line", "GET", []func() error{noXDS, ok, noCert}, 503, "xds: no LDS yet\ncertificate: not issued\n"},
		{"HEAD", "HEAD", []func() error{noXDS}, 503, ""},
		{"POST", "POST", []func() error{ok}, 405, "method not allowed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(ReadyHandler(tt.checks...))
			defer srv.Close()
			req, _ := http.NewRequest(tt.method, srv.URL+"/healthz/ready", nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || string(body) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if tt.method == "GET" && resp.Header.Get("Cache-Control") != "no-store" && tt.wantCode != 405 {
				t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
}
