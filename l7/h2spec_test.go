package l7_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestH2Spec runs h2spec (github.com/summerwind/h2spec, the HTTP/2
// conformance suite: RFC 7540/9113 and HPACK) against a TLS listener and a
// cleartext (h2c, prior knowledge) one, both with protocols [h2], and fails on any failed case. The
// tool is built from the module proxy into a temporary folder, not
// vendored; XLB_H2SPEC names a prebuilt binary instead.
func TestH2Spec(t *testing.T) {
	bin := os.Getenv("XLB_H2SPEC")
	if bin == "" {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "install", "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible")
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building h2spec: %v\n%s", err, out)
		}
		bin = filepath.Join(dir, "h2spec")
	}
	a := newBackend(t, "a", nil)
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// h2 only: on a listener that also speaks HTTP/1.1, bytes that
			// are not the preface are read as HTTP/1.x (and answered 400
			// when malformed), which h2spec's invalid-preface case (3.5/2)
			// counts as a failure.
			svc := backendsYAML(a) + "protocols: [h2]\n"
			args := []string{"-h", "127.0.0.1", "-o", "5"} // a case's timeout: generous for a busy CI machine
			if tc.tls {
				svc += fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
				args = append(args, "-t", "-k")
			}
			p := startProxy(t, svc, "")
			_, port, _ := strings.Cut(p.listen, ":")
			args = append(args, "-p", port)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			sum := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(out.String())
			if sum == nil {
				t.Fatalf("h2spec: %v, no summary:\n%s", err, out.String())
			}
			t.Logf("h2spec %s: %s", tc.name, sum[0])
			if sum[4] != "0" || err != nil {
				t.Errorf("h2spec %s: %s\n%s", tc.name, sum[0], failures(out.String()))
			}
		})
	}
}

// failures keeps the lines of h2spec's report that explain its failures.
func failures(report string) string {
	if i := strings.Index(report, "Failures:"); i >= 0 {
		return report[i:]
	}
	return report
}
