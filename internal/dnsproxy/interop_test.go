package dnsproxy

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDig drives the proxy with the real dig client (BIND 9).
func TestDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed")
	}
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	host, port, _ := net.SplitHostPort(s.Addr())
	dig := func(args ...string) string {
		t.Helper()
		args = append([]string{"@" + host, "-p", port, "+tries=1", "+time=3"}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "dig", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"reviews.default.svc.cluster.local", "A", "+short"}, "10.96.0.12"},
		{[]string{"reviews.default.svc.cluster.local.", "A", "+short", "+tcp"}, "10.96.0.12"},
		{[]string{"reviews", "AAAA", "+short"}, "fd00::12"},
		{[]string{"Ratings.Prod", "A", "+short", "+tcp"}, "10.96.0.13"},
		{[]string{"x.wild.example.com", "A", "+short"}, "240.240.0.9"},
		{[]string{"www.example.org", "A", "+short"}, "192.0.2.1"},
		{[]string{"ratings.prod.svc.cluster.local", "AAAA", "+short"}, ""}, // NODATA
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if got := dig(tc.args...); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		for _, tc := range []struct{ name, typ, status string }{
			{"unknown.invalid", "A", "status: NXDOMAIN"},
			{"ratings.prod.svc.cluster.local", "AAAA", "status: NOERROR"},
			{"reviews.default.svc.cluster.local", "A", "flags: qr aa rd ra"},
		} {
			for _, tcp := range []string{"+notcp", "+tcp"} {
				if out := dig(tc.name, tc.typ, tcp); !strings.Contains(out, tc.status) {
					t.Errorf("dig %s %s %s: want %q in\n%s", tc.name, tc.typ, tcp, tc.status, out)
				}
			}
		}
	})
	t.Run("truncated answer retried over TCP by dig", func(t *testing.T) {
		out := dig("big.example.org", "A", "+short", "+noignore", "+noedns")
		if n := len(strings.Fields(out)); n != 60 {
			t.Fatalf("got %d addresses, want 60:\n%s", n, out)
		}
	})
}

// TestGoResolver resolves through the proxy with Go's own stub resolver.
func TestGoResolver(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr())
		}}
		tests := []struct {
			name string
			want []string
		}{
			{"reviews", []string{"10.96.0.12", "fd00::12"}},
			{"reviews.default.svc.cluster.local", []string{"10.96.0.12", "fd00::12"}},
			{"reviews.default.svc.cluster.local.", []string{"10.96.0.12", "fd00::12"}},
			{"ratings.prod", []string{"10.96.0.13"}},
			{"v6only", []string{"fd00::14"}},
			{"www.example.org", []string{"192.0.2.1"}},
		}
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				got, err := r.LookupHost(ctx, tc.name)
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				if !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			})
		}
		t.Run(network+"/not found", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := r.LookupHost(ctx, "nosuch.invalid.")
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				t.Fatalf("err = %v, want not found", err)
			}
		})
	}
}
