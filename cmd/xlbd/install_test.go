//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
)

// TestExampleConfig: the file `make install` puts in /etc/xlb is valid as
// shipped, and so are the services it shows in comments once uncommented.
func TestExampleConfig(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-check", "-config", "xlb.example.yaml"}, &out, &errb); code != 0 || out.String() != "ok\n" {
		t.Fatalf("as shipped: exit %d, %s%s", code, out.String(), errb.String())
	}
	b, err := os.ReadFile("xlb.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "services: []\n", "services:\n", 1)
	text = strings.ReplaceAll(text, "\n#  ", "\n  ")
	cfg, err := config.Parse("xlb.example.yaml, uncommented", []byte(text))
	if err != nil {
		t.Fatalf("the commented services, uncommented:\n%s\n%v", text, err)
	}
	if len(cfg.Services) != 2 {
		t.Errorf("uncommented: %d services, want the 2 shown", len(cfg.Services))
	}
}

// TestSystemdUnit: systemd accepts the unit without a warning, and it
// runs what `make install` installs with the config it installs.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("xlbd.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"Type=notify\n",
		"ExecStart=/usr/local/bin/xlbd -config /etc/xlb/xlb.yaml\n",
		"ExecReload=/usr/local/bin/xlbd -check -config /etc/xlb/xlb.yaml\n",
		"ExecReload=/bin/kill -HUP $MAINPID\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze (package systemd) is needed to check the unit: %v", err)
	}
	// verify wants the commands to exist: this test binary stands in.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "xlbd.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/xlbd", self)), 0o644)
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestMakeInstall: `make install DESTDIR=... PREFIX=/usr` puts the
// binaries, the unit (naming them where they went) and the example
// config in place, and a second run keeps a config the operator edited.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	install := func() {
		cmd := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/usr")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
	}
	install()
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{"usr/bin/xlbd", 0o755}, {"usr/bin/xlbctl", 0o755}, {"etc/systemd/system/xlbd.service", 0o644}, {"etc/xlb/xlb.yaml", 0o644}} {
		st, err := os.Stat(filepath.Join(dest, f.path))
		if err != nil {
			t.Error(err)
			continue
		}
		if st.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode().Perm(), f.mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/xlbd.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/xlbd -config /etc/xlb/xlb.yaml\n") || strings.Contains(string(unit), "/usr/local/") {
		t.Errorf("the installed unit does not run /usr/bin/xlbd:\n%s", unit)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/bin/xlbd"), "-check", "-config", filepath.Join(dest, "etc/xlb/xlb.yaml")).Output()
	if err != nil || string(out) != "ok\n" {
		t.Errorf("the installed xlbd -check of the installed config: %v %q", err, out)
	}
	cfg := filepath.Join(dest, "etc/xlb/xlb.yaml")
	os.WriteFile(cfg, []byte("# mine\n"), 0o644)
	install()
	if b, _ := os.ReadFile(cfg); string(b) != "# mine\n" {
		t.Errorf("a second make install replaced the operator's config: %q", b)
	}
}
