//go:build linux

// Package loader loads xlb's XDP programs, attaches them to interfaces, pins their maps and links, and adopts pinned objects after a restart.
package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
)

// DefaultPinPath is where maps and links are pinned unless Options.PinPath says otherwise.
const DefaultPinPath = "/sys/fs/bpf/xlb"

// linksDir is the folder under the pin path that holds one pinned XDP link per interface.
const linksDir = "links"

// Log attribute keys, constant so that log queries do not depend on call sites.
const (
	keyInterface = "interface"
	keyIfindex   = "ifindex"
	keyMode      = "mode"
	keyProgramID = "program_id"
	keyPath      = "path"
	keyError     = "error"
)

// Mode says how an XDP program is attached to an interface.
type Mode string

const (
	// ModeAuto tries native (driver) mode and falls back to generic.
	ModeAuto Mode = "auto"
	// ModeNative runs the program in the driver's receive path.
	ModeNative Mode = "native"
	// ModeGeneric runs the program after the kernel allocated an skb; works on every interface.
	ModeGeneric Mode = "generic"
)

// ParseMode parses "auto", "native" or "generic".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeAuto, ModeNative, ModeGeneric:
		return m, nil
	}
	return "", fmt.Errorf("unknown xdp mode %q (want auto, native or generic)", s)
}

func (m Mode) valid() bool {
	return m == ModeAuto || m == ModeNative || m == ModeGeneric
}

// candidates lists the concrete modes to try, in order.
func (m Mode) candidates() []Mode {
	if m == ModeAuto {
		return []Mode{ModeNative, ModeGeneric}
	}
	return []Mode{m}
}

// Options configure Load.
type Options struct {
	// PinPath is the bpffs folder for pinned maps and links (default DefaultPinPath).
	// When the folder is not on a bpffs, one is mounted there (mkdir -p, mount -t bpf).
	PinPath string
	// FlowTableSize is the flow table's entries over all CPUs (the flows map holds
	// buckets of bpf.FlowWays per CPU: see bpf.FlowBuckets); 0 is bpf.FlowEntriesDefault.
	FlowTableSize uint32
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
	// Verbose puts the whole verifier log into load errors instead of its last lines.
	Verbose bool
	// NoPin loads without pinning maps or links, so no bpffs is needed: for program
	// tests (BPF_PROG_TEST_RUN). Nothing survives Close.
	NoPin bool
}

// Dataplane is a loaded load-balancer collection.
type Dataplane struct {
	// Objs holds the program and maps; maps/ writers are built on Objs.Services etc.
	Objs bpf.LbObjects
	// Adopted reports that maps were taken over from pins left by a previous daemon,
	// so their contents (the flow table in particular) were kept.
	Adopted bool

	pinPath string // "" with NoPin
	progID  ebpf.ProgramID
	log     *slog.Logger

	mu     sync.Mutex
	links  map[string]*attachment // by interface name
	probes map[string]link.Link   // health-probe programs at egress, by interface name
	closed bool
}

// verifierTail is how many lines of the verifier log a load error carries without Verbose.
const verifierTail = 20

// Load loads the LB collection.
//
// With pins, every map is pinned by name under PinPath, so a second Load (after a
// daemon restart) reuses the existing maps and their contents; Adopted reports it. A
// pinned map that no longer matches the program (e.g. another flow table size) is an
// error naming the map and what differs: it is never replaced silently, since that
// would drop every established flow.
func Load(opts Options) (_ *Dataplane, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// A no-op on kernels that account BPF memory to the cgroup (5.11+); needed before.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load xlb: remove memlock rlimit: %w", err)
	}
	spec, err := bpf.LoadLb()
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	buckets, err := bpf.SizeFlowTable(spec, opts.FlowTableSize)
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}

	d := &Dataplane{log: log, links: make(map[string]*attachment)}
	var collOpts ebpf.CollectionOptions
	var adopted []string
	if !opts.NoPin {
		d.pinPath = opts.PinPath
		if d.pinPath == "" {
			d.pinPath = DefaultPinPath
		}
		// Plain assignments below: the deferred undos test the named result err.
		var undoFS func()
		undoFS, err = ensureBPFFS(d.pinPath, log)
		if err != nil {
			return nil, fmt.Errorf("load xlb: %w", err)
		}
		defer func() {
			if err != nil {
				undoFS()
			}
		}()
		// Check the pins ourselves before loading: the error can then say which map
		// differs and how to fix it, and we know which pins this Load creates (to remove
		// them again if loading fails).
		adopted, err = checkPinnedMaps(spec, d.pinPath)
		if err != nil {
			return nil, fmt.Errorf("load xlb: %w", err)
		}
		for _, ms := range spec.Maps {
			ms.Pinning = ebpf.PinByName
		}
		collOpts.Maps.PinPath = d.pinPath
		present := presentPins(spec, d.pinPath)
		defer func() {
			if err != nil {
				removeNewPins(spec, d.pinPath, present)
			}
		}()
	}

	if err := spec.LoadAndAssign(&d.Objs, &collOpts); err != nil {
		return nil, fmt.Errorf("load xlb: %w", withVerifierLog(err, opts.Verbose))
	}
	if info, ierr := d.Objs.XlbLb.Info(); ierr == nil {
		d.progID, _ = info.ID()
	}
	d.Adopted = len(adopted) > 0

	if d.pinPath == "" {
		log.Info("loaded xdp collection without pins", keyProgramID, d.progID)
		return d, nil
	}
	created := make([]string, 0, len(spec.Maps))
	for name := range spec.Maps {
		if !slices.Contains(adopted, name) {
			created = append(created, name)
		}
	}
	slices.Sort(created)
	log.Info("loaded xdp collection", keyPath, d.pinPath, keyProgramID, d.progID,
		"adopted_maps", adopted, "created_maps", created,
		"flow_table_size", flowEntries(buckets), "flow_buckets_per_cpu", buckets)
	return d, nil
}

// flowEntries is the flow table's entries over all CPUs, from its buckets per CPU.
func flowEntries(buckets uint32) uint64 {
	cpus, _ := ebpf.PossibleCPU()
	return bpf.FlowEntries(buckets, cpus)
}

// sysBPF is the conventional bpffs mount point, an empty folder of sysfs.
const sysBPF = "/sys/fs/bpf"

// privateMounts says whether this process's mount namespace is not
// init's: a mount made here ends with the namespace's last process.
func privateMounts() bool {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	host, err2 := os.Readlink("/proc/1/ns/mnt")
	return err1 == nil && err2 == nil && self != host
}

// ensureBPFFS makes sure path exists on a bpffs, mounting one there if needed. The
// returned function undoes what ensureBPFFS did (unmounts, removes created folders).
func ensureBPFFS(path string, log *slog.Logger) (undo func(), err error) {
	path = filepath.Clean(path)
	var undos []func()
	undo = func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
	mount := func(dir string) error {
		// mode=0700: pinned maps steer traffic; only root should open them.
		if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", dir, err)
		}
		undos = append(undos, func() { _ = unix.Unmount(dir, 0) })
		log.Info("mounted bpffs", keyPath, dir)
		if privateMounts() {
			log.Warn("bpffs mounted in a mount namespace of xlbd's own (ip netns exec makes one): "+
				"it ends with xlbd, and with it the pins and the XDP program, so nothing stays for the next xlbd to adopt; "+
				"mount bpffs where xdp.pin_path lies in the host's namespace first", keyPath, dir)
		}
		return nil
	}

	err = mkdirAll(path, &undos)
	if err != nil && strings.HasPrefix(path, sysBPF+"/") && !isBPFFS(sysBPF) {
		// Where nothing (such as systemd) mounted bpffs at /sys/fs/bpf, it is a folder
		// of sysfs, in which no folder can be made: mount bpffs there first, as
		// iproute2 does.
		if err := mount(sysBPF); err != nil {
			return nil, err
		}
		err = mkdirAll(path, &undos)
	}
	if err != nil {
		undo()
		return nil, fmt.Errorf("create pin folder: %w", err)
	}
	if !isBPFFS(path) {
		if err := mount(path); err != nil {
			undo()
			return nil, err
		}
	}
	return undo, nil
}

// mkdirAll is os.MkdirAll that records how to remove the folders it made.
func mkdirAll(path string, undos *[]func()) error {
	var missing []string
	for p := path; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		missing = append(missing, p)
	}
	// os.Remove, not RemoveAll: never delete anything but the empty folders made here
	// (also those made before MkdirAll failed).
	for i := len(missing) - 1; i >= 0; i-- {
		dir := missing[i]
		*undos = append(*undos, func() { _ = os.Remove(dir) })
	}
	return os.MkdirAll(path, 0o700)
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// checkPinnedMaps returns the names of the spec's maps already pinned under dir, or an
// error if one of them cannot be reused.
func checkPinnedMaps(spec *ebpf.CollectionSpec, dir string) ([]string, error) {
	var found []string
	for _, name := range sortedKeys(spec.Maps) {
		ms := spec.Maps[name]
		path := filepath.Join(dir, ms.Name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		err = ms.Compatible(m)
		pinnedEntries := m.MaxEntries()
		sameShape := m.Type() == ms.Type && m.ValueSize() == ms.ValueSize
		m.Close()
		if err != nil {
			hint := `it was made by another xlb version or configuration: run "xlbctl detach" to remove the pinned objects (this drops established flows) and start again`
			// (A flows map of another type or bucket shape is another xlb version's.)
			if name == bpf.LbMapFlows && sameShape && pinnedEntries != ms.MaxEntries {
				// The map counts buckets over all CPUs; people count entries.
				cpus, _ := ebpf.PossibleCPU()
				pb, cb := pinnedEntries/uint32(max(cpus, 1)), ms.MaxEntries/uint32(max(cpus, 1))
				pinned, configured := flowEntries(pb), flowEntries(cb)
				hint = fmt.Sprintf(`the flow table size changed (pinned %d entries, configured %d; %d and %d buckets of %d per CPU): set xdp.flow_table_size back to %d to keep established flows, or run "xlbctl detach" to remove the pinned objects (this drops established flows) and start again`,
					pinned, configured, pb, cb, bpf.FlowWays, pinned)
			}
			return nil, fmt.Errorf("pinned map %q at %s does not match the program (%w); %s", name, path, err, hint)
		}
		found = append(found, name)
	}
	return found, nil
}

// presentPins lists the files already present under the spec's map names.
func presentPins(spec *ebpf.CollectionSpec, dir string) []string {
	var present []string
	for _, ms := range spec.Maps {
		if _, err := os.Lstat(filepath.Join(dir, ms.Name)); err == nil {
			present = append(present, ms.Name)
		}
	}
	return present
}

// removeNewPins removes the pins a failed Load created, and nothing that was there before.
func removeNewPins(spec *ebpf.CollectionSpec, dir string, present []string) {
	for _, ms := range spec.Maps {
		if !slices.Contains(present, ms.Name) {
			_ = os.Remove(filepath.Join(dir, ms.Name))
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// verifierLogError replaces the text of an error carrying a verifier log with a
// bounded (or, when verbose, complete) rendering of that log.
type verifierLogError struct {
	err  error
	text string
}

func (e *verifierLogError) Error() string { return e.text }
func (e *verifierLogError) Unwrap() error { return e.err }

func withVerifierLog(err error, verbose bool) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return err
	}
	// The verifier names the failing instruction in its last lines; the whole log of a
	// large program runs to megabytes, too much for a log line unless asked for.
	if verbose {
		return &verifierLogError{err: err, text: fmt.Sprintf("%+v", ve)}
	}
	return &verifierLogError{err: err, text: fmt.Sprintf("%-*v\n\t(full verifier log in verbose mode)", verifierTail, ve)}
}

// Close releases the process's file descriptors. Pinned maps and links stay, so
// traffic keeps flowing after the process exits; without pins (NoPin) the programs
// detach.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, name := range sortedKeys(d.probes) {
		if err := d.probes[name].Close(); err != nil {
			errs = append(errs, fmt.Errorf("close health-probe link of %s: %w", name, err))
		}
	}
	d.probes = nil
	for _, name := range sortedKeys(d.links) {
		if err := d.links[name].link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close xdp link of %s: %w", name, err))
		}
	}
	d.links = nil
	if err := d.Objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close xdp collection: %w", err))
	}
	return errors.Join(errs...)
}

// repinMaps pins again the maps whose pins were removed while this
// Dataplane held them (xlbctl detach with xlbd running), so that a link
// attached again comes with maps the next xlbd adopts and xlbctl maps
// reads; under d.mu.
func (d *Dataplane) repinMaps() error {
	if d.pinPath == "" {
		return nil
	}
	if err := os.MkdirAll(d.pinPath, 0o700); err != nil {
		return fmt.Errorf("re-pin maps: %w", err)
	}
	v := reflect.ValueOf(&d.Objs.LbMaps).Elem()
	for i := range v.NumField() {
		m, ok := v.Field(i).Interface().(*ebpf.Map)
		name := v.Type().Field(i).Tag.Get("ebpf")
		if !ok || m == nil || name == "" {
			continue
		}
		path := filepath.Join(d.pinPath, name)
		if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
			continue
		}
		// The handle still believes in its old pin, and pinning at the path
		// it believes in is a no-op: forget it first.
		if err := m.Unpin(); err != nil {
			return fmt.Errorf("re-pin map %s: %w", name, err)
		}
		if err := m.Pin(path); err != nil {
			return fmt.Errorf("re-pin map %s: %w", name, err)
		}
	}
	return nil
}

// removeProbeNeighbours deletes the neighbour entries xlbd made on an
// interface for health probes through the forwarding path: permanent ones
// that give an address the interface's own MAC (a VIP the kernel would
// otherwise ask ARP or NDP for). Left behind, they would send this host's
// own traffic to those addresses nowhere once xlb is gone. An interface
// that is gone took its entries with it.
func removeProbeNeighbours(ifname string) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil
	}
	mac := l.Attrs().HardwareAddr
	neighs, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("neighbour entries of %s: %w", ifname, err)
	}
	var errs []error
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 || len(mac) == 0 || !bytes.Equal(n.HardwareAddr, mac) {
			continue
		}
		if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove the probe neighbour entry %s on %s: %w", n.IP, ifname, err))
		}
	}
	return errors.Join(errs...)
}

// Unpin removes every pinned link and map under pinPath, as `xlbctl detach` does: the
// program detaches once no process holds the links any more. The probe neighbour
// entries xlbd made on those links' interfaces go too (removeProbeNeighbours). Only files xlb knows
// are removed (links/*, the LB collection's map names), then the folders if empty. A
// missing pinPath is not an error. A bpffs mounted at pinPath stays mounted.
func Unpin(pinPath string) error {
	if _, err := os.Stat(pinPath); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	spec, err := bpf.LoadLb()
	if err != nil {
		return fmt.Errorf("unpin %s: %w", pinPath, err)
	}
	var errs []error
	linkDir := filepath.Join(pinPath, linksDir)
	entries, err := os.ReadDir(linkDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unpin links: %w", err))
	}
	for _, e := range entries {
		path := filepath.Join(linkDir, e.Name())
		if err := removeProbeNeighbours(e.Name()); err != nil {
			errs = append(errs, err)
		}
		// A running xlbd holds its links open: removing the pin alone would
		// leave the program attached until it exits. Detaching the link
		// takes the program off the interface at once, whoever holds it.
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			if err := l.Detach(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("detach link %s: %w", e.Name(), err))
			}
			l.Close()
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link: %w", err))
		}
	}
	for _, ms := range spec.Maps {
		if err := os.Remove(filepath.Join(pinPath, ms.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin map: %w", err))
		}
	}
	for _, dir := range []string{linkDir, pinPath} {
		// A folder with foreign files stays (ENOTEMPTY), and so does a mount point (EBUSY).
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) &&
			!errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("unpin: %w", err))
		}
	}
	return errors.Join(errs...)
}
