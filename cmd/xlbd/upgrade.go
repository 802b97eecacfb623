package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/daemon"
	"github.com/xlbproject/xlb/internal/upgrade"
)

// binaryUpgrade is a SIGUSR2 under way: the binary now at xlbd's path
// replaces this one in the same process (so systemd's main PID and the
// unit stay), with the listening sockets handed on.
type binaryUpgrade struct {
	binary  string
	version string
	files   map[string]*os.File // listen address → a duplicate of its socket
}

// prepareUpgrade checks the new binary before anything stops: it must run
// and accept the config (`-check`), or the upgrade is refused and this
// image serves on. Then it duplicates the listening sockets (the L7
// services' and the admin API's), which stay open while the listeners
// close for the drain.
func prepareUpgrade(configPath string, d *daemon.Daemon, adminAddr string, admin net.Listener) (*binaryUpgrade, error) {
	bin, err := selfPath()
	if err != nil {
		return nil, fmt.Errorf("finding xlbd's own binary: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -version: %w", bin, err)
	}
	ver := strings.TrimSpace(strings.TrimPrefix(string(out), "xlbd "))
	if out, err := exec.CommandContext(ctx, bin, "-check", "-config", configPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s -check -config %s: %w: %s", bin, configPath, err, strings.TrimSpace(string(out)))
	}
	files, err := d.ListenerFiles()
	if err != nil {
		return nil, err
	}
	tl, ok := admin.(interface{ File() (*os.File, error) })
	if !ok {
		closeAll(files)
		return nil, fmt.Errorf("the admin listener cannot be handed on (%T)", admin)
	}
	af, err := tl.File()
	if err != nil {
		closeAll(files)
		return nil, fmt.Errorf("the admin listener: %w", err)
	}
	files[adminAddr] = af
	return &binaryUpgrade{binary: bin, version: ver, files: files}, nil
}

// exec runs the new binary in this process, with this one's arguments and
// environment and the sockets named in upgrade.Env. It returns only when
// that failed.
func (u *binaryUpgrade) exec() error {
	v, err := upgrade.EnvFor(u.files)
	if err != nil {
		return err
	}
	env := append(os.Environ(), upgrade.Env+"="+v)
	return syscall.Exec(u.binary, os.Args, env)
}

// startPath is xlbd's binary as it was started, read before anything can
// move it: the upgrade runs what is at that path then (what the kernel
// reports later follows the old file if it was renamed away).
var startPath, startPathErr = os.Executable()

func selfPath() (string, error) { return startPath, startPathErr }

func closeAll(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}
