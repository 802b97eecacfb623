// Command demo is the traffic half of `make demo`: a named backend that serves
// its name over HTTP (with a health endpoint), and a client that sends a
// steady rate of new connections to a VIP and prints which backend answered.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo backend -name NAME -listen ADDR[,ADDR...] | demo client -url URL [-rate N] [-every 1s]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "backend":
		err = backend(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func backend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	name := fs.String("name", "backend", "name to answer with")
	listen := fs.String("listen", ":80", "comma-separated listen addresses")
	fs.Parse(args)
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// No keep-alive: every request is a new connection, so the balancer
		// makes one decision per request and the shares are visible.
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "%s\n", *name)
	})
	errs := make(chan error, 1)
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go func() { errs <- http.Serve(ln, mux) }()
	}
	return <-errs
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	url := fs.String("url", "http://10.0.0.100/", "URL to fetch")
	rate := fs.Int("rate", 50, "new connections per second")
	every := fs.Duration("every", time.Second, "how often to print the counts")
	fs.Parse(args)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tr := &http.Transport{DisableKeepAlives: true}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		failed int
	)
	tick := time.NewTicker(time.Second / time.Duration(max(*rate, 1)))
	defer tick.Stop()
	report := time.NewTicker(*every)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-report.C:
			mu.Lock()
			fmt.Println(line(counts, failed))
			counts, failed = map[string]int{}, 0
			mu.Unlock()
		case <-tick.C:
			go func() {
				name := "error"
				resp, err := hc.Get(*url)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					name = strings.TrimSpace(string(b))
				}
				mu.Lock()
				if err != nil {
					failed++
				} else {
					counts[name]++
				}
				mu.Unlock()
			}()
		}
	}
}

func line(counts map[string]int, failed int) string {
	names := make([]string, 0, len(counts))
	total := failed
	for n, c := range counts {
		names = append(names, n)
		total += c
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %3d req/s ", time.Now().Format("15:04:05"), total)
	for _, n := range names {
		fmt.Fprintf(&b, " %s %3d (%3.0f%%) %s", n, counts[n], 100*float64(counts[n])/float64(max(total, 1)), strings.Repeat("#", counts[n]/2))
	}
	if failed > 0 {
		fmt.Fprintf(&b, "  failed %d", failed)
	}
	return b.String()
}
