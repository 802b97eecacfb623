//go:build linux

// Package bench measures xlb's data plane against floor programs in one run.
// Run it with `make bench`.
package bench

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

const xdpTX = 3

// progRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr. The raw call
// is used because it reports the kernel's own per-run duration (which
// excludes time the test loop yielded the CPU) and takes a context, which
// sets the ingress interface the FIB lookup needs.
type progRunAttr struct {
	progFd, retval, dataSizeIn, dataSizeOut uint32
	dataIn, dataOut                         uint64
	repeat, duration                        uint32
	ctxSizeIn, ctxSizeOut                   uint32
	ctxIn, ctxOut                           uint64
	flags, cpu, batchSize, _                uint32
}

type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// timeRun runs prog `repeat` times on frame and returns the verdict and the
// kernel-measured nanoseconds per run.
func timeRun(prog *ebpf.Program, frame []byte, ifindex int, repeat uint32) (uint32, uint32, error) {
	out := make([]byte, len(frame)+512)
	ctx := xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}
	attr := progRunAttr{
		progFd:      uint32(prog.FD()),
		dataSizeIn:  uint32(len(frame)),
		dataSizeOut: uint32(len(out)),
		dataIn:      uint64(uintptr(unsafe.Pointer(&frame[0]))),
		dataOut:     uint64(uintptr(unsafe.Pointer(&out[0]))),
		repeat:      repeat,
		ctxSizeIn:   uint32(unsafe.Sizeof(ctx)),
		ctxIn:       uint64(uintptr(unsafe.Pointer(&ctx))),
	}
	// A signal (the Go runtime's own, say) interrupts a long run with EINTR:
	// run it again whole.
	var errno unix.Errno
	for {
		_, _, errno = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno != unix.EINTR {
			break
		}
	}
	runtime.KeepAlive(frame)
	runtime.KeepAlive(out)
	runtime.KeepAlive(&ctx)
	if errno != 0 {
		return 0, 0, errno
	}
	return attr.retval, attr.duration, nil
}

type variant struct {
	name   string
	prog   *ebpf.Program
	frame  []byte
	prime  []byte        // run once right before the timed runs, on the same CPU (the SYN of an established flow)
	primer *ebpf.Program // what runs prime (default: the balancer)
	env    *lbtest.Env   // whose counters check and newFlw read (default: the bench's)
	vary   bool          // a new flow on every run
	check  string        // lb stat that must grow by exactly repeat ("" for floors)
	newFlw bool          // service new_flows must grow by repeat too
	capped bool          // run with flow_insert_limit 1/s: new flows are forwarded and not remembered
	seqOff uint32        // with vary: flows of their own, not the other varying rows' (that run first)
	cycle  uint32        // with vary and prime: runs cycle over this many established flows (a power of two), primed by their SYNs
	// verify, called right before the timed runs, returns what checks them
	// (n runs from flow seq on) against counters other than xlb's.
	verify func() func(n, seq uint32) error
}

// BenchmarkXDP times every variant in alternation, rounds times, and prints
// a table; run it once (-benchtime 1x): it sizes its own loops.
func BenchmarkXDP(t *testing.B) {
	privileged.Require(t)
	// XLB_BENCH_FLOWS sizes the flow table (default: the compiled-in size,
	// xdp.flow_table_size's default), to tell cache misses from instructions.
	var flows uint32
	if s := os.Getenv("XLB_BENCH_FLOWS"); s != "" {
		fmt.Sscan(s, &flows)
	}
	// XLB_BENCH_IN_ORDER=1 times the "flows in turn" rows in the order their
	// SYNs came, as the bench did before: it shows what a table whose
	// entries lie in arrival order gains from the prefetcher.
	inOrder := os.Getenv("XLB_BENCH_IN_ORDER") == "1"
	env := lbtest.NewWithFlowTable(t, flows)
	envs := []*lbtest.Env{env}
	// XLB_BENCH_BASELINE names another build of the balancer (say the
	// lb_bpfel.o of the commit before a change): its rows are timed in the
	// same rounds, for a before/after that shares the machine's state.
	var base *lbtest.Env
	if path := os.Getenv("XLB_BENCH_BASELINE"); path != "" {
		spec, err := ebpf.LoadCollectionSpec(path)
		if err != nil {
			t.Fatalf("XLB_BENCH_BASELINE: %v", err)
		}
		base = env.Sibling(t, spec)
		envs = append(envs, base)
	}

	vip := netip.MustParseAddr("10.0.0.100")
	client := netip.MustParseAddr("192.0.2.10")
	for _, s := range []struct {
		id  uint32
		vip netip.Addr
		dsr bool
	}{{1, vip, false}, {2, netip.MustParseAddr("10.0.0.101"), true}} {
		var bes []netip.Addr
		for i := 1; i <= 9; i++ {
			bes = append(bes, lbtest.Backend4(i))
		}
		for _, e := range envs {
			e.AddService(t, lbtest.ServiceSpec{
				Service:  maps.Service{ServiceKey: maps.ServiceKey{VIP: s.vip, Port: 80, Proto: maps.ProtoTCP}, ID: s.id, DSR: s.dsr},
				Backends: bes, FirstID: s.id * 100,
			})
		}
	}

	var bo bpf.BenchObjects
	bspec, err := bpf.LoadBench()
	if err != nil {
		t.Fatal(err)
	}
	// The flow-table floors use an LRU hash of the balancer's size in entries.
	bspec.Maps[bpf.BenchMapBenchFlows].MaxEntries = env.FlowEntries
	if err := bspec.LoadAndAssign(&bo, nil); err != nil {
		t.Fatalf("load bench programs: %v", err)
	}
	defer bo.Close()

	build := func(dst netip.Addr, flags string) []byte {
		return pkt.MustBuild(t, pkt.Spec{Src: client, Dst: dst, SrcPort: 40000, DstPort: 80, Proto: "tcp", TCPFlags: flags, DF: true,
			Payload: make([]byte, 18)})
	}
	ipipACK, ipipSYN := build(vip, "A"), build(vip, "S")
	dsrACK, dsrSYN := build(netip.MustParseAddr("10.0.0.101"), "A"), build(netip.MustParseAddr("10.0.0.101"), "S")
	// Established flows: the flow's SYN is run right before the timed runs,
	// on the CPU they run on. (Primed once up front on whatever CPU, the
	// entry was missed now and then by the first timed run, which then
	// created the flow and failed the check below.)
	variants := []variant{
		{name: "floor driver (restore + tail call + TX)", prog: bo.XlbFloorDriver, frame: ipipACK},
		{name: "floor dsr (parse + MAC swap + TX)", prog: bo.XlbFloorDsr, frame: ipipACK},
		{name: "floor ipip (parse + bare encap + TX)", prog: bo.XlbFloorIpip, frame: ipipACK},
		{name: "floor lookup (dsr floor + flow lookup)", prog: bo.XlbFloorLookup, frame: ipipACK, prime: ipipACK, primer: bo.XlbFloorInsert},
		{name: "floor insert (dsr floor + flow insert)", prog: bo.XlbFloorInsert, frame: ipipSYN, vary: true},
		{name: "xlb ipip established flow", prog: env.Objs.XlbLb, frame: ipipACK, prime: ipipSYN, check: "tx"},
		{name: "xlb dsr established flow", prog: env.Objs.XlbLb, frame: dsrACK, prime: dsrSYN, check: "tx"},
		// One flow's entry, bucket and counters stay in the CPU's caches;
		// 65,536 flows in turn (nearly one a bucket: about 10 MB of cache
		// lines, beyond the caches) show what an established packet costs
		// when they do not.
		{name: "xlb ipip established, 65536 flows in turn", prog: env.Objs.XlbLb, frame: ipipACK, prime: ipipSYN, vary: true, cycle: 1 << 16, check: "tx", seqOff: 1 << 29},
		{name: "xlb dsr established, 65536 flows in turn", prog: env.Objs.XlbLb, frame: dsrACK, prime: dsrSYN, vary: true, cycle: 1 << 16, check: "tx", seqOff: 1 << 29},
		{name: "xlb ipip new flow (SYN)", prog: env.Objs.XlbLb, frame: ipipSYN, vary: true, check: "tx", newFlw: true},
		{name: "xlb dsr new flow (SYN)", prog: env.Objs.XlbLb, frame: dsrSYN, vary: true, check: "tx", newFlw: true},
		// A packet that is no SYN and has no entry: besides a new flow's
		// work, it is looked for in the other CPUs' tables (a sender that
		// migrated) before Maglev picks, and is then remembered.
		{name: "xlb ipip non-SYN miss (other CPUs searched)", prog: env.Objs.XlbLb, frame: ipipACK, vary: true, check: "tx", newFlw: true, seqOff: 1 << 30},
		// A SYN flood past xdp.flow_insert_limit: every new flow is still
		// chosen and forwarded, but no longer inserted.
		{name: "xlb ipip new flow past flow_insert_limit", prog: env.Objs.XlbLb, frame: ipipSYN, vary: true, check: "tx", newFlw: true, capped: true},
	}
	// Katran (katran_test.go): its balancer, built from source, timed in the same rounds.
	kb, katranNote := loadKatran(t, env)
	if kb != nil {
		variants = append(variants, kb.variants(ipipACK, ipipSYN)...)
	}
	// End of Katran.
	if base != nil {
		var all []variant
		for _, v := range variants {
			all = append(all, v)
			if strings.HasPrefix(v.name, "xlb ") {
				v.name = "baseline " + strings.TrimPrefix(v.name, "xlb ")
				v.prog, v.primer, v.env = base.Objs.XlbLb, base.Objs.XlbLb, base
				all = append(all, v)
			}
		}
		variants = all
	}
	// XLB_BENCH_ONLY keeps only the xlb variants whose name contains it (the
	// floors always run): for profiling one path with perf.
	if only := os.Getenv("XLB_BENCH_ONLY"); only != "" {
		variants = slices.DeleteFunc(variants, func(v variant) bool {
			return !strings.HasPrefix(v.name, "floor") && !strings.Contains(v.name, only)
		})
	}
	rounds, repeat := 5, uint32(1_000_000)
	if s := os.Getenv("XLB_BENCH_ROUNDS"); s != "" {
		fmt.Sscan(s, &rounds)
	}
	if s := os.Getenv("XLB_BENCH_REPEAT"); s != "" {
		fmt.Sscan(s, &repeat)
	}
	results := make([][]uint32, len(variants))
	evicted, timed := make([]uint64, len(variants)), make([]uint64, len(variants))

	err = env.Host.Do(func() error {
		if err := onCPU0(); err != nil {
			return err
		}
		// Round 0 warms up and is not recorded: caches and branch
		// predictors settle, and the new-flow variants fill their flow
		// tables, so that every recorded new flow meets a full table and
		// evicts (the steady state under load) instead of the first
		// round's filling a table and the others' evicting.
		var seq uint32 // each round's new flows are new to every earlier round too
		for r := 0; r <= rounds; r++ {
			roundLen := uint32(0)
			// An xlb row and its baseline swap places every other round, so
			// that neither always runs first (its caches and predictors then
			// meet what the other row left).
			order := make([]int, len(variants))
			for i := range order {
				order[i] = i
				if r%2 == 1 && pairedWithPrevious(variants, i) {
					order[i-1], order[i] = i, i-1
				}
			}
			for _, i := range order {
				v := variants[i]
				n := repeat
				if r == 0 {
					n = max(repeat/10, 1)
					if v.vary && v.cycle == 0 {
						n = max(repeat, env.FlowEntries)
					}
				}
				if err := bo.BenchTarget.Put(uint32(0), v.prog); err != nil {
					return fmt.Errorf("%s: set target: %w", v.name, err)
				}
				roundLen = max(roundLen, n)
				in := bpf.BenchBenchPkt{Len: uint32(len(v.frame)), SportOff: 14 + 20, SaddrOff: 14 + 12 + 2, Seq: seq + v.seqOff}
				if v.vary {
					in.Vary = 1
				}
				if v.cycle != 0 {
					in.Mask, in.Base = v.cycle-1, v.seqOff
				}
				copy(in.Data[:], v.frame)
				if v.cycle != 0 {
					// Every flow of the cycle gets its SYN first, through the
					// driver, on this CPU, in order; the timed runs visit them
					// in another order (bench_scramble), unless asked not to.
					syn := in
					if !inOrder {
						in.Scramble = 1
					}
					clear(syn.Data[:])
					copy(syn.Data[:], v.prime)
					if err := bo.BenchInput.Put(uint32(0), &syn); err != nil {
						return err
					}
					if ret, _, err := timeRun(bo.XlbBenchDriver, v.prime, env.Link.Index, v.cycle); err != nil || ret != xdpTX {
						return fmt.Errorf("%s: priming SYNs: verdict %d, %v", v.name, ret, err)
					}
				}
				if err := bo.BenchInput.Put(uint32(0), &in); err != nil {
					return err
				}
				venv := env
				if v.env != nil {
					venv = v.env
				}
				if v.capped {
					if err := venv.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, MaxNewFlowsPerCPU: 1}); err != nil {
						return err
					}
				}
				skippedBefore := statOf(venv, "flow_insert_skipped")
				if v.prime != nil && v.cycle == 0 {
					primer := env.Objs.XlbLb
					if v.primer != nil {
						primer = v.primer
					}
					if ret, _, err := timeRun(primer, v.prime, env.Link.Index, 1); err != nil || ret != xdpTX {
						return fmt.Errorf("%s: priming SYN: verdict %d, %v", v.name, ret, err)
					}
				}
				before := statOf(venv, v.check)
				var verify func(n, seq uint32) error
				if v.verify != nil {
					verify = v.verify()
				}
				newBefore := newFlows(venv)
				ret, ns, err := timeRun(bo.XlbBenchDriver, v.frame, env.Link.Index, n)
				if err != nil {
					return fmt.Errorf("%s: run: %w", v.name, err)
				}
				if ret != xdpTX {
					return fmt.Errorf("%s: verdict %d, want XDP_TX", v.name, ret)
				}
				// Every timed run must have taken the path it claims.
				if v.check != "" {
					if got := statOf(venv, v.check) - before; got < uint64(n) {
						return fmt.Errorf("%s: %d of %d runs counted as %s", v.name, got, n, v.check)
					}
				}
				if verify != nil {
					if err := verify(n, in.Seq); err != nil {
						return fmt.Errorf("%s: %w", v.name, err)
					}
				}
				if v.newFlw {
					if got := newFlows(venv) - newBefore; got < uint64(n) {
						return fmt.Errorf("%s: only %d of %d runs were new flows", v.name, got, n)
					}
				} else if v.cycle != 0 && v.verify == nil {
					// All of a cycle's flows on one CPU fill some buckets past
					// their 4 ways (65,536 flows in 131,072 buckets: a handful
					// of buckets), whose flows then evict each other: those
					// runs are new flows, counted and shown, and must stay rare.
					got := newFlows(venv) - newBefore
					if got > uint64(n)/100 {
						return fmt.Errorf("%s: %d of %d runs were new flows (evicted entries), more than 1%%", v.name, got, n)
					}
					if r > 0 {
						evicted[i] += got
						timed[i] += uint64(n)
					}
				} else if v.check != "" && newFlows(venv) != newBefore {
					return fmt.Errorf("%s: established-flow runs created %d flows", v.name, newFlows(venv)-newBefore)
				}
				if v.capped {
					if err := venv.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6}); err != nil {
						return err
					}
					// One insert per second of run time gets through the cap.
					through := uint64(ns)*uint64(n)/1e9 + 2
					if got := statOf(venv, "flow_insert_skipped") - skippedBefore; got+through < uint64(n) {
						return fmt.Errorf("%s: only %d of %d new flows skipped the insert", v.name, got, n)
					}
				}
				if r > 0 {
					results[i] = append(results[i], ns)
				}
			}
			seq += roundLen
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	med := make([]uint32, len(variants))
	for i := range results {
		s := slices.Clone(results[i])
		slices.Sort(s)
		med[i] = s[len(s)/2]
	}
	// The driver's own cost is in every figure; "net" figures subtract it, so
	// that ratios compare the programs alone. The machine's speed drifts
	// between rounds (other work on it moves every variant of a round alike),
	// so the net figures and all ratios are taken round by round, from runs
	// seconds apart, and then their median: a ratio of medians from
	// different rounds would mix those states.
	rs := len(results[0])
	perRound := func(f func(r int) float64) float64 {
		v := make([]float64, rs)
		for r := range v {
			v[r] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	netr := func(i, r int) float64 { return max(float64(results[i][r])-float64(results[0][r]), 1) }
	net := func(i int) float64 { return perRound(func(r int) float64 { return netr(i, r) }) }
	ratio := func(i, j int) float64 {
		return perRound(func(r int) float64 { return float64(results[i][r]) / float64(results[j][r]) })
	}
	netRatio := func(i, j int) float64 { return perRound(func(r int) float64 { return netr(i, r) / netr(j, r) }) }
	var b strings.Builder
	fmt.Fprintf(&b, "\nXDP per-packet cost, BPF_PROG_TEST_RUN through a restoring driver, %d runs x %d rounds, median (kernel %s)\n", repeat, rounds, kernelRelease())
	cpus, _ := ebpf.PossibleCPU()
	fmt.Fprintf(&b, "flow table %d entries: per CPU %d buckets of %d ways (the floors: an LRU hash of %d entries without common list); new flows meet a full table (warm-up round): every insert evicts\n",
		env.FlowEntries, env.Objs.Flows.MaxEntries()/uint32(max(cpus, 1)), bpf.FlowWays, env.FlowEntries)
	fmt.Fprintf(&b, "every run on CPU 0 of %d\n", cpus)
	fmt.Fprintln(&b, katranNote)
	fmt.Fprintf(&b, "driver's own cost %d ns, subtracted round by round in the net columns; ratios are medians of per-round ratios\n", med[0])
	fmt.Fprintf(&b, "%-42s %7s %7s %9s %9s %9s %9s\n", "program", "ns/pkt", "net ns", "x dsr", "x ipip", "net x dsr", "net x ipip")
	for i, v := range variants {
		fmt.Fprintf(&b, "%-42s %7d %7.0f %9.2f %9.2f %9.2f %10.2f   rounds %v\n", v.name, med[i], net(i),
			ratio(i, 1), ratio(i, 2), netRatio(i, 1), netRatio(i, 2), results[i])
	}
	for i, v := range variants {
		if v.cycle != 0 && v.verify == nil {
			fmt.Fprintf(&b, "%s: %d of %d timed runs met an entry evicted by an overfull bucket and were new flows\n", v.name, evicted[i], timed[i])
		}
	}
	// A before/after is resolved only when the difference of paired rounds
	// stays on one side of zero: the median says how much, the quartiles
	// how far the machine's own drift spreads it.
	for i, v := range variants {
		if !pairedWithPrevious(variants, i) {
			continue
		}
		rest := strings.TrimPrefix(v.name, "baseline ")
		d := make([]float64, rs)
		for r := range d {
			d[r] = float64(results[i-1][r]) - float64(results[i][r])
		}
		slices.Sort(d)
		fmt.Fprintf(&b, "xlb - baseline, %s: %+.0f ns a packet (paired rounds: quartiles %+.0f..%+.0f)\n",
			rest, d[rs/2], d[rs/4], d[(3*rs)/4])
	}
	// What one flow-table lookup and one insert cost by themselves: a net
	// target of k x a floor leaves (k - 1) x that floor for all the work
	// beyond it, and the lookup alone already takes its share.
	if lk, ins := index(variants, "floor lookup"), index(variants, "floor insert"); lk >= 0 && ins >= 0 {
		alone := func(i, r int) float64 { return float64(results[i][r]) - float64(results[1][r]) }
		fmt.Fprintf(&b, "one flow-table lookup alone: %.0f ns = %.2f x the dsr floor's net, %.2f x the ipip floor's net; one insert into the full table: %.0f ns\n",
			perRound(func(r int) float64 { return alone(lk, r) }),
			perRound(func(r int) float64 { return alone(lk, r) / netr(1, r) }),
			perRound(func(r int) float64 { return alone(lk, r) / netr(2, r) }),
			perRound(func(r int) float64 { return alone(ins, r) }))
	}
	// DSR leaves a frame's length and addresses as they were, so its
	// programs can also be re-run on their own output without the driver:
	// how #12 measured them (BPF_PROG_TEST_RUN on the program itself, 2M
	// repeats, median of 7). The kernel's test loop is then in every
	// figure instead of the driver: a program that only answers XDP_TX
	// measures it, and the net column subtracts it.
	direct := []variant{{name: "test loop alone (XDP_TX only)", prog: bo.XlbFloorDriver, frame: dsrACK},
		{name: "floor dsr", prog: bo.XlbFloorDsr, frame: dsrACK},
		{name: "xlb dsr established flow", prog: env.Objs.XlbLb, frame: dsrACK, prime: dsrSYN, check: "tx", env: env}}
	if base != nil {
		direct = append(direct, variant{name: "baseline dsr established flow", prog: base.Objs.XlbLb, frame: dsrACK, prime: dsrSYN, check: "tx", env: base})
	}
	dres := make([][]uint32, len(direct))
	err = env.Host.Do(func() error {
		if err := onCPU0(); err != nil {
			return err
		}
		const n = 2_000_000
		for range 7 {
			for i, v := range direct {
				if v.prime != nil {
					if ret, _, err := timeRun(v.prog, v.prime, env.Link.Index, 1); err != nil || ret != xdpTX {
						return fmt.Errorf("%s, without the driver: priming SYN: verdict %d, %v", v.name, ret, err)
					}
				}
				var before, newBefore uint64
				if v.env != nil {
					before, newBefore = statOf(v.env, v.check), newFlows(v.env)
				}
				ret, ns, err := timeRun(v.prog, v.frame, env.Link.Index, n)
				if err != nil || ret != xdpTX {
					return fmt.Errorf("%s, without the driver: verdict %d, %v", v.name, ret, err)
				}
				if v.env != nil {
					if got := statOf(v.env, v.check) - before; got < n {
						return fmt.Errorf("%s, without the driver: %d of %d runs counted as %s", v.name, got, n, v.check)
					}
					if got := newFlows(v.env) - newBefore; got != 0 {
						return fmt.Errorf("%s, without the driver: established-flow runs created %d flows", v.name, got)
					}
				}
				dres[i] = append(dres[i], ns)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "\nDSR without the driver (each program re-run on its own output, %d runs x 7, median; net: less the test loop's own cost, run by run):\n", 2_000_000)
	fmt.Fprintf(&b, "%-42s %7s %7s %9s %9s\n", "program", "ns/pkt", "net ns", "x dsr", "net x dsr")
	dmed := func(f func(r int) float64) float64 {
		v := make([]float64, len(dres[0]))
		for r := range v {
			v[r] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	dnet := func(i, r int) float64 { return max(float64(dres[i][r])-float64(dres[0][r]), 1) }
	for i, v := range direct {
		m := slices.Sorted(slices.Values(dres[i]))[len(dres[i])/2]
		fmt.Fprintf(&b, "%-42s %7d %7.0f %9.2f %9.2f   runs %v\n", v.name, m, dmed(func(r int) float64 { return dnet(i, r) }),
			dmed(func(r int) float64 { return float64(dres[i][r]) / float64(dres[1][r]) }),
			dmed(func(r int) float64 { return dnet(i, r) / dnet(1, r) }), dres[i])
	}
	fmt.Print(b.String())
	for i, v := range variants {
		switch v.name {
		case "xlb ipip established flow":
			t.ReportMetric(float64(med[i]), "ns/ipip-established")
			t.ReportMetric(netRatio(i, 2), "net-x-ipip-floor(ipip-established)")
		case "xlb dsr established flow":
			t.ReportMetric(netRatio(i, 1), "net-x-dsr-floor(dsr-established)")
		}
	}
}

// onCPU0 keeps the calling thread on CPU 0: per-CPU maps and caches stay
// comparable between runs.
func onCPU0() error {
	var set unix.CPUSet
	set.Set(0)
	return unix.SchedSetaffinity(0, &set)
}

// pairedWithPrevious says whether variant i is the baseline of the xlb row
// right before it (XLB_BENCH_ONLY may have kept one of the two only).
func pairedWithPrevious(vs []variant, i int) bool {
	rest, ok := strings.CutPrefix(vs[i].name, "baseline ")
	return ok && i > 0 && vs[i-1].name == "xlb "+rest
}

// index is the position of the variant whose name starts with prefix, or -1.
func index(vs []variant, prefix string) int {
	return slices.IndexFunc(vs, func(v variant) bool { return strings.HasPrefix(v.name, prefix) })
}

func statOf(env *lbtest.Env, name string) uint64 {
	if name == "" {
		return 0
	}
	s, err := env.Maps.StatByName(name)
	if err != nil {
		return 0
	}
	return s.Packets
}

func newFlows(env *lbtest.Env) uint64 {
	var n uint64
	for _, id := range []uint32{1, 2} {
		c, _ := env.Maps.ServiceCounters(id)
		n += c.NewFlows
	}
	return n
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
