package cli

// weftctl top: a live table of the mesh's traffic, per route (calling
// workload -> destination service), computed from the Istio metrics every
// proxy serves on its admin port (/stats/prometheus). Nothing is stored:
// each frame is the difference between two scrapes.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/xds"
)

// scrapeTimeout bounds one proxy's /stats/prometheus answer.
const scrapeTimeout = 2 * time.Second

func newTopCmd(g *globals) *cobra.Command {
	var (
		interval   time.Duration
		count      int
		proxies    []string
		adminPort  int
		cumulative bool
		output     string
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live traffic per route: requests, success, latency, which workload answered, mTLS",
		Long: "top scrapes the Istio metrics (/stats/prometheus) of every proxy and prints, every\n" +
			"--interval, one line per route (calling workload -> destination service) with what\n" +
			"happened in that interval:\n\n" +
			"  REQS, RPS   requests (connections for TCP) and their rate, as the caller's proxy saw them\n" +
			"  OK          share of answers below 400\n" +
			"  P50, P99    latency, estimated from the histogram buckets as Prometheus' histogram_quantile does\n" +
			"  ERRORS      the other answers: code, Envoy response flag (FI fault, UT timeout, ...), count\n" +
			"  ANSWERED BY which destination versions answered (destination_version; the workload when it\n" +
			"              has no version label), from the destination's proxies\n" +
			"  MTLS        on when the destination's proxies saw only mutual TLS, off when none, else the share\n\n" +
			"Proxies are found through weftd (each connected proxy's IP, admin port --admin-port)\n" +
			"unless --proxies lists admin addresses.",
		Example: `  weftctl top                       # refresh every 5s until Ctrl-C
  weftctl top --count 1 --cumulative  # totals since the proxies started, once
  weftctl top --proxies 127.0.77.10:15000,127.0.77.20:15000 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usageErr("-o %q: want table or json", output)
			}
			if interval <= 0 {
				return usageErr("--interval must be positive")
			}
			t := &top{g: g, admins: proxies, adminPort: adminPort}
			var prev *meshSample
			if !cumulative {
				s, err := t.scrape()
				if err != nil {
					return err
				}
				prev = s
			}
			for frame := 0; count == 0 || frame < count; frame++ {
				if !cumulative || frame > 0 {
					time.Sleep(interval)
				}
				cur, err := t.scrape()
				if err != nil {
					return err
				}
				rows := cur.rows(prev)
				if output == "json" {
					if err := json.NewEncoder(g.stdout).Encode(rows); err != nil {
						return err
					}
				} else {
					window := "since start"
					if prev != nil {
						window = "last " + cur.at.Sub(prev.at).Round(100*time.Millisecond).String()
					}
					if err := writeTop(g.stdout, cur, window, rows); err != nil {
						return err
					}
				}
				prev = cur
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&interval, "interval", 5*time.Second, "time between frames")
	f.IntVar(&count, "count", 0, "stop after this many frames (0: until Ctrl-C)")
	f.StringSliceVar(&proxies, "proxies", nil, "proxy admin addresses to scrape (default: every proxy connected to weftd)")
	f.IntVar(&adminPort, "admin-port", 15000, "admin port of proxies found through weftd")
	f.BoolVar(&cumulative, "cumulative", false, "totals since each proxy started instead of per interval (per interval, routes without requests in it are not shown)")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

type top struct {
	g         *globals
	admins    []string
	adminPort int
}

// targets are the admin addresses to scrape: --proxies, else the IP in the
// node id of every sidecar connected to weftd (sidecar~IP~name.ns~...).
func (t *top) targets() ([]string, error) {
	if len(t.admins) > 0 {
		return t.admins, nil
	}
	c, err := t.g.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := t.g.ctx()
	defer cancel()
	var list []xds.ProxyStatus
	if err := c.Proxies(ctx, &list); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range list {
		parts := strings.Split(p.ID, "~")
		if len(parts) != 4 || net.ParseIP(parts[1]) == nil {
			continue // proxyless gRPC clients and Envoys with custom ids have no admin port we know
		}
		out = append(out, net.JoinHostPort(parts[1], fmt.Sprint(t.adminPort)))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// scrape reads every target concurrently (each bounded by scrapeTimeout).
func (t *top) scrape() (*meshSample, error) {
	addrs, err := t.targets()
	if err != nil {
		return nil, err
	}
	s := newMeshSample(time.Now())
	var mu sync.Mutex
	var wg sync.WaitGroup
	client := &http.Client{Timeout: scrapeTimeout}
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fams, err := scrapeProxy(client, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.unreachable = append(s.unreachable, a)
				return
			}
			s.proxies++
			s.add(fams)
		}()
	}
	wg.Wait()
	slices.Sort(s.unreachable)
	return s, nil
}

func scrapeProxy(client *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := client.Get("http://" + addr + "/stats/prometheus")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// routeKey is one line of the table.
type routeKey struct {
	Source, Destination, Protocol string // Protocol: http or tcp
}

// outbound is what the callers' proxies (reporter="source") counted on a route.
type outbound struct {
	requests float64            // requests, or TCP connections
	codes    map[string]float64 // "200", "503 FI", ...
	buckets  map[float64]float64
}

// inbound is what the destination's proxies (reporter="destination")
// counted for one service and protocol; without peer metadata exchange they
// do not know the caller, so every route to the service shares it.
type inbound struct {
	answered map[string]float64 // version or workload -> answers below 400 (connections for TCP)
	policy   map[string]float64 // connection_security_policy -> requests or connections
}

// meshSample is one scrape of every proxy: cumulative counters.
type meshSample struct {
	at          time.Time
	proxies     int
	unreachable []string
	out         map[routeKey]*outbound
	in          map[[2]string]*inbound // {service, protocol}
}

func newMeshSample(at time.Time) *meshSample {
	return &meshSample{at: at, out: map[routeKey]*outbound{}, in: map[[2]string]*inbound{}}
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// protocol folds Istio's request_protocol into the table's two kinds.
func protocol(p string) string {
	if p == "tcp" {
		return "tcp"
	}
	return "http"
}

func (s *meshSample) outFor(k routeKey) *outbound {
	o := s.out[k]
	if o == nil {
		o = &outbound{codes: map[string]float64{}, buckets: map[float64]float64{}}
		s.out[k] = o
	}
	return o
}

func (s *meshSample) inFor(service, proto string) *inbound {
	k := [2]string{service, proto}
	i := s.in[k]
	if i == nil {
		i = &inbound{answered: map[string]float64{}, policy: map[string]float64{}}
		s.in[k] = i
	}
	return i
}

// add folds one proxy's metric families into the sample.
func (s *meshSample) add(fams map[string]*dto.MetricFamily) {
	for _, m := range fams["istio_requests_total"].GetMetric() {
		l, v := labels(m), m.GetCounter().GetValue()
		proto := protocol(l["request_protocol"])
		code := l["response_code"]
		if l["reporter"] == "source" {
			o := s.outFor(routeKey{l["source_workload"], l["destination_service"], proto})
			o.requests += v
			if f := l["response_flags"]; f != "" && f != "-" {
				code += " " + f
			}
			o.codes[code] += v
			continue
		}
		in := s.inFor(l["destination_service"], proto)
		in.policy[l["connection_security_policy"]] += v
		if ok(code) {
			in.answered[answeredBy(l)] += v
		}
	}
	for _, m := range fams["istio_request_duration_milliseconds"].GetMetric() {
		l := labels(m)
		if l["reporter"] != "source" {
			continue
		}
		o := s.outFor(routeKey{l["source_workload"], l["destination_service"], protocol(l["request_protocol"])})
		for _, b := range m.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) { // the text format's +Inf bucket is the sample count
				o.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		o.buckets[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
	}
	for _, m := range fams["istio_tcp_connections_opened_total"].GetMetric() {
		l, v := labels(m), m.GetCounter().GetValue()
		if l["reporter"] == "source" {
			s.outFor(routeKey{l["source_workload"], l["destination_service"], "tcp"}).requests += v
			continue
		}
		in := s.inFor(l["destination_service"], "tcp")
		in.policy[l["connection_security_policy"]] += v
		in.answered[answeredBy(l)] += v
	}
}

// answeredBy names what answered: Istio's destination_version when the
// proxy reports it, else the destination workload.
func answeredBy(l map[string]string) string {
	if v := l["destination_version"]; v != "" && v != "unknown" {
		return v
	}
	return l["destination_workload"]
}

// ok: an answer below 400. Istio's dashboards count only 5xx as failures;
// here a denied request (403) is not a success either.
func ok(code string) bool {
	n, err := strconv.Atoi(code)
	return err == nil && n >= 100 && n < 400
}

// TopRow is one route's traffic in a frame (also the -o json form).
type TopRow struct {
	Source      string             `json:"source"`
	Destination string             `json:"destination"`
	Protocol    string             `json:"protocol"`
	Requests    float64            `json:"requests"` // connections for tcp
	PerSecond   float64            `json:"perSecond"`
	OK          float64            `json:"ok"` // share of answers below 400; -1 for tcp
	P50ms       float64            `json:"p50ms"`
	P99ms       float64            `json:"p99ms"`
	Errors      map[string]float64 `json:"errors,omitempty"`
	AnsweredBy  map[string]float64 `json:"answeredBy,omitempty"` // share per version/workload
	MTLS        float64            `json:"mtls"`                 // share of mutual_tls at the destination; -1: no data
}

// rows turns two samples into the table: counters are differenced (prev
// nil: totals); a counter that went down (proxy restarted) counts from zero.
func (s *meshSample) rows(prev *meshSample) []TopRow {
	secs := 0.0
	if prev != nil {
		secs = s.at.Sub(prev.at).Seconds()
	}
	var rows []TopRow
	for k, o := range s.out {
		var po *outbound
		if prev != nil {
			po = prev.out[k]
		}
		if o.requests == 0 {
			continue // families pre-created by the proxy, never used
		}
		r := TopRow{Source: k.Source, Destination: k.Destination, Protocol: k.Protocol, OK: -1, MTLS: -1}
		r.Requests = delta(o.requests, po, func(p *outbound) float64 { return p.requests })
		if prev != nil && r.Requests == 0 {
			continue // idle in this window: a live view shows what is moving
		}
		if secs > 0 {
			r.PerSecond = r.Requests / secs
		}
		answered := r.Requests > 0 // tcp: every connection reached the destination's side
		if k.Protocol == "http" {
			good, total := 0.0, 0.0
			for code, v := range o.codes {
				d := delta(v, po, func(p *outbound) float64 { return p.codes[code] })
				total += d
				if ok(strings.Fields(code)[0]) {
					good += d
				} else if d > 0 {
					if r.Errors == nil {
						r.Errors = map[string]float64{}
					}
					r.Errors[code] = d
				}
			}
			if total > 0 {
				r.OK = good / total
			}
			answered = good > 0
			b := map[float64]float64{}
			for le, v := range o.buckets {
				b[le] = delta(v, po, func(p *outbound) float64 { return p.buckets[le] })
			}
			r.P50ms, r.P99ms = histogramQuantile(0.5, b), histogramQuantile(0.99, b)
		}
		var in, pin *inbound = s.in[[2]string{k.Destination, k.Protocol}], nil
		if prev != nil {
			pin = prev.in[[2]string{k.Destination, k.Protocol}]
		}
		if in != nil {
			if answered {
				// Shared by every caller of the service: the destination's
				// proxies do not know who called without peer metadata.
				r.AnsweredBy = shares(in.answered, pinMap(pin, func(p *inbound) map[string]float64 { return p.answered }))
			}
			if pol := shares(in.policy, pinMap(pin, func(p *inbound) map[string]float64 { return p.policy })); pol != nil {
				r.MTLS = pol["mutual_tls"]
			}
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Destination != b.Destination {
			return a.Destination < b.Destination
		}
		return a.Protocol < b.Protocol
	})
	return rows
}

func delta(cur float64, prev *outbound, get func(*outbound) float64) float64 {
	if prev == nil {
		return cur
	}
	if p := get(prev); p <= cur {
		return cur - p
	}
	return cur
}

func pinMap(p *inbound, get func(*inbound) map[string]float64) map[string]float64 {
	if p == nil {
		return nil
	}
	return get(p)
}

// shares are the differenced counts as fractions of their sum (nil when
// nothing happened).
func shares(cur, prev map[string]float64) map[string]float64 {
	d := map[string]float64{}
	total := 0.0
	for k, v := range cur {
		x := v
		if p, ok := prev[k]; ok && p <= v {
			x = v - p
		}
		if x > 0 {
			d[k] = x
			total += x
		}
	}
	if total == 0 {
		return nil
	}
	for k := range d {
		d[k] /= total
	}
	return d
}

// histogramQuantile estimates the q-quantile from cumulative bucket counts
// keyed by upper bound, interpolating linearly inside the bucket as
// Prometheus' histogram_quantile does. 0 when there are no observations.
func histogramQuantile(q float64, buckets map[float64]float64) float64 {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := buckets[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		c := buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return lower // above the highest finite bucket: its bound is all we know
			}
			if c == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(c-below)
		}
		lower, below = le, c
	}
	return lower
}

// writeTop prints one frame.
func writeTop(w io.Writer, s *meshSample, window string, rows []TopRow) error {
	fmt.Fprintf(w, "%s  %s  %d proxies", s.at.Format("15:04:05"), window, s.proxies)
	if len(s.unreachable) > 0 {
		fmt.Fprintf(w, " (unreachable: %s)", strings.Join(s.unreachable, ", "))
	}
	fmt.Fprintln(w)
	if len(rows) == 0 {
		fmt.Fprintln(w, "no traffic yet")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tPROTO\tREQS\tRPS\tOK\tP50\tP99\tERRORS\tANSWERED BY\tMTLS")
	for _, r := range rows {
		reqs, okCol, p50, p99 := fmt.Sprintf("%.0f", r.Requests), "-", "-", "-"
		if r.Protocol == "tcp" {
			reqs += " conn"
		} else if r.OK >= 0 {
			okCol = fmt.Sprintf("%.1f%%", 100*r.OK)
			p50, p99 = formatMillis(r.P50ms), formatMillis(r.P99ms)
		}
		rps := "-"
		if r.PerSecond > 0 || window != "since start" {
			rps = fmt.Sprintf("%.1f", r.PerSecond)
		}
		fmt.Fprintf(tw, "%s -> %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Source, shortService(r.Destination), r.Protocol,
			reqs, rps, okCol, p50, p99, formatCounts(r.Errors), formatShares(r.AnsweredBy), formatMTLS(r.MTLS))
	}
	return tw.Flush()
}

// shortService drops the cluster's domain: backend.shop.svc.cluster.local -> backend.shop.
func shortService(host string) string {
	if i := strings.Index(host, ".svc."); i > 0 {
		return host[:i]
	}
	return host
}

func formatMillis(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.1fs", ms/1000)
	}
}

// formatCounts: "503 FI:3 504 UT:2", largest first.
func formatCounts(m map[string]float64) string {
	return formatLargestFirst(m, func(k string, v float64) string { return fmt.Sprintf("%s:%.0f", k, v) })
}

// formatShares: "v1 90% v2 10%", largest first.
func formatShares(m map[string]float64) string {
	return formatLargestFirst(m, func(k string, v float64) string { return fmt.Sprintf("%s %.0f%%", k, 100*v) })
}

// formatLargestFirst renders m's entries by descending value (ties by
// key), "-" when empty.
func formatLargestFirst(m map[string]float64, entry func(k string, v float64) string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = entry(k, m[k])
	}
	return strings.Join(parts, " ")
}

func formatMTLS(share float64) string {
	switch {
	case share < 0:
		return "?"
	case share == 1:
		return "on"
	case share == 0:
		return "off"
	default:
		return fmt.Sprintf("%.0f%%", 100*share)
	}
}
