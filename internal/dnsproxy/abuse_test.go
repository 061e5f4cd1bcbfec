package dnsproxy

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// header builds a 12-byte DNS header.
func header(id, flags, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	for i, v := range []uint16{id, flags, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func TestMalformedPackets(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	question := func(name string) []byte {
		b, _ := new(dns.Msg).SetQuestion(name, dns.TypeA).Pack()
		return b[12:]
	}
	hugeLabel := append([]byte{0xFF}, make([]byte, 100)...)
	loop := []byte{0xC0, 12, 0, 1, 0, 1} // compression pointer to itself
	long := []byte{}
	for range 200 { // a name longer than 255 bytes
		long = append(long, 1, 'a')
	}
	long = append(long, 0, 0, 1, 0, 1)
	tests := []struct {
		name  string
		pkt   []byte
		rcode int // -1: no answer expected
	}{
		{"empty", nil, -1},
		{"short header", []byte{1, 2, 3, 4, 5}, -1},
		{"header only, qdcount 1", header(1, 0x0100, 1, 0, 0, 0), dns.RcodeFormatError},
		{"question cut short", append(header(2, 0x0100, 1, 0, 0, 0), question("reviews.")[:5]...), dns.RcodeFormatError},
		{"huge label", append(header(3, 0x0100, 1, 0, 0, 0), hugeLabel...), dns.RcodeFormatError},
		{"pointer loop", append(header(4, 0x0100, 1, 0, 0, 0), loop...), dns.RcodeFormatError},
		{"name over 255 bytes", append(header(5, 0x0100, 1, 0, 0, 0), long...), dns.RcodeFormatError},
		{"two questions", append(append(header(6, 0x0100, 2, 0, 0, 0), question("a.")...), question("b.")...), dns.RcodeFormatError},
		{"no question", header(7, 0x0100, 0, 0, 0, 0), dns.RcodeFormatError},
		{"update opcode", append(header(8, 5<<11, 1, 0, 0, 0), question("reviews.")...), dns.RcodeNotImplemented},
		{"response bit", append(header(9, 0x8100, 1, 0, 0, 0), question("reviews.")...), -1},
		{"too many records", append(header(10, 0x0100, 1, 0xFFFF, 0xFFFF, 0xFFFF), question("reviews.")...), dns.RcodeFormatError},
		// miekg/dns tolerates missing trailing records; the question is
		// intact, so it is answered.
		{"records missing", append(header(11, 0x0100, 1, 0, 0, 1), question("reviews.")...), dns.RcodeSuccess},
	}
	before := s.Stats().Malformed
	buf := make([]byte, 4096)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if tc.rcode < 0 {
				wait = 200 * time.Millisecond
			}
			_ = conn.SetReadDeadline(time.Now().Add(wait))
			n, err := conn.Read(buf)
			if tc.rcode < 0 {
				if err == nil {
					t.Fatalf("got a %d-byte answer, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var m dns.Msg
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatalf("unparseable answer: %v", err)
			}
			if m.Rcode != tc.rcode || m.Id != binary.BigEndian.Uint16(tc.pkt) {
				t.Fatalf("rcode %s id %d, want %s", dns.RcodeToString[m.Rcode], m.Id, dns.RcodeToString[tc.rcode])
			}
		})
	}
	// Random garbage, then the server still answers.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		pkt := make([]byte, rng.IntN(600))
		for i := range pkt {
			pkt[i] = byte(rng.Uint32())
		}
		if len(pkt) > 2 {
			pkt[2] &^= 0x80 // a query, so it is not silently ignored
		}
		_, _ = conn.Write(pkt)
	}
	// The burst may have filled the socket buffer, so retry like a real
	// stub resolver does.
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	var r *dns.Msg
	for range 10 {
		if r, _, err = c.Exchange(new(dns.Msg).SetQuestion("reviews.", dns.TypeA), s.Addr()); err == nil {
			break
		}
	}
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("after garbage: %v %v", r, err)
	}
	if r := ask(t, s.Addr(), "tcp", "reviews.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("after garbage over tcp: %v", r)
	}
	if got := s.Stats().Malformed - before; got < uint64(len(tests)-1) {
		t.Errorf("malformed counter grew by %d", got)
	}
}

func TestMalformedTCP(t *testing.T) {
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}})
	for _, payload := range [][]byte{
		{0x00, 0x05, 1, 2, 3, 4, 5},                             // length-prefixed short header
		{0xFF, 0xFF, 1, 2},                                      // length prefix promising 64 KiB
		append([]byte{0, 12}, header(1, 0x0100, 1, 0, 0, 0)...), // header only
	} {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(payload)
		_ = c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
		_, _ = c.Read(make([]byte, 512)) // FORMERR, or the server hangs up
		c.Close()
	}
	if r := ask(t, s.Addr(), "tcp", "reviews.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("after garbage: %v", r)
	}
}

// TestFlood sends 20,000 queries over about two seconds from 8 goroutines
// and checks that the server stays responsive and that goroutines and
// memory go back down once the flood ends.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test in -short mode")
	}
	up := startUpstream(t)
	s := startProxy(t, Config{Upstreams: []string{up.addr}, Timeout: 500 * time.Millisecond, CacheSize: 1000, MaxInflight: 64})
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse

	const senders, total = 8, 20_000
	var sent, received atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	for g := range senders {
		wg.Go(func() {
			conn, err := net.Dial("udp", s.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			done := make(chan struct{})
			go func() { // drain answers so the socket does not fill
				defer close(done)
				buf := make([]byte, 1500)
				for {
					_ = conn.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := conn.Read(buf); err != nil {
						return
					}
					received.Add(1)
				}
			}()
			per := total / senders
			interval := 2 * time.Second / time.Duration(per)
			next := time.Now()
			for i := range per {
				var name string
				switch i % 4 {
				case 0:
					name = "reviews."
				case 1:
					name = "ratings.prod.svc.cluster.local."
				case 2:
					name = fmt.Sprintf("n%d-%d.example.org.", g, i) // forwarded, each a cache miss
				default:
					name = "www.example.org." // forwarded once, then cached
				}
				m := new(dns.Msg).SetQuestion(name, dns.TypeA)
				m.Id = uint16(i)
				b, _ := m.Pack()
				if _, err := conn.Write(b); err == nil {
					sent.Add(1)
				}
				next = next.Add(interval)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				if time.Now().After(stop.Add(time.Second)) {
					break
				}
			}
			<-done
		})
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("sent %d, answered %d, stats %+v, cache %d entries", sent.Load(), received.Load(), st, s.cache.len())
	if received.Load() < sent.Load()/2 {
		t.Errorf("only %d of %d queries answered", received.Load(), sent.Load())
	}
	if n := s.cache.len(); n > 1000 {
		t.Errorf("cache holds %d entries, limit 1000", n)
	}
	// Still answering.
	if r := ask(t, s.Addr(), "udp", "reviews.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("after flood: %v", r)
	}
	// Goroutines back to the baseline (forwarded queries end within the
	// 500ms timeout).
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseGoroutines+2 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after flood, %d before\n%s", n, baseGoroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grown := int64(ms.HeapInuse) - int64(baseHeap); grown > 32<<20 {
		t.Errorf("heap grew by %d MiB", grown>>20)
	}
}
