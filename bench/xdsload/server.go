package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/translate"
	"github.com/weftmesh/weft/internal/xds"
	"github.com/weftmesh/weft/internal/xds/xdstest"
)

// server is the xDS server under test, in this process or in a child
// process (-server-process), driven through the model changes.
type server interface {
	addr() string
	// change applies step 1 (a service added) or 2 (an endpoint change).
	change(step int) error
	stats() serverStats
	close()
}

// serverStats are cumulative; own is false when the numbers are this
// process's (and so include the simulated proxies).
type serverStats struct {
	pushTime time.Duration
	pushes   uint64
	cpu      time.Duration
	hwmKB    int64
	own      bool
}

// localServer runs an xds.Server with a synthetic model in this process.
type localServer struct {
	srv    *xds.Server
	reg    *prometheus.Registry
	g      *grpc.Server
	lis    net.Listener
	cancel context.CancelFunc
	svcs   []xdstest.Service
}

func startLocal(o options) (*localServer, error) {
	if o.services < 1 {
		return nil, fmt.Errorf("-services must be >= 1")
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	var gen xds.Generator = translate.Generator{}
	if o.synthetic {
		gen = &xdstest.Generator{}
	}
	l := &localServer{reg: prometheus.NewRegistry()}
	l.srv = xds.New(xds.Config{Generator: gen, Debounce: o.debounce, Registerer: l.reg,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	l.g = grpc.NewServer()
	l.srv.Register(l.g)
	var err error
	if l.lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	go l.g.Serve(l.lis)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.srv.Run(ctx)

	l.svcs = xdstest.Services(o.services, max(1, o.endpoints/o.services), o.namespaces)
	m, err := xdstest.Model(1, l.svcs)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	l.srv.Update(m)
	if err := waitPushes(l.reg, 1, o.timeout); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "model: %d services, %d endpoints, %d namespaces; first push %v (incl. %v debounce)\n",
		len(l.svcs), len(l.svcs)*max(1, o.endpoints/o.services), o.namespaces, time.Since(t0).Round(time.Millisecond), o.debounce)
	return l, nil
}

func (l *localServer) addr() string { return l.lis.Addr().String() }

func (l *localServer) change(step int) error {
	switch step {
	case 1:
		l.svcs = append(l.svcs, xdstest.Service{Name: "added", Namespace: "ns-0", Port: 8080, Endpoints: []string{"10.250.0.1", "10.250.0.2"}})
	case 2:
		l.svcs[0].Endpoints = append(slices.Clone(l.svcs[0].Endpoints[1:]), "10.251.0.1")
	default:
		return fmt.Errorf("unknown step %d", step)
	}
	m, err := xdstest.Model(uint64(step+1), l.svcs)
	if err != nil {
		return err
	}
	l.srv.Update(m)
	return nil
}

func (l *localServer) stats() serverStats {
	pt, pc := pushStats(l.reg)
	_, ru := maxRSS()
	return serverStats{pushTime: pt, pushes: pc, cpu: cpuTime(), hwmKB: ru}
}

func (l *localServer) close() { l.g.Stop(); l.cancel() }

// serveChild is the child side of -server-process: it starts a local
// server, prints its address, then answers one command per stdin line:
// "change N" and "stats". It exits when stdin closes.
func serveChild(o options) error {
	l, err := startLocal(o)
	if err != nil {
		return err
	}
	defer l.close()
	fmt.Printf("addr %s\n", l.addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "change":
			n, _ := strconv.Atoi(f[1])
			if err := l.change(n); err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			fmt.Println("ok")
		case len(f) == 1 && f[0] == "stats":
			s := l.stats()
			fmt.Printf("stats %d %d %d %d\n", s.pushTime, s.pushes, s.cpu, s.hwmKB)
		default:
			fmt.Printf("error unknown command %q\n", in.Text())
		}
	}
	return nil
}

// childServer drives a server running in a child process, so its CPU and
// peak RSS are measured apart from the simulated proxies'.
type childServer struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	address string
}

func startChild(o options) (*childServer, error) {
	args := []string{"-child-server", "-services", strconv.Itoa(o.services), "-endpoints", strconv.Itoa(o.endpoints),
		"-namespaces", strconv.Itoa(o.namespaces), "-debounce", o.debounce.String(), "-timeout", o.timeout.String()}
	if o.synthetic {
		args = append(args, "-synthetic")
	}
	if o.verbose {
		args = append(args, "-v")
	}
	c := &childServer{cmd: exec.Command(os.Args[0], args...)}
	c.cmd.Stderr = os.Stderr
	var err error
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	c.out = bufio.NewScanner(stdout)
	line, err := c.read()
	if err != nil {
		c.close()
		return nil, err
	}
	c.address = strings.TrimPrefix(line, "addr ")
	return c, nil
}

func (c *childServer) read() (string, error) {
	if !c.out.Scan() {
		return "", fmt.Errorf("server process ended: %v", c.out.Err())
	}
	line := c.out.Text()
	if strings.HasPrefix(line, "error ") {
		return "", fmt.Errorf("server process: %s", strings.TrimPrefix(line, "error "))
	}
	return line, nil
}

func (c *childServer) addr() string { return c.address }

func (c *childServer) change(step int) error {
	fmt.Fprintf(c.in, "change %d\n", step)
	_, err := c.read()
	return err
}

func (c *childServer) stats() serverStats {
	fmt.Fprintln(c.in, "stats")
	line, err := c.read()
	var s serverStats
	if err != nil {
		return s
	}
	var pt, cpu int64
	fmt.Sscanf(line, "stats %d %d %d %d", &pt, &s.pushes, &cpu, &s.hwmKB)
	s.pushTime, s.cpu, s.own = time.Duration(pt), time.Duration(cpu), true
	return s
}

func (c *childServer) close() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}
