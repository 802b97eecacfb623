package l7

import (
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true}, {"2M", 2 * time.Minute, true}, {"3S", 3 * time.Second, true},
		{"200m", 200 * time.Millisecond, true}, {"5u", 5 * time.Microsecond, true}, {"7n", 7, true},
		{"99999999S", 99999999 * time.Second, true},
		{"", 0, false}, {"S", 0, false}, {"10", 0, false}, {"10s", 0, false}, {"-1S", 0, false},
		{"123456789S", 0, false}, {"1.5S", 0, false},
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAppendGRPCMessage(t *testing.T) {
	if got := string(appendGRPCMessage(nil, "no backend: 100% down\n\xff")); got != "no backend: 100%25 down%0A%FF" {
		t.Errorf("got %q", got)
	}
}
