package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// ratingsIdle bounds how long a ratings connection may stay silent.
const ratingsIdle = 10 * time.Second

// runRatings serves a line protocol over plain TCP, so the demo has a
// non-HTTP service: "RATE <item>\n" is answered "OK <stars> <name>\n".
func runRatings(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ratings", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18090", "address to serve TCP on")
	name := fs.String("name", "ratings", "name reported in answers (which instance served)")
	_ = fs.Parse(args)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "ratings %s listening on %s\n", *name, ln.Addr())
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveRatings(c, *name)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

func serveRatings(c net.Conn, name string) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		_ = c.SetDeadline(time.Now().Add(ratingsIdle))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		item, ok := strings.CutPrefix(strings.TrimSpace(line), "RATE ")
		if !ok || item == "" {
			fmt.Fprintf(c, "ERR want RATE <item>\n")
			continue
		}
		fmt.Fprintf(c, "OK %d %s\n", stars(item), name)
	}
}

// stars is a stable rating per item, 1..5.
func stars(item string) int {
	h := fnv.New32a()
	h.Write([]byte(item))
	return int(h.Sum32()%5) + 1
}

// rate asks a ratings server for item's stars over one TCP connection:
// through the HTTP proxy's CONNECT tunnel when proxy is set (the mesh
// sidecar, from HTTP_PROXY), else directly.
func rate(ctx context.Context, proxy, addr, item string) (stars int, servedBy string, err error) {
	c, err := dialTCP(ctx, proxy, addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := fmt.Fprintf(c, "RATE %s\n", item); err != nil {
		return 0, "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, "", fmt.Errorf("ratings %s: %w", addr, err)
	}
	if _, err := fmt.Sscanf(line, "OK %d %s", &stars, &servedBy); err != nil {
		return 0, "", fmt.Errorf("ratings %s answered %q", addr, strings.TrimSpace(line))
	}
	return stars, servedBy, nil
}

// dialTCP opens a TCP connection to addr, through an HTTP proxy's CONNECT
// method when proxy ("127.0.77.20:15080") is set: the sidecar resolves the
// mesh name and load-balances, exactly as for HTTP calls.
func dialTCP(ctx context.Context, proxy, addr string) (net.Conn, error) {
	var d net.Dialer
	if proxy == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
	// Read the proxy's answer byte by byte up to the blank line, so no byte
	// of the tunnelled protocol is consumed here.
	var head []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if len(head) > 4096 {
			c.Close()
			return nil, errors.New("CONNECT: answer head too long")
		}
		if _, err := c.Read(b); err != nil {
			c.Close()
			return nil, fmt.Errorf("CONNECT %s via %s: %w", addr, proxy, err)
		}
		head = append(head, b[0])
	}
	status, _, _ := strings.Cut(string(head), "\r\n")
	if f := strings.Fields(status); len(f) < 2 || f[1] != "200" {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s via %s: %s", addr, proxy, status)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
