package privileged

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRequireAsRoot checks that Require lets root through.
func TestRequireAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root")
	}
	Require(t) // must neither skip nor fail
}

// TestRequireUnprivileged re-runs the helper test below as an unprivileged user (when we are
// root and "nobody" exists) and checks it skips, or fails with XLB_REQUIRE_PRIVILEGED=1.
func TestRequireUnprivileged(t *testing.T) {
	if os.Getenv("XLB_PRIVILEGED_HELPER") == "1" {
		t.Skip("helper mode")
	}
	if os.Geteuid() != 0 {
		// We already are unprivileged: Require must skip (unless CI asked for failure).
		if os.Getenv(EnvRequire) == "1" {
			t.Skip("XLB_REQUIRE_PRIVILEGED=1 and unprivileged: Require would fail this test")
		}
		Require(t)
		t.Fatal("Require did not skip an unprivileged test")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not available")
	}
	// Copy the test binary somewhere "nobody" can execute it.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := dir + "/privileged.test"
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(require string) (string, error) {
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			bin, "-test.run=^TestRequireHelper$", "-test.v", "-test.count=1")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "XLB_PRIVILEGED_HELPER=1", EnvRequire+"="+require)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("")
	if err != nil || !strings.Contains(out, "--- SKIP: TestRequireHelper") || !strings.Contains(out, "needs root") {
		t.Fatalf("unprivileged without %s: want skip, got err=%v output:\n%s", EnvRequire, err, out)
	}
	out, err = run("1")
	if err == nil || !strings.Contains(out, "--- FAIL: TestRequireHelper") {
		t.Fatalf("unprivileged with %s=1: want failure, got err=%v output:\n%s", EnvRequire, err, out)
	}
}

// TestRequireHelper is run by TestRequireUnprivileged in a child process.
func TestRequireHelper(t *testing.T) {
	if os.Getenv("XLB_PRIVILEGED_HELPER") != "1" {
		return // only meaningful when re-executed as a helper process
	}
	Require(t)
	t.Log("Require returned")
}
