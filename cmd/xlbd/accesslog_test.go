package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAccessLogReopen: after logrotate moved the file, a reopen writes a
// new one at the path; the moved one keeps what came before. A reopen
// that fails (the folder is gone) keeps writing to the old file.
func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	a, err := openAccessLog(path, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	quiet := slog.New(slog.DiscardHandler)
	a.log.Info("request", "n", 1)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	a.log.Info("request", "n", 2) // still the moved file: not yet reopened
	a.reopen(quiet)
	a.log.Info("request", "n", 3)
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if strings.Count(string(old), "\n") != 2 || !strings.Contains(string(old), `"n":2`) {
		t.Errorf("the moved file: %q", old)
	}
	if strings.Count(string(cur), "\n") != 1 || !strings.Contains(string(cur), `"n":3`) {
		t.Errorf("the new file: %q", cur)
	}

	other := filepath.Join(t.TempDir(), "sub")
	os.Mkdir(other, 0o755)
	b, err := openAccessLog(filepath.Join(other, "access.log"), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	os.Rename(filepath.Join(other, "access.log"), filepath.Join(dir, "kept.log"))
	os.Remove(other)
	b.reopen(quiet)
	b.log.Info("request", "n", 4)
	if kept, _ := os.ReadFile(filepath.Join(dir, "kept.log")); !strings.Contains(string(kept), `"n":4`) {
		t.Errorf("after a failed reopen the record went nowhere: %q", kept)
	}
}
