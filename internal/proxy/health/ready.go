package health

import (
	"net/http"
	"strings"
)

// ReadyHandler serves the proxy's own readiness (15021 /healthz/ready):
// 200 "ready" when every check returns nil, else 503 with one failing
// check's error per line. Checks run on every request, so they must be
// cheap (read an atomic, not dial anything).
func ReadyHandler(checks ...func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var failed []string
		for _, c := range checks {
			if err := c(); err != nil {
				failed = append(failed, strings.ReplaceAll(err.Error(), "\n", " "))
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(strings.Join(failed, "\n") + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
