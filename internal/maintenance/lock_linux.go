//go:build linux

package maintenance

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock takes pinPath's lock, which refuses a second xlbd on the same pin
// path (two would fight over the same maps), and returns its release, which
// removes the file: pin paths are often per test or per instance, and /run
// would collect one file for each.
//
// Removing a lock file opens a race: another process may have opened the
// file just before the release removed it and lock it just after, holding
// a lock on a file the path no longer names while a third creates a new
// one. So a lock counts only if the path still names the file it is on.
func Lock(pinPath string) (func(), error) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock pin path: %w", err)
	}
	path := File(pinPath, ".lock")
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock pin path: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			owner, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("another xlbd (pid %s) already runs on pin path %s (lock %s)", strings.TrimSpace(string(owner)), pinPath, path)
			}
			return nil, fmt.Errorf("lock pin path %s: %w", pinPath, err)
		}
		if !samePath(f, path) {
			f.Close()
			continue
		}
		f.Truncate(0)
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		// Removed while still locked: whoever opened it meanwhile finds,
		// once it has the lock, that the path names another file or none.
		return func() { os.Remove(path); f.Close() }, nil
	}
}

// samePath says whether path names the file f has open.
func samePath(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// clearStaleLock removes pinPath's lock file when no xlbd holds it: one
// that was killed leaves its file behind.
func clearStaleLock(pinPath string) {
	if _, err := os.Stat(File(pinPath, ".lock")); err != nil {
		return
	}
	if release, err := Lock(pinPath); err == nil {
		release()
	}
}
