// Package maintenance keeps a node's `xlbctl announce off` across xlbd
// restarts (an upgrade during maintenance must not announce again), not
// across a reboot: a file in /run beside the pin path's lock, named for the
// pin path, since bpffs takes no regular files.
package maintenance

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Dir holds the markers (and xlbd's pin-path locks).
const Dir = "/run/xlb"

// File is the file of Dir named for pinPath with suffix: the maintenance
// marker, or xlbd's pin-path lock.
func File(pinPath, suffix string) string {
	return filepath.Join(Dir, strings.ReplaceAll(strings.Trim(filepath.Clean(pinPath), "/"), "/", "_")+suffix)
}

// Path is the marker of the node whose maps are pinned at pinPath.
func Path(pinPath string) string { return File(pinPath, ".announce-off") }

// On says whether the node at pinPath is in maintenance.
func On(pinPath string) bool {
	_, err := os.Stat(Path(pinPath))
	return err == nil
}

// Set records whether the node at pinPath is in maintenance.
func Set(pinPath string, on bool) error {
	if !on {
		if err := os.Remove(Path(pinPath)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(Path(pinPath), []byte("xlbctl announce off\n"), 0o644)
}

// AroundDetach runs detach, which first asks the running xlbd to withdraw
// every VIP (and so marks the node in maintenance), and then forgets that
// mark unless the node was in maintenance already: a detached node's next
// xlbd must announce, or an upgrade by detach leaves it silently dark. It
// also removes the pin path's lock file if a killed xlbd left it.
func AroundDetach(pinPath string, detach func() error) error {
	was := On(pinPath)
	if err := detach(); err != nil {
		return err
	}
	clearStaleLock(pinPath)
	if was {
		return nil
	}
	return Set(pinPath, false)
}
