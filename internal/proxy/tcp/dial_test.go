package tcp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"up"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestForwardThroughTLSDialer: with Config.Dial originating TLS, bytes and
// the client's half-close (a TLS close_notify upstream) cross the relay.
func TestForwardThroughTLSDialer(t *testing.T) {
	cert := selfSigned(t)
	up := serve(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		n, _ := io.Copy(io.Discard, tc) // until close_notify
		_, _ = tc.Write(bytes.Repeat([]byte{'y'}, int(n)))
	})
	var dialled string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no connect deadline")
		}
		dialled = addr
		raw, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return tc, nil
	}
	stats := make(chan Stats, 1)
	addr := startProxy(t, New(Config{Dial: dial}), up, stats)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	payload := bytes.Repeat([]byte("mtls"), 1<<16)
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(payload) {
		t.Fatalf("got %d bytes, err %v", len(got), err)
	}
	if st := <-stats; st.Sent != int64(len(payload)) || st.Received != int64(len(payload)) || dialled != up {
		t.Fatalf("stats %+v, dialled %q", st, dialled)
	}
}

func TestDialFailureIsReported(t *testing.T) {
	p := New(Config{ConnectTimeout: time.Second, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, errors.New("handshake refused")
	}})
	if _, err := p.Dial("127.0.0.1:1"); err == nil || err.Error() != "tcp: dial 127.0.0.1:1: handshake refused" {
		t.Fatalf("err = %v", err)
	}
}
