package main

import "io"

// Hooks for the subcommands that work on the pinned BPF objects rather than
// the admin API. A Linux-only file sets them; where they stay nil, "maps"
// and "detach" say they are not available in this build.
var (
	// pinnedMaps prints the maps pinned under pinPath in readable form, or
	// as JSON when asJSON.
	pinnedMaps func(pinPath string, w io.Writer, asJSON bool) error

	// detachAll removes the XDP attachments and every pin under pinPath.
	detachAll func(pinPath string) error
)
