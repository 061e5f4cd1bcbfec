package router_test

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/router"
	wrt "github.com/weftmesh/weft/internal/proxy/runtime"
)

// counted is a backend that counts requests and answers with fn.
type counted struct {
	addr string
	n    atomic.Int64
}

func countedBackend(t *testing.T, fn func(n int64, w http.ResponseWriter, r *http.Request)) *counted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &counted{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn(b.n.Add(1), w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

func status(code int) func(int64, http.ResponseWriter, *http.Request) {
	return func(_ int64, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// istioRetry is the retry policy Istio puts on every outbound route, with
// retry_on and attempts overridable.
func istioRetry(on string, n uint32, perTry time.Duration) *routev3.RetryPolicy {
	p := &routev3.RetryPolicy{
		RetryOn:                       on,
		NumRetries:                    wrapperspb.UInt32(n),
		RetriableStatusCodes:          []uint32{503},
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}},
		HostSelectionRetryMaxAttempts: 5,
		RetryBackOff:                  &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)},
	}
	if perTry > 0 {
		p.PerTryTimeout = durationpb.New(perTry)
	}
	return p
}

func retryHolder(t *testing.T, lb clusterv3.Cluster_LbPolicy, maxRetries uint32, policy *routev3.RetryPolicy, addrs ...string) *wrt.Holder {
	t.Helper()
	c := edsCluster(v1Name, 1024)
	c.LbPolicy = lb
	c.CircuitBreakers.Thresholds[0].MaxRetries = wrapperspb.UInt32(maxRetries)
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "r", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: v1Name},
			RetryPolicy:      policy,
		}}},
	}}}}
	s, err := wrt.Build(nil, c, cla(v1Name, addrs...), rc)
	if err != nil {
		t.Fatal(err)
	}
	return wrt.NewHolder(s)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Weft-Reason") + string(b)
}

func TestRetryPolicy(t *testing.T) {
	const istioOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	t.Run("fails twice then succeeds", func(t *testing.T) {
		b := countedBackend(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
			if n <= 2 {
				w.WriteHeader(503)
			}
		})
		addr := serve(t, retryHolder(t, clusterv3.Cluster_ROUND_ROBIN, 3, istioRetry(istioOn, 2, 0), b.addr), nil)
		if code, _ := get(t, "http://"+addr+"/"); code != 200 || b.n.Load() != 3 {
			t.Fatalf("got %d after %d attempts", code, b.n.Load())
		}
	})
	t.Run("previous_hosts moves to another endpoint", func(t *testing.T) {
		bad := countedBackend(t, status(503))
		good := countedBackend(t, status(200))
		// RANDOM without the predicate would re-pick bad a quarter of the
		// time with one retry; with it (5 re-picks) about 1/64.
		addr := serve(t, retryHolder(t, clusterv3.Cluster_RANDOM, 3, istioRetry(istioOn, 2, 0), bad.addr, good.addr), nil)
		const n = 20
		for i := 0; i < n; i++ {
			if code, _ := get(t, "http://"+addr+"/"); code != 200 {
				t.Fatalf("request %d: %d (bad saw %d, good %d)", i, code, bad.n.Load(), good.n.Load())
			}
		}
		if good.n.Load() != n {
			t.Fatalf("good endpoint saw %d requests, want %d", good.n.Load(), n)
		}
	})
	t.Run("connect failure is retried elsewhere", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		refused := l.Addr().String()
		l.Close()
		good := countedBackend(t, status(200))
		addr := serve(t, retryHolder(t, clusterv3.Cluster_ROUND_ROBIN, 3, istioRetry(istioOn, 2, 0), refused, good.addr), nil)
		for i := 0; i < 4; i++ {
			if code, body := get(t, "http://"+addr+"/"); code != 200 {
				t.Fatalf("got %d %q", code, body)
			}
		}
	})
	t.Run("non-retriable status is relayed once", func(t *testing.T) {
		b := countedBackend(t, status(500))
		addr := serve(t, retryHolder(t, clusterv3.Cluster_ROUND_ROBIN, 3, istioRetry(istioOn, 2, 0), b.addr), nil)
		if code, _ := get(t, "http://"+addr+"/"); code != 500 || b.n.Load() != 1 {
			t.Fatalf("got %d after %d attempts", code, b.n.Load())
		}
	})
	t.Run("max_retries circuit breaker", func(t *testing.T) {
		b := countedBackend(t, status(503))
		addr := serve(t, retryHolder(t, clusterv3.Cluster_ROUND_ROBIN, 0, istioRetry(istioOn, 2, 0), b.addr), nil)
		if code, _ := get(t, "http://"+addr+"/"); code != 503 || b.n.Load() != 1 {
			t.Fatalf("got %d after %d attempts, want 1 (max_retries 0)", code, b.n.Load())
		}
	})
	t.Run("per-try timeout retries then 504", func(t *testing.T) {
		b := countedBackend(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		})
		addr := serve(t, retryHolder(t, clusterv3.Cluster_ROUND_ROBIN, 3, istioRetry("5xx", 1, 100*time.Millisecond), b.addr), nil)
		start := time.Now()
		code, body := get(t, "http://"+addr+"/")
		if code != 504 || b.n.Load() != 2 {
			t.Fatalf("got %d %q after %d attempts", code, body, b.n.Load())
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("took %v", el)
		}
	})
	t.Run("POST over the replay limit is not retried", func(t *testing.T) {
		b := countedBackend(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(503)
		})
		addr := serve(t, retryHolder(t, clusterv3.Cluster_ROUND_ROBIN, 3, istioRetry(istioOn, 2, 0), b.addr), nil)
		resp, err := http.Post("http://"+addr+"/", "text/plain", io.LimitReader(zeros{}, 200<<10))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || b.n.Load() != 1 {
			t.Fatalf("got %d after %d attempts", resp.StatusCode, b.n.Load())
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func faultRoute(path string, delay time.Duration, abort int) *routev3.Route {
	f := &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(delay)},
		Percentage:         &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
	}}
	if abort != 0 {
		f.Abort = &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(abort)},
			Percentage: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
		}
	}
	return &routev3.Route{Match: prefix(path), Action: toCluster(v1Name),
		TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(f)}}
}

func TestFaultDelay(t *testing.T) {
	b := countedBackend(t, status(200))
	rc := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "r", Domains: []string{"*"}, Routes: []*routev3.Route{
		faultRoute("/delay-abort", 200*time.Millisecond, 503),
		faultRoute("/delay", 200*time.Millisecond, 0),
	}}}}
	s, err := wrt.Build(nil, edsCluster(v1Name, 1024), cla(v1Name, b.addr), rc)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, wrt.NewHolder(s), nil)
	for _, tc := range []struct {
		path   string
		status int
		hits   int64
	}{
		{"/delay", 200, 1},
		{"/delay-abort", 503, 0},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := b.n.Load()
			start := time.Now()
			code, body := get(t, "http://"+addr+tc.path)
			el := time.Since(start)
			if code != tc.status || el < 200*time.Millisecond || b.n.Load()-before != tc.hits {
				t.Fatalf("got %d %q after %v, backend hits %d", code, body, el, b.n.Load()-before)
			}
			if tc.status == 503 && body[:len(router.ReasonFaultAbort)] != router.ReasonFaultAbort {
				t.Fatalf("reason %q", body)
			}
		})
	}
}
