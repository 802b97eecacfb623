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

// TestWordsAfterTheFlags: a word after the flags is an error with the
// usage (exit 2), not ignored: `xlbd -check new.yaml` must not check the
// default file and say ok.
func TestWordsAfterTheFlags(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.yaml")
	if err := os.WriteFile(good, []byte("services: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-check", "-config", good, "extra"},
		{"-check", good},
		{"-config", good, "-check", "extra", "more"},
		{"-version", "extra"},
	} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "unexpected argument") || !strings.Contains(errb.String(), "usage: xlbd") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, the word and the usage on stderr", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-check", "-config", good}, &out, &errb); code != 0 || out.String() != "ok\n" {
		t.Errorf("flags alone: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// TestCheckAsksTheHost: -check warns, with file, line and key, of what
// the start would fail on here (a listen host that does not resolve, an
// xdp.interfaces entry this host lacks), and still says ok: a file is
// often checked where it will not run.
func TestCheckAsksTheHost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	body := "xdp: {interfaces: [xlb-none0]}\nservices:\n  - name: web\n    layer: 7\n    listen: nonexistent.invalid:22020\n    backends: [{address: 127.0.0.1:9001}]\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-check", "-config", path}, &out, &errb); code != 0 || out.String() != "ok\n" {
		t.Errorf("exit %d, stdout %q; want 0 and ok", code, out.String())
	}
	for _, want := range []string{
		"warning: " + path + ":1: xdp.interfaces[0]: no interface xlb-none0 on this host",
		"warning: " + path + ":5: services[0].listen: nonexistent.invalid does not resolve on this host",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr %q lacks %q", errb.String(), want)
		}
	}
}
