package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// item is what backend's /items answers: the version tells the caller (and
// the person watching the demo) which deployment served the request.
type item struct {
	Version string   `json:"version"`
	Items   []string `json:"items"`
}

// runBackend serves /items (every --fail-every'th request fails with 503, so
// the mesh's retries have something to hide) and /slow (takes --slow, so a
// route timeout has something to cut).
func runBackend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18081", "address to serve HTTP on")
	version := fs.String("version", "v1", "version name reported in answers")
	failEvery := fs.Int("fail-every", 0, "answer every Nth /items request with 503 (0: never)")
	slow := fs.Duration("slow", 3*time.Second, "how long /slow takes")
	_ = fs.Parse(args)

	var served, failed atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if *failEvery > 0 && n%int64(*failEvery) == 0 {
			failed.Add(1)
			http.Error(w, fmt.Sprintf("backend %s: injected failure (1 in %d)", *version, *failEvery), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, item{Version: *version, Items: []string{"tea", "coffee", "cake"}})
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		t := time.NewTimer(*slow)
		defer t.Stop()
		select {
		case <-t.C:
			writeJSON(w, http.StatusOK, item{Version: *version, Items: []string{"slow tea"}})
		case <-r.Context().Done(): // the caller (its proxy's timeout) gave up
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	err := serveHTTP(ctx, "backend "+*version, *listen, mux)
	fmt.Fprintf(os.Stderr, "backend %s: %d requests, %d injected failures\n", *version, served.Load(), failed.Load())
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
