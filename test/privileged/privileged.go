// Package privileged lets tests that need root skip cleanly, or fail under CI.
package privileged

import (
	"os"
	"testing"
)

// EnvRequire is the environment variable that turns a skip into a failure. When it is set
// to "1" (as CI jobs that do run as root should do), a test that calls Require without
// root privileges fails instead of being skipped, so a misconfigured runner cannot
// silently skip the privileged tests.
const EnvRequire = "XLB_REQUIRE_PRIVILEGED"

// Require skips the test with a clear message when not running as root (euid 0), unless the
// environment variable XLB_REQUIRE_PRIVILEGED=1, in which case it fails the test (t.Fatalf) instead.
func Require(t testing.TB) {
	t.Helper()
	euid := os.Geteuid()
	if euid == 0 {
		return
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("test needs root privileges (euid 0), running as euid %d, and %s=1 forbids skipping", euid, EnvRequire)
	}
	t.Skipf("skipping: test needs root privileges (euid 0), running as euid %d; run as root (e.g. sudo -E go test ...), set %s=1 to fail instead of skipping", euid, EnvRequire)
}
