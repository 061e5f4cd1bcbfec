package dnsproxy

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzDecodeNameTable: decoding never panics, and whatever decodes
// re-encodes to an equal table and builds.
func FuzzDecodeNameTable(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "nametable.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"table":{}}`))
	f.Add([]byte(`{"table":{"a.b.svc.cluster.local":{"ips":["10.0.0.1","::1"],"namespace":"b","altHosts":["x.y"]}}}`))
	f.Add([]byte(`{"table":{"*.a.com":{"ips":["::ffff:1.2.3.4"]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tbl, err := DecodeNameTable(b)
		if err != nil {
			return
		}
		enc, err := EncodeNameTable(tbl)
		if err != nil {
			t.Fatalf("decoded table does not encode: %v", err)
		}
		again, err := DecodeNameTable(enc)
		if err != nil {
			t.Fatalf("encoded table does not decode: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(tbl, again) {
			t.Fatalf("round trip changed the table\n%+v\n%+v", tbl, again)
		}
		if _, err := BuildTable(tbl.List(), "default", "cluster.local"); err != nil {
			t.Fatalf("decoded table does not build: %v", err)
		}
	})
}

// recorder is a dns.ResponseWriter that keeps the answer.
type recorder struct {
	network string
	msg     *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr {
	if r.network == "tcp" {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15053}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15053}
}
func (r *recorder) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (r *recorder) WriteMsg(m *dns.Msg) error   { r.msg = m; return nil }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

var _ dns.ResponseWriter = (*recorder)(nil)

// FuzzServeDNS feeds raw packets through the same steps miekg/dns's server
// takes (header, accept function, unpack) into Server.ServeDNS, with a real
// fake upstream behind it. The answer must pack, fit the client's size over
// UDP, and carry the query's ID.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"reviews.", dns.TypeA, false},
		{"reviews.default.svc.cluster.local.", dns.TypeAAAA, true},
		{"x.wild.example.com.", dns.TypeANY, false},
		{"www.example.org.", dns.TypeA, true},
		{"big.example.org.", dns.TypeA, false},
		{"db.mesh.internal.", dns.TypeMX, false},
		{"nosuch.invalid.", dns.TypeA, false},
		{"12.0.96.10.in-addr.arpa.", dns.TypePTR, false},
		{"2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, true},
		{"0.96.10.in-addr.arpa.", dns.TypePTR, false},
		// The most labels a name can have (127 one-byte labels).
		{strings.Repeat("a.", 127), dns.TypeA, false},
	} {
		m := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(1232, true)
		}
		b, _ := m.Pack()
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add(header(1, 0x0100, 1, 0, 0, 0), false)
	up := startUpstream(f)
	s, err := New(Config{Upstreams: []string{up.addr}, Logger: quietLogger(), Timeout: 200 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	s.SetTable(testTable(f))
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		// What miekg/dns's Server.serveDNS does before calling the handler.
		if len(pkt) < 12 {
			return
		}
		be := binary.BigEndian
		dh := dns.Header{Id: be.Uint16(pkt), Bits: be.Uint16(pkt[2:]), Qdcount: be.Uint16(pkt[4:]),
			Ancount: be.Uint16(pkt[6:]), Nscount: be.Uint16(pkt[8:]), Arcount: be.Uint16(pkt[10:])}
		if dns.DefaultMsgAcceptFunc(dh) != dns.MsgAccept {
			return
		}
		var req dns.Msg
		if err := req.Unpack(pkt); err != nil {
			return
		}
		w := &recorder{network: "udp"}
		if tcp {
			w.network = "tcp"
		}
		s.ServeDNS(w, &req)
		if w.msg == nil {
			return
		}
		out, err := w.msg.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, w.msg)
		}
		limit := dns.MaxMsgSize
		if !tcp {
			limit = dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				limit = max(int(opt.UDPSize()), dns.MinMsgSize)
			}
		}
		if len(out) > limit {
			t.Fatalf("answer of %d bytes over a %d-byte limit", len(out), limit)
		}
		if w.msg.Id != req.Id || !w.msg.Response {
			t.Fatalf("answer id %d response=%v for query id %d", w.msg.Id, w.msg.Response, req.Id)
		}
	})
}
