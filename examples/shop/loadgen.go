package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// kinds of requests loadgen sends; --mix gives the share of each but normal.
var kinds = map[string]struct{ path, fault string }{
	"normal": {"/", ""},
	"slow":   {"/slow", ""},  // backend /slow outlives the route timeout: 504
	"abort":  {"/", "abort"}, // fault injection: the mesh answers 503 itself
	"delay":  {"/", "delay"}, // fault injection: the mesh holds the request
}

// runLoadgen sends requests to the frontend at a steady rate until ctx ends
// (Ctrl-C, SIGTERM), --duration passes or -n requests were sent, keeping at
// most --concurrency in flight (a tick with none free is skipped and
// counted). Requests in flight when it stops finish (each is bounded by
// --timeout), so stopping does not show up as failures; then it prints a
// summary: one "total" line and one per kind.
func runLoadgen(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	target := fs.String("target", "http://frontend.shop.svc.cluster.local:8080", "frontend base URL (a mesh name: requests go through HTTP_PROXY)")
	qps := fs.Float64("qps", 20, "requests per second (0 with -n: as fast as --concurrency allows)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until stopped)")
	n := fs.Int("n", 0, "stop after this many requests (0: no limit)")
	mix := fs.String("mix", "", `share of special requests in percent, e.g. "slow=4,abort=3,delay=3" (the rest is normal)`)
	concurrency := fs.Int("concurrency", 32, "most requests in flight at once")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each request")
	_ = fs.Parse(args)
	if *qps <= 0 && *n <= 0 {
		return fmt.Errorf("--qps 0 needs -n (every load loop is bounded)")
	}
	slots, err := mixSlots(*mix)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone() // honours HTTP_PROXY
	tr.MaxIdleConnsPerHost = *concurrency
	client := &http.Client{Transport: tr, Timeout: *timeout}

	var tick <-chan time.Time
	if *qps > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / *qps))
		defer t.Stop()
		tick = t.C
	}
	sum := newSummary()
	sem := make(chan struct{}, *concurrency)
	var wg sync.WaitGroup
	for i := 0; *n == 0 || i < *n; i++ {
		if tick != nil {
			select {
			case <-ctx.Done():
			case <-tick:
			}
		}
		if ctx.Err() != nil {
			break
		}
		kind := slots[i%len(slots)]
		if tick != nil {
			select {
			case sem <- struct{}{}:
			default:
				sum.skip()
				continue
			}
		} else {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sum.add(kind, get(context.Background(), client, *target, kind))
		}()
	}
	wg.Wait()
	sum.write(out)
	return nil
}

// mixSlots spreads the kinds over 100 slots (shuffled with a fixed seed, so
// every run and every window of 100 requests has exactly the given shares).
func mixSlots(mix string) ([]string, error) {
	var slots []string
	if mix != "" {
		for _, kv := range strings.Split(mix, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			pct, err := strconv.Atoi(v)
			if _, ok := kinds[k]; !ok || err != nil || pct < 0 {
				return nil, fmt.Errorf("--mix %q: want KIND=PERCENT,... with KIND one of normal, slow, abort, delay", kv)
			}
			for range pct {
				slots = append(slots, k)
			}
		}
	}
	if len(slots) > 100 {
		return nil, fmt.Errorf("--mix %q adds up to more than 100%%", mix)
	}
	for len(slots) < 100 {
		slots = append(slots, "normal")
	}
	r := rand.New(rand.NewPCG(7, 7))
	r.Shuffle(len(slots), func(i, j int) { slots[i], slots[j] = slots[j], slots[i] })
	return slots, nil
}

type result struct {
	status int
	page   page
	dur    time.Duration
	err    error
}

func get(ctx context.Context, client *http.Client, target, kind string) result {
	k := kinds[kind]
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target+k.path, nil)
	if err != nil {
		return result{err: err}
	}
	if k.fault != "" {
		req.Header.Set(faultHeader, k.fault)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err, dur: time.Since(start)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res := result{status: resp.StatusCode, dur: time.Since(start)}
	_ = json.Unmarshal(body, &res.page) // the mesh's own answers (403, 503) are not JSON
	return res
}

// summary counts results per kind.
type summary struct {
	mu      sync.Mutex
	kinds   map[string]*tally
	skipped int
}

type tally struct {
	requests, ok, errors   int
	status                 map[int]int
	versions               map[string]int
	ratingsOK, ratingsFail int
	durs                   []time.Duration
}

func newSummary() *summary { return &summary{kinds: map[string]*tally{}} }

func (s *summary) skip() {
	s.mu.Lock()
	s.skipped++
	s.mu.Unlock()
}

func (s *summary) add(kind string, r result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range []string{"total", kind} {
		t := s.kinds[k]
		if t == nil {
			t = &tally{status: map[int]int{}, versions: map[string]int{}}
			s.kinds[k] = t
		}
		t.requests++
		t.durs = append(t.durs, r.dur)
		if r.err != nil {
			t.errors++
			continue
		}
		t.status[r.status]++
		if r.status/100 == 2 {
			t.ok++
		}
		if v := r.page.Backend.Version; v != "" {
			t.versions[v]++
		}
		switch {
		case r.page.Ratings.ServedBy != "":
			t.ratingsOK++
		case r.page.Ratings.Error != "":
			t.ratingsFail++
		}
	}
}

// write prints one line per kind ("total" first), key=value pairs that read
// well and are easy to pick apart in a shell script:
//
//	total requests=200 ok=200 errors=0 status_200=200 backend_v1=181 backend_v2=19 ratings_ok=200 ratings_fail=0 p50_ms=4 p99_ms=12 skipped=0
func (s *summary) write(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.kinds))
	for k := range s.kinds {
		if k != "total" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		fmt.Fprintf(w, "total requests=0 skipped=%d\n", s.skipped)
		return
	}
	for _, k := range append([]string{"total"}, names...) {
		t := s.kinds[k]
		var b strings.Builder
		fmt.Fprintf(&b, "%s requests=%d ok=%d errors=%d", k, t.requests, t.ok, t.errors)
		for _, code := range sortedKeys(t.status) {
			fmt.Fprintf(&b, " status_%d=%d", code, t.status[code])
		}
		for _, v := range sortedKeys(t.versions) {
			fmt.Fprintf(&b, " backend_%s=%d", v, t.versions[v])
		}
		slices.Sort(t.durs)
		fmt.Fprintf(&b, " ratings_ok=%d ratings_fail=%d p50_ms=%d p99_ms=%d", t.ratingsOK, t.ratingsFail,
			quantile(t.durs, 0.50).Milliseconds(), quantile(t.durs, 0.99).Milliseconds())
		if k == "total" {
			fmt.Fprintf(&b, " skipped=%d", s.skipped)
		}
		fmt.Fprintln(w, b.String())
	}
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
