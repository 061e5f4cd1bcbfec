// Command hostapp is the plain application of the network-namespace e2e
// tests (test/e2e/netns_hosts_test.go). It knows nothing about the mesh:
//
//	hostapp serve -name vm1 -addr :9080 -fail-file F   HTTP: "/" answers the host name,
//	                                                   "/healthz" 500 while F exists
//	hostapp dns -addr IP:53                            a tiny upstream resolver: upstream.test A
//	                                                   192.0.2.53, NXDOMAIN (with SOA) for the rest
//	hostapp lookup NAME...                             Go's own resolver (/etc/resolv.conf)
//	hostapp load -url U -n N -c C -interval D          N GETs, C at a time; JSON summary on stdout
//	hostapp asuser UID CMD ARGS...                     drop to UID/GID and exec CMD (weft-proxy
//	                                                   runs as 1337, the uid capture exempts)
//
// The tests build it with `go build`; it is not part of the product.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hostapp serve|dns|lookup|load|asuser ...")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "dns":
		err = serveDNS(args)
	case "lookup":
		err = lookup(args)
	case "load":
		err = load(args)
	case "asuser":
		err = asUser(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostapp:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("name", "", "host name to answer with")
	addr := fs.String("addr", ":9080", "listen address")
	failFile := fs.String("fail-file", "", "while this file exists /healthz answers 500")
	_ = fs.Parse(args)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(*failFile); *failFile != "" && err == nil {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, *name)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Println("serving", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// upstreamAnswer is what the fake upstream resolver answers for upstream.test.
const upstreamAnswer = "192.0.2.53"

func serveDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:53", "UDP and TCP listen address")
	_ = fs.Parse(args)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg).SetReply(req)
		resp.Authoritative = true
		if len(req.Question) == 1 && strings.EqualFold(req.Question[0].Name, "upstream.test.") {
			if req.Question[0].Qtype == dns.TypeA {
				rr, _ := dns.NewRR("upstream.test. 60 IN A " + upstreamAnswer)
				resp.Answer = append(resp.Answer, rr)
			}
		} else {
			resp.Rcode = dns.RcodeNameError
		}
		if len(resp.Answer) == 0 {
			soa, _ := dns.NewRR("test. 60 IN SOA ns.test. admin.test. 1 60 60 60 5")
			resp.Ns = append(resp.Ns, soa)
		}
		_ = w.WriteMsg(resp)
	})
	errc := make(chan error, 2)
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *addr, Net: network, Handler: h}
		go func() { errc <- srv.ListenAndServe() }()
	}
	fmt.Println("serving dns", *addr)
	return <-errc
}

func lookup(names []string) error {
	r := &net.Resolver{PreferGo: true}
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := r.LookupHost(ctx, n)
		cancel()
		if err != nil {
			return err
		}
		sort.Strings(addrs)
		fmt.Printf("%s %s\n", n, strings.Join(addrs, ","))
	}
	return nil
}

// loadResult is the JSON summary of a load run.
type loadResult struct {
	OK     int            `json:"ok"`
	Failed int            `json:"failed"`
	Bodies map[string]int `json:"bodies"`
	Errors []string       `json:"errors,omitempty"` // the first few
	Start  time.Time      `json:"start"`
	End    time.Time      `json:"end"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "", "URL to GET")
	n := fs.Int("n", 100, "requests in total")
	c := fs.Int("c", 4, "concurrent workers")
	interval := fs.Duration("interval", 0, "pause of each worker between requests")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	_ = fs.Parse(args)
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{MaxIdleConnsPerHost: *c}}
	res := loadResult{Bodies: map[string]int{}, Start: time.Now()}
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range *c {
		wg.Go(func() {
			for range jobs {
				body, err := get(client, *url)
				mu.Lock()
				if err != nil {
					res.Failed++
					if len(res.Errors) < 10 {
						res.Errors = append(res.Errors, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
				} else {
					res.OK++
					res.Bodies[body]++
				}
				mu.Unlock()
				time.Sleep(*interval)
			}
		})
	}
	for i := range *n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.End = time.Now()
	return json.NewEncoder(os.Stdout).Encode(res)
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}

// asUser drops to uid (and gid = uid, no supplementary groups) and execs
// the command, keeping the process id, so the caller can signal it.
func asUser(args []string) error {
	if len(args) < 2 {
		return errors.New("asuser UID CMD ARGS...")
	}
	uid, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	bin, err := exec.LookPath(args[1])
	if err != nil {
		return err
	}
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(uid); err != nil {
		return err
	}
	if err := syscall.Setuid(uid); err != nil {
		return err
	}
	// Changing credentials clears the parent-death signal: ask for it again
	// so the process dies with the test even if cleanups never run.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		return errno
	}
	return syscall.Exec(bin, args[1:], os.Environ())
}
