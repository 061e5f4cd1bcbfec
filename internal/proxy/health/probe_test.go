package health

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tcp := &TCPSocket{Port: 80}
	tests := []struct {
		name    string
		probe   Probe
		wantErr []string // substrings; none means valid
	}{
		{"http minimal", Probe{HTTPGet: &HTTPGet{Port: 8080}}, nil},
		{"http full", Probe{HTTPGet: &HTTPGet{Path: "/ready?x=1", Port: 8443, Host: "::1", Scheme: "https",
			Headers: []Header{{"X-Probe", "1"}, {"Host", "app.local"}}}, Period: time.Second, Timeout: time.Second,
			SuccessThreshold: 2, FailureThreshold: 5, InitialDelay: time.Second}, nil},
		{"tcp", Probe{TCPSocket: tcp}, nil},
		{"exec", Probe{Exec: &Exec{Command: []string{"true"}}}, nil},
		{"grpc", Probe{GRPC: &GRPC{Port: 9000, Service: "x"}}, nil},
		{"none", Probe{}, []string{"exactly one of httpGet, tcpSocket, exec, grpc must be set (have 0)"}},
		{"two", Probe{TCPSocket: tcp, Exec: &Exec{Command: []string{"true"}}}, []string{"(have 2)"}},
		{"port zero", Probe{HTTPGet: &HTTPGet{}}, []string{"httpGet.port 0 out of range 1-65535"}},
		{"port high", Probe{TCPSocket: &TCPSocket{Port: 65536}}, []string{"tcpSocket.port 65536 out of range"}},
		{"grpc port", Probe{GRPC: &GRPC{Port: -1}}, []string{"grpc.port -1 out of range"}},
		{"host with port", Probe{TCPSocket: &TCPSocket{Host: "127.0.0.1:80", Port: 80}}, []string{"tcpSocket.host \"127.0.0.1:80\""}},
		{"host with scheme", Probe{HTTPGet: &HTTPGet{Host: "http://x", Port: 80}}, []string{"httpGet.host"}},
		{"scheme", Probe{HTTPGet: &HTTPGet{Port: 80, Scheme: "ftp"}}, []string{`httpGet.scheme "ftp": want HTTP or HTTPS`}},
		{"header name", Probe{HTTPGet: &HTTPGet{Port: 80, Headers: []Header{{"Bad Name", "v"}}}}, []string{"httpGet.headers[0].name"}},
		{"header value", Probe{HTTPGet: &HTTPGet{Port: 80, Headers: []Header{{"X", "a\r\nb"}}}}, []string{"httpGet.headers[0].value"}},
		{"exec empty", Probe{Exec: &Exec{}}, []string{"exec.command is empty"}},
		{"negatives", Probe{TCPSocket: tcp, Period: -1, Timeout: -1, InitialDelay: -1, SuccessThreshold: -1, FailureThreshold: -1},
			[]string{"initialDelay -1ns is negative", "period", "timeout", "successThreshold -1", "failureThreshold -1"}},
		{"all problems reported", Probe{HTTPGet: &HTTPGet{Scheme: "x"}}, []string{"httpGet.port", "httpGet.scheme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.probe.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	p := Probe{TCPSocket: &TCPSocket{Port: 1}}.withDefaults()
	if p.Period != 10*time.Second || p.Timeout != time.Second || p.SuccessThreshold != 1 || p.FailureThreshold != 3 || p.InitialDelay != 0 {
		t.Errorf("defaults = %+v", p)
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New with an empty probe succeeded")
	}
}
