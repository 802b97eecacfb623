package l7

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

type closeCount struct{ n atomic.Int32 }

func (c *closeCount) Close() error { c.n.Add(1); return nil }

// TestContainRecovers: a goroutine's panic is logged with its stack and
// closes its connection, and the goroutine ends normally.
func TestContainRecovers(t *testing.T) {
	var buf bytes.Buffer
	old := panicLog.Load()
	panicLog.Store(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { panicLog.Store(old) })
	var c closeCount
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer contain("a test goroutine", &c)
		var p []byte
		n := -1
		_ = p[:n] // what a negative window once did
	}()
	<-done
	if c.n.Load() != 1 {
		t.Errorf("connection closed %d times, want 1", c.n.Load())
	}
	if out := buf.String(); !strings.Contains(out, "recovered from a panic") || !strings.Contains(out, "a test goroutine") || !strings.Contains(out, "contain_internal_test.go") {
		t.Errorf("log lacks the panic, where, or its stack:\n%s", out)
	}
	// No panic: nothing closed, nothing logged.
	buf.Reset()
	func() { defer contain("quiet", &c) }()
	if c.n.Load() != 1 || buf.Len() != 0 {
		t.Errorf("contain without a panic closed or logged: %d, %q", c.n.Load(), buf.String())
	}
}
