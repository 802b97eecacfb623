//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
)

// XLB_TEST_RACE=1 builds xlbd and xlbctl with the race detector and has
// every one of them write its reports into one directory (GORACE's
// log_path, inherited by each child); the package fails when any report
// is there at the end. The tests' own code is raced by go test -race; this
// is for the daemon, which runs in processes of its own.
var raceDir string

// raceFlags are the extra go build flags, after setting up the report
// directory once.
func raceFlags() ([]string, error) {
	if os.Getenv("XLB_TEST_RACE") != "1" {
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "xlb-race-")
	if err != nil {
		return nil, err
	}
	raceDir = dir
	if err := os.Setenv("GORACE", "log_path="+filepath.Join(dir, "report")); err != nil {
		return nil, err
	}
	return []string{"-race"}, nil
}

// raceReports prints what the race detector wrote and reports whether it
// wrote anything.
func raceReports() bool {
	if raceDir == "" {
		return false
	}
	defer os.RemoveAll(raceDir)
	files, _ := filepath.Glob(filepath.Join(raceDir, "report.*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		fmt.Fprintf(os.Stderr, "race detector report %s:\n%s\n", filepath.Base(f), b)
	}
	return len(files) > 0
}
