package mirror_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/mirror"
)

// A saturated sender drops shadows instead of queueing them, streamed
// bodies are skipped, and Close cancels what is in flight.
func TestBoundsAndSkips(t *testing.T) {
	release := make(chan struct{})
	got := make(chan string, 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Host
		<-release
	})}
	go srv.Serve(ln)
	defer srv.Close()
	defer close(release)

	s := mirror.New(mirror.Config{MaxInFlight: 1, Timeout: 10 * time.Second})
	target := []h1.Mirror{{Upstream: ln.Addr().String()}}
	head := []byte("GET /x HTTP/1.1\r\nHost: a-shadow\r\n\r\n")
	s.Mirror(head, nil, false, target)
	select {
	case h := <-got:
		if h != "a-shadow" {
			t.Fatalf("host %q", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shadow not sent")
	}
	s.Mirror(head, nil, false, target) // one in flight already: dropped
	s.Mirror(nil, nil, true, target)   // streamed body: skipped
	s.Mirror(head, nil, false, []h1.Mirror{{Upstream: ln.Addr().String(), UpstreamTLS: "k"}})
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not cancel the shadow in flight")
	}
	st := s.Stats()
	if st.Dropped != 2 || st.Skipped != 1 || st.Failed != 1 || st.Sent != 0 {
		t.Fatalf("stats %+v, want 2 dropped, 1 skipped, 1 failed (cancelled)", st)
	}
}
