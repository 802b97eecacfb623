//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck: -check prints "ok" alone on stdout for a valid config (its
// warnings go to stderr) and every error, with file and line, for an
// invalid one.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Valid, with a warning: a layer 4 service and no xdp.interfaces.
	good := write("good.yaml", "services:\n  - name: api\n    layer: 4\n    vip: 10.0.0.10\n    port: 80\n    backends: [{address: 10.0.1.1}]\n")
	var out, errb bytes.Buffer
	if code := run([]string{"-check", "-config", good}, &out, &errb); code != 0 || out.String() != "ok\n" {
		t.Errorf("valid config: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "warning: ") || !strings.Contains(errb.String(), "xdp.interfaces is empty") {
		t.Errorf("valid config: the warning is not on stderr: %q", errb.String())
	}

	bad := write("bad.yaml", "admin:\n  listen: nope\nservices:\n  - name: api\n    layer: 4\n    vip: 10.0.0.10\n    port: 80\n    scheduler: fastest\n    backends: [{address: 10.0.1.1}]\n")
	out.Reset()
	errb.Reset()
	if code := run([]string{"-check", "-config", bad}, &out, &errb); code != 1 {
		t.Errorf("invalid config: exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":2: admin.listen", bad + ":8: services[0].scheduler"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("invalid config: stdout %q lacks %q", out.String(), want)
		}
	}
	if strings.Contains(out.String(), "ok") {
		t.Errorf("invalid config: stdout says ok: %q", out.String())
	}

	out.Reset()
	if code := run([]string{"-version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "xlbd ") {
		t.Errorf("-version: exit %d, stdout %q", code, out.String())
	}
}
