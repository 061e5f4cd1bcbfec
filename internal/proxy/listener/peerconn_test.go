package listener

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/ca/spiffe"
)

// tlsPair returns both ends of a real TLS connection over loopback.
func tlsPair(t *testing.T) (client *tls.Conn, server *PeerConn) {
	t.Helper()
	ca := newTestCA(t, "cluster.local")
	cert := ca.issue(t, "spiffe://cluster.local/ns/default/sa/productpage")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan *tls.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if s.Handshake() != nil {
			done <- nil
			return
		}
		done <- s
	}()
	client, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"istio"}})
	if err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s == nil {
		t.Fatal("server handshake failed")
	}
	id := spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "reviews"}
	server = &PeerConn{Conn: s, id: id, principal: id.String()}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestPeerConnSniff: inside mesh mTLS the ALPN says nothing about the
// protocol, so the decrypted stream is sniffed for the HTTP/2 preface and
// what was read is replayed to the engine.
func TestPeerConnSniff(t *testing.T) {
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	for _, tt := range []struct {
		name   string
		writes []string
		h2     bool
	}{
		{"HTTP/2 preface", []string{preface + "\x00\x00\x12\x04"}, true},
		{"preface split over records", []string{preface[:5], preface[5:16], preface[16:] + "rest"}, true},
		{"HTTP/1.1", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}, false},
		{"HTTP/1.1 starting like the preface", []string{"PRIX"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tlsPair(t)
			var all string
			go func() {
				for _, w := range tt.writes {
					client.Write([]byte(w))
					time.Sleep(5 * time.Millisecond)
				}
			}()
			for _, w := range tt.writes {
				all += w
			}
			if got := isH2(server); got != tt.h2 {
				t.Fatalf("isH2 = %v, want %v", got, tt.h2)
			}
			buf := make([]byte, len(all))
			if _, err := io.ReadFull(server, buf); err != nil || string(buf) != all {
				t.Fatalf("replayed %q %v, want %q", buf, err, all)
			}
		})
	}
}
