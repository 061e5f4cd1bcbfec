package health

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The testdata files are protojson output of istio.io/api
// networking/v1alpha3.ReadinessProbe values (generated once outside this
// package, which may not import istio.io/api).
func TestParseIstioProbe(t *testing.T) {
	tests := []struct {
		file string
		want Probe
	}{
		{"istio-probe-http.json", Probe{
			HTTPGet:      &HTTPGet{Path: "/ready", Port: 8080, Host: "127.0.0.2", Scheme: "HTTPS", Headers: []Header{{"X-Probe", "weft"}}},
			InitialDelay: 5 * time.Second, Timeout: 2 * time.Second, Period: 15 * time.Second, SuccessThreshold: 2, FailureThreshold: 4,
		}},
		{"istio-probe-tcp.json", Probe{TCPSocket: &TCPSocket{Host: "127.0.0.1", Port: 5432}}},
		{"istio-probe-exec.json", Probe{Exec: &Exec{Command: []string{"pg_isready", "-q"}}}},
		{"istio-probe-grpc.json", Probe{GRPC: &GRPC{Port: 9000, Service: "app"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseIstioProbe(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []struct{ in, want string }{
		{`{"httpGet":{"port":80},"terminationGracePeriodSeconds":3}`, `unknown field "terminationGracePeriodSeconds"`},
		{`{"tcpSocket":{"port":0}}`, "tcpSocket.port 0 out of range"},
		{`{}`, "exactly one of"},
		{`{"exec":`, "parse WorkloadGroup probe"},
	} {
		if _, err := ParseIstioProbe([]byte(bad.in)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseIstioProbe(%s) = %v, want %q", bad.in, err, bad.want)
		}
	}
}
