// Command grpcload is the gRPC side of `make bench-l7` (scenario grpc): a
// load client making unary calls (grpc.health.v1.Health/Check, so that no
// generated code of its own is needed) over -c connections with -m calls in
// flight on each, for -d, printing its result in wrk's shape (requests,
// Requests/sec, 50% and 99% latencies, failed calls as non-2xx) so that the
// harness reads it as it reads wrk's; and, with -serve, the gRPC backends
// themselves (a health service answering SERVING on every address given).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	serve := flag.String("serve", "", "comma-separated addresses to serve gRPC backends on (no load then)")
	conns := flag.Int("c", 16, "client connections")
	streams := flag.Int("m", 8, "calls in flight per connection")
	dur := flag.Duration("d", 10*time.Second, "how long to load")
	check := flag.Bool("check", false, "make one call and say whether it worked")
	flag.Parse()
	if *serve != "" {
		if err := serveBackends(strings.Split(*serve, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "grpcload:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: grpcload [-c N] [-m N] [-d D] [-check] HOST:PORT | grpcload -serve ADDR[,ADDR...]")
		os.Exit(2)
	}
	if err := load(flag.Arg(0), *conns, *streams, *dur, *check); err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
}

// serveBackends runs a health service answering SERVING on each address
// until SIGINT or SIGTERM.
func serveBackends(addrs []string) error {
	var servers []*grpc.Server
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		s := grpc.NewServer()
		hs := health.NewServer()
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(s, hs)
		go s.Serve(ln)
		servers = append(servers, s)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, s := range servers {
		s.Stop()
	}
	return nil
}

func load(addr string, conns, streams int, dur time.Duration, check bool) error {
	dial := func() (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if check {
		cc, err := dial()
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("check %s: %w", addr, err)
		}
		fmt.Println("gRPC:", resp.GetStatus())
		return nil
	}
	// Calls are not given the run's end as a deadline: one cut by it would
	// count as failed. Each goroutine stops calling at the end and lets its
	// last call finish, as wrk lets its last request.
	ctx := context.Background()
	var failed atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, conns*streams)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for i := range conns {
		cc, err := dial()
		if err != nil {
			return err
		}
		defer cc.Close()
		c := healthpb.NewHealthClient(cc)
		for j := range streams {
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				for time.Now().Before(end) {
					t := time.Now()
					_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
					if err != nil {
						if failed.Add(1) == 1 {
							firstErr.Store(err.Error())
						}
						continue
					}
					lat[k] = append(lat[k], time.Since(t))
				}
			}(i*streams + j)
		}
	}
	wg.Wait()
	took := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	n := int64(len(all)) + failed.Load()
	fmt.Printf("Running %v test @ %s, %d connections x %d calls in flight\n", dur, addr, conns, streams)
	fmt.Printf("  Latency Distribution\n")
	fmt.Printf("     50%% %.2fus\n", float64(pct(0.50).Nanoseconds())/1e3)
	fmt.Printf("     99%% %.2fus\n", float64(pct(0.99).Nanoseconds())/1e3)
	fmt.Printf("  %d requests in %.2fs\n", n, took.Seconds())
	if f := failed.Load(); f > 0 {
		fmt.Printf("  Non-2xx or 3xx responses: %d\n", f)
		fmt.Fprintf(os.Stderr, "grpcload: %d calls failed, the first: %v\n", f, firstErr.Load())
	}
	fmt.Printf("Requests/sec: %.2f\n", float64(n)/took.Seconds())
	return nil
}
