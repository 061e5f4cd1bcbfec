package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// page is the frontend's answer: what each service it called said.
type page struct {
	Backend backendResult `json:"backend"`
	Ratings ratingsResult `json:"ratings"`
}

type backendResult struct {
	Status  int    `json:"status"`
	Version string `json:"version,omitempty"`
	// Reason is the mesh's x-weft-reason when the proxy answered itself
	// (fault_filter_abort, upstream_timeout, ...).
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

type ratingsResult struct {
	Stars    int    `json:"stars,omitempty"`
	ServedBy string `json:"servedBy,omitempty"`
	Error    string `json:"error,omitempty"`
}

// faultHeader is passed on to the backend: the mesh's fault-injection
// routes match on it (examples/shop/config/traffic.yaml).
const faultHeader = "X-Shop-Fault"

// runFrontend serves / (backend /items + a rating) and /slow (backend /slow).
// The backend's status is the page's status, so what the mesh did to the
// backend call (timeout, fault) is visible to the caller; ratings is
// optional and only reported.
func runFrontend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("frontend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18080", "address to serve HTTP on")
	backend := fs.String("backend", "http://backend.shop.svc.cluster.local:8080", "backend base URL (a mesh name: the call goes through HTTP_PROXY)")
	ratings := fs.String("ratings", "ratings.shop.svc.cluster.local:7070", "ratings host:port (TCP, through HTTP_PROXY's CONNECT)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each call (the mesh's own timeouts are shorter)")
	_ = fs.Parse(args)

	client := &http.Client{Timeout: *timeout} // Transport: http.DefaultTransport, which honours HTTP_PROXY
	proxy := ""
	if u, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "http", Host: *ratings}}); err == nil && u != nil {
		proxy = u.Host
	}

	handle := func(backendPath string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), *timeout)
			defer cancel()
			var p page
			p.Backend = callBackend(ctx, client, *backend+backendPath, r.Header.Get(faultHeader))
			if stars, by, err := rate(ctx, proxy, *ratings, "tea"); err != nil {
				p.Ratings.Error = err.Error()
			} else {
				p.Ratings = ratingsResult{Stars: stars, ServedBy: by}
			}
			code := http.StatusOK
			if p.Backend.Status >= 400 {
				code = p.Backend.Status
			}
			writeJSON(w, code, p)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", handle("/items"))
	mux.HandleFunc("GET /slow", handle("/slow"))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return serveHTTP(ctx, "frontend", *listen, mux)
}

func callBackend(ctx context.Context, client *http.Client, u, fault string) backendResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return backendResult{Status: http.StatusBadGateway, Error: err.Error()}
	}
	if fault != "" {
		req.Header.Set(faultHeader, fault)
	}
	resp, err := client.Do(req)
	if err != nil {
		return backendResult{Status: http.StatusBadGateway, Error: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res := backendResult{Status: resp.StatusCode, Reason: resp.Header.Get("X-Weft-Reason")}
	if resp.StatusCode != http.StatusOK {
		res.Error = strings.TrimSpace(string(body))
		return res
	}
	var it item
	if err := json.Unmarshal(body, &it); err != nil {
		return backendResult{Status: http.StatusBadGateway, Error: "backend answer: " + err.Error()}
	}
	res.Version = it.Version
	return res
}
