//go:build linux

package bench

// The Katran comparison: Katran's balancer XDP program, built from its public
// source at a pinned commit (not vendored), configured like the bench's xlb
// service and timed through the same driver in the same rounds.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
)

const (
	katranRepo = "https://github.com/facebookincubator/katran"
	// katranCommit is the Katran source the bench builds ("Updating hashes",
	// 2026-08-22). XLB_BENCH_KATRAN=DIR builds a checkout of one's own instead.
	katranCommit = "19f08fec82fb7b5fb14d935a80057bdc0897c8de"
	katranMain   = "katran/lib/bpf/balancer.bpf.c"
	katranConsts = "katran/lib/bpf/balancer_consts.h"
)

// katranFlags are Katran's own (katran/lib/Makefile-bpf, which
// build_bpf_modules_opensource.sh runs with no extra defines): clang emits
// host IR (glibc's headers need a host target) that llc turns into BPF.
// One define more: MAX_CONN_RATE, Katran's cap on new connections per second
// per CPU (125,000) past which it stops inserting into its LRU, is lifted, as
// the bench runs xlb without its flow_insert_limit.
var katranFlags = []string{"-D__KERNEL__", "-DDEBUG", "-DMAX_CONN_RATE=0xffffffffffffffff",
	"-Wno-unused-value", "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types", "-O2", "-g"}

// Katran's map keys and values (balancer_structs.h); load checks their sizes
// against the object's maps. Ports and addresses are in network byte order.
type (
	katranVIP struct { // struct vip_definition
		Addr  [16]byte
		Port  [2]byte
		Proto uint8
		_     uint8
	}
	katranVIPMeta struct{ Flags, VIPNum uint32 } // struct vip_meta
	katranReal    struct {                       // struct real_definition
		Addr  [16]byte
		Flags uint8
		_     [3]byte
	}
	katranCtl     struct{ Value uint64 } // struct ctl_value: the MAC in its first 6 bytes
	katranFlowKey struct {               // struct flow_key
		Src, Dst     [16]byte
		SPort, DPort [2]byte
		Proto        uint8
		_            [3]byte
	}
	katranRealPos struct { // struct real_pos_lru
		Pos   uint32
		_     uint32
		ATime uint64
	}
	katranLBStats struct{ V1, V2 uint64 } // struct lb_stats
)

// katranBench is Katran's balancer loaded and configured for the bench.
type katranBench struct {
	prog  *ebpf.Program
	stats *ebpf.Map
	lru0  *ebpf.Map // lru_mapping[0]: the connection table of CPU 0, where the bench runs
	// Indexes into stats of the counters the rows check (MAX_VIPS + the
	// offsets in balancer_consts.h, read from the source built).
	lruCntrs, lruMiss, fallbackLRU, xdpTX uint32
}

// loadKatran builds and loads Katran's balancer with the bench's service
// (1 VIP, env's 9 backends). It returns nil and the reason when Katran's
// source or the tools to build it are not to be had; it fails t when Katran
// was found but does not build, load or forward.
func loadKatran(t testing.TB, env *lbtest.Env) (*katranBench, string) {
	src, origin, skip := katranSource(t)
	if skip != "" {
		return nil, "katran: skipped: " + skip
	}
	obj := filepath.Join(t.TempDir(), "balancer.bpf.o")
	if err := buildKatran(src, obj); err != nil {
		t.Fatalf("katran (%s): %v", origin, err)
	}
	consts, err := readDefines(filepath.Join(src, katranConsts))
	if err != nil {
		t.Fatalf("katran: %v", err)
	}
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		t.Fatalf("katran: %v", err)
	}
	if err := checkKatranSizes(spec); err != nil {
		t.Fatalf("katran: %v", err)
	}
	// stats holds MAX_VIPS per-VIP counters then the global ones; ch_rings
	// MAX_VIPS rings of RING_SIZE: the compiled-in sizes, from the object.
	maxVIPs := spec.Maps["stats"].MaxEntries / 2
	ringSize := spec.Maps["ch_rings"].MaxEntries / maxVIPs
	k := &katranBench{}
	for _, c := range []struct {
		name string
		idx  *uint32
	}{{"LRU_CNTRS", &k.lruCntrs}, {"LRU_MISS_CNTR", &k.lruMiss}, {"FALLBACK_LRU_CNTR", &k.fallbackLRU}, {"XDP_TX_CNTR", &k.xdpTX}} {
		v, ok := consts[c.name]
		if !ok {
			t.Fatalf("katran: %s: no #define %s", katranConsts, c.name)
		}
		*c.idx = maxVIPs + uint32(v)
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("katran: load: %+v", ve)
		}
		t.Fatalf("katran: load: %v", err)
	}
	t.Cleanup(func() { coll.Close() })
	k.prog, k.stats = coll.Programs["balancer_ingress"], coll.Maps["stats"]
	if k.prog == nil {
		t.Fatalf("katran: %s has no program balancer_ingress", katranMain)
	}

	// The connection table as Katran's KatranLb::initLrus makes it: one LRU
	// hash per forwarding CPU (here every possible CPU) in lru_mapping, of
	// the total size over the CPUs, without flags (a common LRU list). The
	// total is xlb's flow table's.
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := env.FlowEntries / uint32(cpus)
	outer := coll.Maps["lru_mapping"]
	// (lru_mapping holds MAX_SUPPORTED_CPUS; CPUs past it take fallback_cache.)
	for cpu := 0; cpu < min(cpus, int(outer.MaxEntries())); cpu++ {
		is := spec.Maps["lru_mapping"].InnerMap.Copy()
		is.Name, is.MaxEntries, is.Flags = fmt.Sprintf("katran_lru%d", cpu), perCPU, 0
		inner, err := ebpf.NewMap(is)
		if err != nil {
			t.Fatalf("katran: lru for cpu %d: %v", cpu, err)
		}
		err = outer.Put(uint32(cpu), inner)
		if cpu == 0 {
			k.lru0 = inner
			t.Cleanup(func() { inner.Close() })
		} else {
			inner.Close() // lru_mapping holds it
		}
		if err != nil {
			t.Fatalf("katran: lru_mapping[%d]: %v", cpu, err)
		}
	}

	// The service: VIP 10.0.0.100:80/tcp as vip_num 0, reals 1..9 (Katran's
	// real ids start at 1: 0 marks an empty ring slot), every slot of the
	// ring filled by xlb's Maglev builder, and the MAC every packet is sent
	// to (Katran does no FIB lookup: all goes to the default router).
	vip := katranVIP{Port: [2]byte{0, 80}, Proto: 6}
	copy(vip.Addr[:], netip.MustParseAddr("10.0.0.100").AsSlice())
	if err := coll.Maps["vip_map"].Put(&vip, &katranVIPMeta{}); err != nil {
		t.Fatalf("katran: vip_map: %v", err)
	}
	var mb []maps.MaglevBackend
	for i := 1; i <= 9; i++ {
		var r katranReal
		copy(r.Addr[:], lbtest.Backend4(i).AsSlice())
		if err := coll.Maps["reals"].Put(uint32(i), &r); err != nil {
			t.Fatalf("katran: reals: %v", err)
		}
		mb = append(mb, maps.MaglevBackend{Key: lbtest.Backend4(i).String(), ID: uint32(i), Weight: 1})
	}
	ring, err := maps.BuildMaglev(mb, ringSize)
	if err != nil {
		t.Fatalf("katran: ring of %d: %v", ringSize, err)
	}
	keys := make([]uint32, len(ring))
	for i, id := range ring {
		if id == 0 {
			t.Fatalf("katran: ring slot %d empty", i)
		}
		keys[i] = uint32(i) // vip_num 0: slots 0..RING_SIZE-1
	}
	if _, err := coll.Maps["ch_rings"].BatchUpdate(keys, ring, nil); err != nil {
		t.Fatalf("katran: ch_rings: %v", err)
	}
	var ctl katranCtl
	mac := make([]byte, 8)
	copy(mac, lbtest.GWMAC)
	ctl.Value = binary.NativeEndian.Uint64(mac)
	if err := coll.Maps["ctl_array"].Put(uint32(0), &ctl); err != nil {
		t.Fatalf("katran: ctl_array: %v", err)
	}

	if err := k.checkForward(t, env); err != nil {
		t.Fatalf("katran: %v", err)
	}
	return k, fmt.Sprintf("katran: %s, built by clang+llc with Katran's flags and -DMAX_CONN_RATE=2^64-1 (its new-connection cap off, as xlb's is); "+
		"1 VIP 10.0.0.100:80/tcp, 9 reals, CH ring of %d slots all filled; connection table lru_mapping: %d per-CPU LRU hashes of %d entries "+
		"(Katran's layout, common LRU list; fallback_cache unused, checked); ipip to the gateway MAC in ctl_array[0]",
		origin, ringSize, cpus, perCPU)
}

// checkForward runs one SYN to the VIP through Katran and checks what comes
// out: the packet whole inside an IPIP header to one of the backends, sent to
// the gateway's MAC.
func (k *katranBench) checkForward(t testing.TB, env *lbtest.Env) error {
	in := pkt.MustBuild(t, pkt.Spec{Src: netip.MustParseAddr("192.0.2.99"), Dst: netip.MustParseAddr("10.0.0.100"),
		SrcPort: 40000, DstPort: 80, Proto: "tcp", TCPFlags: "S"})
	ret, out := env.Run(t, k.prog, in)
	if ret != xdpTX {
		return fmt.Errorf("a SYN to the VIP: verdict %d, want XDP_TX", ret)
	}
	const eth, ip4 = 14, 20
	if len(out) != len(in)+ip4 {
		return fmt.Errorf("a SYN to the VIP: %d bytes out of %d, want an IPIP header more", len(out), len(in))
	}
	dst, _ := netip.AddrFromSlice(out[eth+16 : eth+20])
	switch {
	case !bytes.Equal(out[:6], lbtest.GWMAC):
		return fmt.Errorf("a SYN to the VIP: sent to MAC %x, want the gateway's %s", out[:6], lbtest.GWMAC)
	case binary.BigEndian.Uint16(out[12:14]) != 0x0800 || out[eth]>>4 != 4 || out[eth+9] != 4:
		return fmt.Errorf("a SYN to the VIP: no IPv4-in-IPv4 out: % x", out[:eth+ip4])
	case !bytes.Equal(out[eth+ip4:], in[eth:]):
		return fmt.Errorf("a SYN to the VIP: the inner packet changed")
	}
	for i := 1; i <= 9; i++ {
		if dst == lbtest.Backend4(i) {
			return nil
		}
	}
	return fmt.Errorf("a SYN to the VIP: sent to %s, no backend", dst)
}

// katranSource finds Katran's source: XLB_BENCH_KATRAN, or a clone of the
// pinned commit in the user's cache. skip says why there is none.
func katranSource(t testing.TB) (dir, origin, skip string) {
	for _, tool := range []string{"clang", "llc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", "", tool + " not found (apt-get install clang llvm)"
		}
	}
	if dir := os.Getenv("XLB_BENCH_KATRAN"); dir != "" {
		// The balancer includes katran/lib/linux_includes as well.
		for _, f := range []string{katranMain, "katran/lib/linux_includes/bpf.h"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Fatalf("XLB_BENCH_KATRAN=%s: no Katran source (katran/lib/bpf and katran/lib/linux_includes): %v", dir, err)
			}
		}
		origin = "source " + dir + " (XLB_BENCH_KATRAN)"
		head := "unknown (not a git checkout)"
		if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
			if head, err = git(dir, "rev-parse", "HEAD"); err != nil {
				head = "unknown"
			}
		}
		if head == katranCommit {
			return dir, origin + " at the pinned commit " + katranCommit[:12], ""
		}
		return dir, fmt.Sprintf("%s at commit %s (pinned: %s)", origin, head, katranCommit[:12]), ""
	}
	if _, err := exec.LookPath("git"); err != nil {
		return "", "", "git not found, and no XLB_BENCH_KATRAN"
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir = filepath.Join(cache, "xlb-bench-katran")
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		// Cloned beside, then renamed: an interrupted clone leaves no
		// half a checkout that a later run would take for a whole one.
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		if _, err := git("", "clone", "--quiet", "--filter=blob:none", "--no-checkout", katranRepo, tmp); err != nil {
			os.RemoveAll(tmp)
			return "", "", fmt.Sprintf("%v (XLB_BENCH_KATRAN=DIR names a checkout to build instead)", err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return "", "", err.Error()
		}
	}
	if _, err := git(dir, "cat-file", "-e", katranCommit+"^{commit}"); err != nil {
		if _, err := git(dir, "fetch", "--quiet", "--filter=blob:none", "origin", katranCommit); err != nil {
			return "", "", fmt.Sprintf("fetch %s into %s: %v", katranCommit, dir, err)
		}
	}
	if _, err := git(dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", katranCommit); err != nil {
		return "", "", fmt.Sprintf("check out %s in %s: %v", katranCommit, dir, err)
	}
	return dir, "clone " + dir + " of " + katranRepo + " at the pinned commit " + katranCommit[:12], ""
}

// git runs git in dir (none: the current one) and returns its trimmed output.
func git(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		sub := args[0]
		if dir != "" {
			sub = args[2]
		}
		return "", fmt.Errorf("git %s: %w: %s", sub, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// buildKatran compiles Katran's balancer in src into obj, the way Katran's
// Makefile-bpf does.
func buildKatran(src, obj string) error {
	ir := strings.TrimSuffix(obj, ".o") + ".bc"
	args := append([]string{"-I" + src, "-I" + filepath.Join(src, "katran/lib/linux_includes")}, katranFlags...)
	args = append(args, "-emit-llvm", "-c", filepath.Join(src, katranMain), "-o", ir)
	for _, c := range [][]string{append([]string{"clang"}, args...), {"llc", "-march=bpf", "-filetype=obj", "-o", obj, ir}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("build: %s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// readDefines reads the plain numeric #defines of a C header.
func readDefines(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	re := regexp.MustCompile(`^#define\s+(\w+)\s+(\d+)\s*(//.*)?$`)
	defs := make(map[string]uint64)
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := re.FindStringSubmatch(strings.TrimSpace(s.Text())); m != nil {
			v, _ := strconv.ParseUint(m[2], 10, 64)
			defs[m[1]] = v
		}
	}
	return defs, s.Err()
}

// checkKatranSizes fails when the Go mirrors of Katran's structs have drifted
// from the maps of the object built.
func checkKatranSizes(spec *ebpf.CollectionSpec) error {
	for _, m := range []string{"vip_map", "reals", "ch_rings", "ctl_array", "lru_mapping", "stats"} {
		if spec.Maps[m] == nil {
			return fmt.Errorf("%s has no map %s", katranMain, m)
		}
	}
	if spec.Maps["lru_mapping"].InnerMap == nil {
		return fmt.Errorf("map lru_mapping: no inner map")
	}
	for _, c := range []struct {
		m, what    string
		size, want uint32
	}{
		{"vip_map", "key", spec.Maps["vip_map"].KeySize, uint32(binary.Size(katranVIP{}))},
		{"vip_map", "value", spec.Maps["vip_map"].ValueSize, uint32(binary.Size(katranVIPMeta{}))},
		{"reals", "value", spec.Maps["reals"].ValueSize, uint32(binary.Size(katranReal{}))},
		{"ctl_array", "value", spec.Maps["ctl_array"].ValueSize, uint32(binary.Size(katranCtl{}))},
		{"lru_mapping", "inner key", spec.Maps["lru_mapping"].InnerMap.KeySize, uint32(binary.Size(katranFlowKey{}))},
		{"lru_mapping", "inner value", spec.Maps["lru_mapping"].InnerMap.ValueSize, uint32(binary.Size(katranRealPos{}))},
		{"stats", "value", spec.Maps["stats"].ValueSize, uint32(binary.Size(katranLBStats{}))},
	} {
		if c.size != c.want {
			return fmt.Errorf("map %s: %s of %d bytes, the bench's mirror has %d", c.m, c.what, c.size, c.want)
		}
	}
	return nil
}

// stat is one of Katran's global counters summed over the CPUs.
func (k *katranBench) stat(idx uint32) (katranLBStats, error) {
	var per []katranLBStats
	if err := k.stats.Lookup(idx, &per); err != nil {
		return katranLBStats{}, fmt.Errorf("katran stats[%d]: %w", idx, err)
	}
	var s katranLBStats
	for _, p := range per {
		s.V1 += p.V1
		s.V2 += p.V2
	}
	return s, nil
}

// katranCounters are the counters the rows check, at one moment.
type katranCounters struct{ vipPkts, lruMisses, synMiss, nonSynMiss, fallback, tx uint64 }

func (c katranCounters) minus(b katranCounters) katranCounters {
	return katranCounters{c.vipPkts - b.vipPkts, c.lruMisses - b.lruMisses, c.synMiss - b.synMiss,
		c.nonSynMiss - b.nonSynMiss, c.fallback - b.fallback, c.tx - b.tx}
}

func (k *katranBench) counters() (katranCounters, error) {
	var c katranCounters
	for _, s := range []struct {
		idx    uint32
		v1, v2 *uint64
	}{{k.lruCntrs, &c.vipPkts, &c.lruMisses}, {k.lruMiss, &c.synMiss, &c.nonSynMiss}, {k.fallbackLRU, &c.fallback, nil}, {k.xdpTX, &c.tx, nil}} {
		v, err := k.stat(s.idx)
		if err != nil {
			return c, err
		}
		*s.v1 = v.V1
		if s.v2 != nil {
			*s.v2 = v.V2
		}
	}
	return c, nil
}

// variants are Katran's rows. Each checks with Katran's own counters that
// every timed run took the path it names: answered XDP_TX through CPU 0's
// LRU (not fallback_cache), and either found its flow there (no LRU miss)
// or missed as a new TCP flow and was inserted.
func (k *katranBench) variants(ack, syn []byte) []variant {
	verify := func(newFlows bool) func() func(n, seq uint32) error {
		return func() func(n, seq uint32) error {
			before, err := k.counters()
			return func(n, seq uint32) error {
				if err != nil {
					return err
				}
				after, err := k.counters()
				if err != nil {
					return err
				}
				// A run interrupted by a signal is run again whole (timeRun):
				// the runs counted are n or more, every one of them forwarded
				// to the VIP's backends and, for new flows, an LRU miss of a SYN.
				got := after.minus(before)
				want := katranCounters{vipPkts: got.tx, tx: got.tx}
				if newFlows {
					want.lruMisses, want.synMiss = got.tx, got.tx
				}
				if got.tx < uint64(n) || got != want {
					return fmt.Errorf("katran counters over %d runs: %+v, want %+v (tx at least %d)", n, got, want, n)
				}
				if !newFlows {
					return nil
				}
				// The last run's flow (the driver writes seq into the source
				// port and address) must be in the table: inserted, not
				// skipped.
				last := seq + n - 1
				fk := katranFlowKey{DPort: [2]byte{0, 80}, Proto: 6}
				copy(fk.Src[:], syn[14+12:14+16])
				binary.BigEndian.PutUint16(fk.Src[2:], uint16(last>>15))
				copy(fk.Dst[:], syn[14+16:14+20])
				binary.BigEndian.PutUint16(fk.SPort[:], uint16(1024+(last&0x7fff)))
				var pos katranRealPos
				if err := k.lru0.Lookup(&fk, &pos); err != nil {
					return fmt.Errorf("katran: the last new flow is not in CPU 0's LRU: %w", err)
				}
				return nil
			}
		}
	}
	return []variant{
		{name: "katran established flow", prog: k.prog, frame: ack, prime: syn, primer: k.prog, verify: verify(false)},
		{name: "katran established, 65536 flows in turn", prog: k.prog, frame: ack, prime: syn, vary: true, cycle: 1 << 16, seqOff: 1 << 29, verify: verify(false)},
		{name: "katran new flow (SYN)", prog: k.prog, frame: syn, vary: true, verify: verify(true)},
	}
}
