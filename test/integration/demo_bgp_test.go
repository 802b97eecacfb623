//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/maintenance"
	"github.com/xlbproject/xlb/test/privileged"
)

// TestDemoBGP runs `make demo-bgp`'s script for 20 seconds: both nodes must
// be next hops of the router, the router must drop lb2 after it dies at 12 s,
// and nothing may be left behind.
func TestDemoBGP(t *testing.T) {
	privileged.Require(t)
	prefix := fmt.Sprintf("%s%d", "xlbbgp", os.Getpid()%100000)
	dir := fmt.Sprintf("%s-%d", "/run/xlb-demo-bgp", os.Getpid())
	cmd := exec.Command("bash", "../../scripts/demo-bgp.sh")
	cmd.Env = append(os.Environ(), "DEMO_SECONDS=20", "XLB_DEMO_PREFIX="+prefix, "XLB_DEMO_DIR="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo-bgp: %v\n%s", err, out.String())
		}
	case <-time.After(4 * time.Minute):
		cmd.Process.Signal(os.Interrupt)
		<-done
		t.Fatalf("demo-bgp did not stop by itself\n%s", out.String())
	}
	s := out.String()
	for _, want := range []string{"nexthop via 10.0.0.2", "nexthop via 10.0.0.3", "lb2 died", "10.0.0.100 via 10.0.0.2 dev eth0", "lb1        BGP", "Established", "10.0.0.100/32"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo-bgp output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo-bgp output:\n%s", s)
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(ns, []byte(prefix+"-")) {
		t.Errorf("demo-bgp left namespaces behind:\n%s", ns)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("demo-bgp left /run/xlb-demo-bgp behind")
	}
	// lb2 dies by SIGKILL, which leaves its pin-path lock; the cleanup's
	// detach removes it.
	for _, n := range []string{"lb1", "lb2"} {
		lock := maintenance.File(dir+"/bpf-"+n+"/xlb", ".lock")
		if _, err := os.Stat(lock); err == nil {
			t.Errorf("demo-bgp left %s's lock %s behind", n, lock)
			os.Remove(lock)
		}
	}
}
