//go:build linux

package bpf_test

import (
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

// runOnCPU runs the LB program once on frame on the given CPU.
// (BPF_PROG_TEST_RUN's cpu field is for raw tracepoints only: an XDP test run
// runs where the calling thread does, so the thread is pinned there.)
func runOnCPU(t *testing.T, env *lbtest.Env, cpu int, frame []byte) (uint32, []byte) {
	t.Helper()
	var (
		act uint32
		out []byte
	)
	err := env.Host.Do(func() error {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+512),
			Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(env.Link.Index)}}
		var err error
		act, err = env.Objs.XlbLb.Run(opts)
		out = opts.DataOut
		return err
	})
	if err != nil {
		t.Fatalf("run on CPU %d: %v", cpu, err)
	}
	return act, out
}

func tcpKey(src netip.Addr, sport uint16, dst netip.Addr) maps.FlowKey {
	return maps.FlowKey{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, 80), Proto: maps.ProtoTCP}
}

// flowCPUs lists the CPUs whose tables hold k.
func flowCPUs(t *testing.T, m *maps.Maps, k maps.FlowKey) []int {
	t.Helper()
	copies, err := m.FlowCopies(k)
	if err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for _, f := range copies {
		cpus = append(cpus, f.CPU)
	}
	slices.Sort(cpus)
	return cpus
}

// coarseTick outlasts a tick of the coarse clock the program stamps entries
// with (one jiffy: at most 10 ms), so entries made before and after it have
// different times.
const coarseTick = 12 * time.Millisecond

// TestFlowTableFullBucketEvictsItsOldest: a flow whose bucket is full takes
// the way seen longest ago (a packet of an established flow refreshes its
// way), in its own bucket only: another bucket's entries, older still, stay.
func TestFlowTableFullBucketEvictsItsOldest(t *testing.T) {
	privileged.Require(t)
	env := lbtest.NewWithFlowTable(t, 1024)
	env.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: maps.ServiceKey{VIP: vip4, Port: 80, Proto: maps.ProtoTCP}, ID: 1},
		Backends: []netip.Addr{lbtest.Backend4(1), lbtest.Backend4(2), lbtest.Backend4(3)}, FirstID: 1})
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	buckets := env.Objs.Flows.MaxEntries() / uint32(cpus) // one CPU's slice
	if buckets < 2 {
		t.Fatalf("%d buckets: the test needs two", buckets)
	}
	// Clients whose flows share one bucket, and as many in another one.
	var same, other []uint16
	home := maps.FlowBucket(tcpKey(client4, 30000, vip4), buckets)
	for port := uint16(30000); len(same) < bpf.FlowWays+2 || len(other) < bpf.FlowWays; port++ {
		switch b := maps.FlowBucket(tcpKey(client4, port, vip4), buckets); {
		case b == home && len(same) < bpf.FlowWays+2:
			same = append(same, port)
		case b == (home+1)%buckets && len(other) < bpf.FlowWays:
			other = append(other, port)
		}
	}
	syn := func(port uint16) {
		t.Helper()
		if act, _ := runOnCPU(t, env, 0, pkt.MustBuild(t, tcp4(client4, port, vip4, 80, "S"))); act != xdpTX {
			t.Fatalf("SYN from port %d: action %s", port, actionNames[act])
		}
		time.Sleep(coarseTick)
	}
	// The other bucket full, first: the oldest entries of all.
	for _, p := range other {
		syn(p)
	}
	// This bucket full; then its first flow is seen again.
	for _, p := range same[:bpf.FlowWays] {
		syn(p)
	}
	if act, _ := runOnCPU(t, env, 0, pkt.MustBuild(t, tcp4(client4, same[0], vip4, 80, "A"))); act != xdpTX {
		t.Fatalf("ACK: action %s", actionNames[act])
	}
	time.Sleep(coarseTick)
	// Two more flows into the full bucket: out go its second and third.
	syn(same[bpf.FlowWays])
	syn(same[bpf.FlowWays+1])

	present := func(port uint16) bool {
		_, err := env.Maps.LookupFlow(tcpKey(client4, port, vip4))
		return err == nil
	}
	for i, p := range same {
		want := i != 1 && i != 2
		if got := present(p); got != want {
			t.Errorf("flow %d of the full bucket (port %d): present %v, want %v", i, p, got, want)
		}
	}
	for i, p := range other {
		if !present(p) {
			t.Errorf("flow %d of another bucket (port %d) evicted", i, p)
		}
	}
	if got := env.Stat(t, "flow_miss_non_syn"); got != 0 {
		t.Errorf("flow_miss_non_syn = %d, want 0", got)
	}
}

// TestFlowFoundOnAnotherCPU: a flow made on CPU 0 whose next packet (no SYN)
// arrives on CPU 1 (a sender that migrated) is found in CPU 0's table and
// keeps its backend, even though the Maglev table would now pick another;
// the entry is copied to CPU 1. A SYN on CPU 1 does not look: it is a new
// connection and follows the table.
func TestFlowFoundOnAnotherCPU(t *testing.T) {
	w := newWorld(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	oldT, newT := w.tableWithBackend40(t)
	syn := flowAcrossChange(t, oldT, newT)
	key := tcpKey(syn.Src, syn.SrcPort, syn.Dst)
	in := pkt.MustBuild(t, syn)
	act, out := runOnCPU(t, w.Env, 0, in)
	wantAction(t, act, xdpTX)
	first := w.want(1, syn, false)
	w.checkEncap(t, in, out, first)
	if got := flowCPUs(t, w.Maps, key); !slices.Equal(got, []int{0}) {
		t.Fatalf("flow made on CPU 0 is in the tables of CPUs %v", got)
	}

	if err := w.Maps.PutRing(1, newT); err != nil {
		t.Fatal(err)
	}
	w.tables[1] = newT
	ack := syn
	ack.TCPFlags = "A"
	for i := range 2 {
		in = pkt.MustBuild(t, ack)
		act, out = runOnCPU(t, w.Env, 1, in)
		wantAction(t, act, xdpTX)
		w.checkEncap(t, in, out, first) // CPU 0's entry, not the new table
		if got := w.Stat(t, "flow_other_cpu"); got != 1 {
			t.Errorf("ACK %d on CPU 1: flow_other_cpu = %d, want 1 (found once, then copied)", i, got)
		}
	}
	if got := flowCPUs(t, w.Maps, key); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("after ACKs on CPU 1 the flow is in the tables of CPUs %v, want [0 1]", got)
	}
	if got := w.Stat(t, "flow_miss_non_syn"); got != 0 {
		t.Errorf("flow_miss_non_syn = %d, want 0", got)
	}

	// A new connection on the same 5-tuple (clients reuse ports quickly)
	// starts on CPU 0: it follows the new table and does not look in CPU 1's
	// table. CPU 1 still holds the old connection's entry, but its next
	// packet there learns that CPU 0 made the latest entry, and follows it.
	in = pkt.MustBuild(t, syn)
	act, out = runOnCPU(t, w.Env, 0, in)
	wantAction(t, act, xdpTX)
	second := w.want(1, syn, false)
	if second == first {
		t.Fatal("test flow does not move")
	}
	w.checkEncap(t, in, out, second)
	if got := w.Stat(t, "flow_other_cpu"); got != 1 {
		t.Errorf("after the SYN: flow_other_cpu = %d, want 1 (SYNs do not look)", got)
	}
	for i := range 2 {
		in = pkt.MustBuild(t, ack)
		act, out = runOnCPU(t, w.Env, 1, in)
		wantAction(t, act, xdpTX)
		w.checkEncap(t, in, out, second)
		if got := w.Stat(t, "flow_other_cpu"); got != 2 {
			t.Errorf("ACK %d of the new connection on CPU 1: flow_other_cpu = %d, want 2 (taken once)", i, got)
		}
	}
	copies, err := w.Maps.FlowCopies(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range copies {
		if f.BackendID != second {
			t.Errorf("CPU %d's entry names backend %d, want %d", f.CPU, f.BackendID, second)
		}
	}
}

// TestReusedPortOnItsSlotStaysFast: a new connection on a reused 5-tuple
// that begins on CPU 1, while CPU 0 still holds the old connection's entry,
// gets the same backend from the same Maglev table; so CPU 0's next packet
// follows its own entry on the fast path, without taking CPU 1's (no
// flow_other_cpu), and reaches that backend. An entry off its slot takes
// the newer one: TestFlowFoundOnAnotherCPU.
func TestReusedPortOnItsSlotStaysFast(t *testing.T) {
	w := newWorld(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	syn := tcp4(client4, 31500, vip4, 80, "S")
	backend := w.want(1, syn, false)
	for _, cpu := range []int{0, 1} {
		in := pkt.MustBuild(t, syn)
		act, out := runOnCPU(t, w.Env, cpu, in)
		wantAction(t, act, xdpTX)
		w.checkEncap(t, in, out, backend)
	}
	ack := syn
	ack.TCPFlags = "A"
	for range 2 {
		in := pkt.MustBuild(t, ack)
		act, out := runOnCPU(t, w.Env, 0, in)
		wantAction(t, act, xdpTX)
		w.checkEncap(t, in, out, backend)
	}
	if got := w.Stat(t, "flow_other_cpu"); got != 0 {
		t.Errorf("flow_other_cpu = %d, want 0: CPU 0 took CPU 1's entry though both name backend %d", got, backend)
	}
	if got := flowCPUs(t, w.Maps, tcpKey(client4, 31500, vip4)); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("the flow is in the tables of CPUs %v, want [0 1]", got)
	}
}

// TestUDPFlowExpiredHereAliveElsewhere: a UDP flow whose sender moved to CPU 1
// for longer than the UDP timeout has an expired entry on CPU 0 and a live one
// on CPU 1; back on CPU 0 it takes CPU 1's, and keeps its backend although the
// Maglev table changed.
func TestUDPFlowExpiredHereAliveElsewhere(t *testing.T) {
	w := newWorld(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	const timeout = 300 * time.Millisecond
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, UDPTimeout: timeout}); err != nil {
		t.Fatal(err)
	}
	oldT := w.tables[2]
	if err := w.Maps.PutBackend(maps.Backend{ID: 41, ServiceID: 2, Addr: lbtest.Backend4(8), Up: true}); err != nil {
		t.Fatal(err)
	}
	w.addrOf[41], w.macOf[41] = lbtest.Backend4(8), lbtest.BackendMAC(8)
	var mb []maps.MaglevBackend
	for _, id := range []uint32{4, 5, 6, 41} {
		mb = append(mb, maps.MaglevBackend{Key: w.addrOf[id].String(), ID: id, Weight: 1})
	}
	newT, err := maps.BuildMaglev(mb, maps.DefaultRingSize)
	if err != nil {
		t.Fatal(err)
	}
	var s pkt.Spec
	for port := uint16(30000); ; port++ {
		if port == 40000 {
			t.Fatal("no UDP flow moves between the tables")
		}
		s = udp(client4, port, vip4, 53)
		src, dst := netip.AddrPortFrom(client4, port), netip.AddrPortFrom(vip4, 53)
		if maps.Pick(oldT, false, src, dst, maps.ProtoUDP) != maps.Pick(newT, false, src, dst, maps.ProtoUDP) {
			break
		}
	}
	first := w.want(2, s, false)
	send := func(cpu int) {
		t.Helper()
		in := pkt.MustBuild(t, s)
		act, out := runOnCPU(t, w.Env, cpu, in)
		wantAction(t, act, xdpTX)
		w.checkEncap(t, in, out, first)
	}
	send(0)
	if err := w.Maps.PutRing(2, newT); err != nil {
		t.Fatal(err)
	}
	w.tables[2] = newT
	for end := time.Now().Add(timeout + 100*time.Millisecond); time.Now().Before(end); {
		send(1)
		time.Sleep(50 * time.Millisecond)
	}
	send(0)
	if got := w.Stat(t, "flow_udp_expired"); got != 0 {
		t.Errorf("flow_udp_expired = %d, want 0", got)
	}
	if got := w.Stat(t, "flow_other_cpu"); got != 2 {
		t.Errorf("flow_other_cpu = %d, want 2 (to CPU 1, then back)", got)
	}
}

// TestFlowListingMappedOrReadOnly: the table is listed through the map's
// memory when the descriptor allows it and bucket by bucket when it is
// read-only (as xlbctl's pins are: a read-only descriptor cannot map a BPF
// map), both ways the same, and a flow several CPUs hold is listed once.
func TestFlowListingMappedOrReadOnly(t *testing.T) {
	privileged.Require(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	env := lbtest.NewWithFlowTable(t, 1024)
	env.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: maps.ServiceKey{VIP: vip4, Port: 80, Proto: maps.ProtoTCP}, ID: 1},
		Backends: []netip.Addr{lbtest.Backend4(1), lbtest.Backend4(2), lbtest.Backend4(3)}, FirstID: 1})
	// One flow made by a SYN on CPU 1, one put by hand on every CPU.
	if act, _ := runOnCPU(t, env, 1, pkt.MustBuild(t, tcp4(client4, 31000, vip4, 80, "S"))); act != xdpTX {
		t.Fatalf("SYN: action %s", actionNames[act])
	}
	gen, err := env.Maps.BackendGen(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Maps.PutFlow(maps.Flow{FlowKey: tcpKey(client4, 31001, vip4), BackendID: 2, ServiceID: 1, Gen: gen}); err != nil {
		t.Fatal(err)
	}
	if got := flowCPUs(t, env.Maps, tcpKey(client4, 31001, vip4)); len(got) < 2 {
		t.Fatalf("the flow put by hand is on CPUs %v, want every CPU", got)
	}
	ports := func(m *maps.Maps) []uint16 {
		t.Helper()
		flows, err := m.ListFlows(0)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint16
		for _, f := range flows {
			out = append(out, f.Src.Port())
		}
		slices.Sort(out)
		return out
	}
	want := []uint16{31000, 31001}
	if got := ports(env.Maps); !slices.Equal(got, want) {
		t.Errorf("listed through memory: ports %v, want %v", got, want)
	}

	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	pin := dir + "/flows"
	if err := env.Objs.Flows.Pin(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Objs.Flows.Unpin() })
	ro, err := ebpf.LoadPinnedMap(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Memory(); err == nil {
		t.Fatal("a read-only descriptor mapped the table: the bucket-by-bucket path goes untested")
	}
	if got := ports(&maps.Maps{Flows: ro}); !slices.Equal(got, want) {
		t.Errorf("listed bucket by bucket: ports %v, want %v", got, want)
	}
}
