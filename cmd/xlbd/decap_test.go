//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecapRequiresAllow(t *testing.T) {
	for _, args := range [][]string{
		{"decap", "-interface", "eth0"},
		{"decap", "-interface", "eth0", "-allow", ""},
		{"decap", "-interface", "eth0", "-allow", "10.0.0.0/8,any"},
		{"decap", "-interface", "eth0", "-allow", "not-a-cidr"},
		// Every -allow counts, not the last one alone. (An interface that
		// does not exist: should parsing let this through, nothing of the
		// machine's is touched.)
		{"decap", "-interface", "xlb-none0", "-allow", "not-a-cidr", "-allow", "10.0.0.1"},
		{"decap", "-interface", "xlb-none0", "-allow", "any", "-allow", "10.0.0.1"},
		// A space-separated list is a mistake, not a shorter list.
		{"decap", "-interface", "xlb-none0", "-allow", "10.0.0.1", "10.0.0.2"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-allow") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
