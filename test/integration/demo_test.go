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

	"github.com/xlbproject/xlb/test/privileged"
)

// TestDemo runs `make demo`'s script for 20 seconds: it must balance, notice
// the backend it kills, and leave nothing behind.
func TestDemo(t *testing.T) {
	privileged.Require(t)
	prefix := fmt.Sprintf("%s%d", "xlbdemo", os.Getpid()%100000)
	dir := fmt.Sprintf("%s-%d", "/run/xlb-demo", os.Getpid())
	cmd := exec.Command("bash", "../../scripts/demo.sh")
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
			t.Fatalf("demo: %v\n%s", err, out.String())
		}
	case <-time.After(4 * time.Minute):
		cmd.Process.Signal(os.Interrupt)
		<-done
		t.Fatalf("demo did not stop by itself\n%s", out.String())
	}
	s := out.String()
	for _, want := range []string{"10.0.0.100:80", "killed backend b2", "DOWN", " b1 ", " b3 ", "final data-plane counters"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", s)
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(ns, []byte(prefix+"-")) {
		t.Errorf("demo left namespaces behind:\n%s", ns)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("demo left /run/xlb-demo behind")
	}
}
