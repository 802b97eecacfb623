package l7_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestGRPCBackendKilledUnderLoad: a gRPC backend process killed with -9
// while unary calls stream through xlb on one client connection fails no
// call whose answer had not begun: the calls it held and the ones that still reach its dead address
// are sent again (retries.on grpc_unavailable and connect_error), and
// passive health takes it out.
func TestGRPCBackendKilledUnderLoad(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "grpcload")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xlbproject/xlb/test/benchl7/grpcload").CombinedOutput(); err != nil {
		t.Fatalf("build grpcload: %v\n%s", err, out)
	}
	var addrs []string
	var procs []*exec.Cmd
	for range 3 {
		addr := freePort(t)
		cmd := exec.Command(bin, "-serve", addr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		procs = append(procs, cmd)
		addrs = append(addrs, addr)
	}
	for _, a := range addrs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("backend %s never listened: %v", a, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	svc := addrYAML(addrs...) + "backend_protocol: h2c\npassive_health: {max_fails: 1, fail_timeout: 30s}\nretries: {attempts: 2, on: [connect_error, grpc_unavailable]}\n"
	p, _, _ := startH2Proxy(t, false, svc, "")
	cc := dialGRPC(t, p.listen)
	hc := healthpb.NewHealthClient(cc)

	// begun counts the calls whose answer had begun when the backend died
	// (its head out, no message yet): those cannot be sent again, and end
	// UNAVAILABLE with xlb's message (README); any other failure is a bug.
	var calls, failed, begun atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				calls.Add(1)
				switch {
				case err != nil && status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "connection was lost during the call"):
					begun.Add(1)
				case err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	before := calls.Load()
	procs[1].Process.Signal(syscall.SIGKILL)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if calls.Load()-before < 100 {
		t.Fatalf("only %d calls after the kill: the load did not run", calls.Load()-before)
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed around a backend's kill -9 (first: %v), want 0", n, calls.Load(), firstErr.Load())
	}
	if begun.Load() > 1 {
		t.Errorf("%d calls had their answer begun when the backend died; with 8 in flight over 3 backends, at most a rare one may", begun.Load())
	}
	t.Logf("%d calls, %d of them after the kill, %d failed, %d ended UNAVAILABLE with their answer begun", calls.Load(), calls.Load()-before, failed.Load(), begun.Load())
}
