package dnsproxy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeNameTable(t *testing.T) {
	// testdata/nametable.json has the shape istiod pushes (protojson of
	// istio.networking.nds.v1.NameTable).
	b, err := os.ReadFile(filepath.Join("testdata", "nametable.json"))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := DecodeNameTable(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &NameTable{Hosts: map[string]HostEntry{
		"reviews.default.svc.cluster.local": {IPv4: addrs("10.96.0.12"), IPv6: addrs("fd00::12"), Namespace: "default"},
		"details.default.svc.cluster.local": {IPv4: addrs("10.96.0.13"), Namespace: "default"},
		"details.legacy":                    {IPv4: addrs("10.96.0.13"), Namespace: "default"},
		"api.external.com":                  {IPv4: addrs("240.240.0.1"), Namespace: "egress"},
		"*.wild.example.com":                {IPv4: addrs("240.240.0.2"), Namespace: "egress", Wildcard: true},
	}}
	if !reflect.DeepEqual(tbl, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", tbl, want)
	}
	// Round trip: encode, decode, same table (alt hosts become hosts).
	enc, err := EncodeNameTable(tbl)
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeNameTable(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip\n%+v\nwant\n%+v", again, want)
	}
	// Deterministic output.
	if enc2, _ := EncodeNameTable(again); string(enc2) != string(enc) {
		t.Fatalf("encoding not deterministic:\n%s\n%s", enc, enc2)
	}
	// Decoded tables feed BuildTable.
	built, err := BuildTable(tbl.List(), "default", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if compile(built).lookup("reviews") == nil {
		t.Fatal("short name missing after decode + build")
	}
}

func TestDecodeNameTableErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"trailing", `{"table":{}} {}`, "trailing data"},
		{"unknown field", `{"table":{},"extra":1}`, "unknown field"},
		{"unknown info field", `{"table":{"a.com":{"ips":["10.0.0.1"],"alt_hosts":[]}}}`, "unknown field"},
		{"bad ip", `{"table":{"a.com":{"ips":["10.0.0.1"]},"b.com":{"ips":["10.0.0.300"]}}}`, `host "b.com": ip "10.0.0.300"`},
		{"zone", `{"table":{"a.com":{"ips":["fe80::1%eth0"]}}}`, `host "a.com": ip "fe80::1%eth0": address with zone`},
		{"unspecified", `{"table":{"a.com":{"ips":["0.0.0.0"]}}}`, `host "a.com": ip "0.0.0.0": unspecified`},
		{"no ips", `{"table":{"a.com":{"ips":[]}}}`, `host "a.com": no ips`},
		{"bad host", `{"table":{"a..com":{"ips":["10.0.0.1"]}}}`, `host "a..com": bad label`},
		{"bad alt host", `{"table":{"a.com":{"ips":["10.0.0.1"],"altHosts":["x y"]}}}`, `host "a.com": alt host`},
		{"duplicate", `{"table":{"a.com":{"ips":["10.0.0.1"]},"A.com.":{"ips":["10.0.0.2"]}}}`, "duplicate name"},
		{"alt collides", `{"table":{"a.com":{"ips":["10.0.0.1"]},"b.com":{"ips":["10.0.0.2"],"altHosts":["a.com"]}}}`, "duplicate name"},
		{"shortname", `{"table":{"a.b.com":{"ips":["10.0.0.1"],"shortname":"b"}}}`, "shortname"},
		{"namespace", `{"table":{"a.com":{"ips":["10.0.0.1"],"namespace":"a.b"}}}`, "bad namespace"},
		{"ips type", `{"table":{"a.com":{"ips":"10.0.0.1"}}}`, "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeNameTable([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dnsproxy: name table: ") {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := DecodeNameTable(make([]byte, maxTableBytes+1)); err == nil {
		t.Fatal("oversized table accepted")
	}
}

func TestEncodeNameTableErrors(t *testing.T) {
	for _, tbl := range []*NameTable{
		{Hosts: map[string]HostEntry{"a.com": {}}},
		{Hosts: map[string]HostEntry{"a..com": {IPv4: addrs("10.0.0.1")}}},
		{Hosts: map[string]HostEntry{"a.com": {IPv4: addrs("0.0.0.0")}}},
		{Hosts: map[string]HostEntry{"a.com": {IPv4: addrs("10.0.0.1")}, "A.com": {IPv4: addrs("10.0.0.1")}}},
	} {
		if b, err := EncodeNameTable(tbl); err == nil {
			t.Errorf("EncodeNameTable(%v) = %s, want error", tbl.Hosts, b)
		}
	}
	if b, err := EncodeNameTable(nil); err != nil || string(b) != `{"table":{}}` {
		t.Errorf("nil table: %s %v", b, err)
	}
}
