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
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-allow") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
