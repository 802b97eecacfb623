//go:build linux

// Package lbtest sets up the load-balancer program in a throwaway namespace for
// BPF_PROG_TEST_RUN: the kernel's FIB and neighbour tables the program consults
// are the namespace's, so results do not depend on the machine.
package lbtest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/netns"
)

// The fixed world of program tests.
var (
	LBAddr4 = netip.MustParseAddr("10.0.0.1")
	LBAddr6 = netip.MustParseAddr("fd00::1")
	GWAddr4 = netip.MustParseAddr("10.0.0.254")
	GWMAC   = net.HardwareAddr{0x02, 0xee, 0, 0, 0, 0x01}
	// RemoteNet4 is reached through GWAddr4: backends across L3.
	RemoteNet4 = "10.1.0.0/24"
)

// BackendMAC is the neighbour entry of the i-th on-link backend.
func BackendMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0xbb, 0, 0, 0, byte(i)} }

// Backend4 and Backend6 are the on-link backends' addresses (i = 1..9).
func Backend4(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}) }
func Backend6(i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00::%x", 0x10+i))
}

// xdpMD is struct xdp_md: the context BPF_PROG_TEST_RUN takes to set the
// ingress interface (the FIB lookup starts there).
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// Env is a loaded LB program in a namespace with one veth "eth0" and neighbour
// entries for backends 1..9 (IPv4 and IPv6) and a gateway.
type Env struct {
	Host  *netns.Host
	Link  netns.Link
	Objs  *bpf.LbObjects
	Maps  *maps.Maps
	LBMAC net.HardwareAddr
	// FlowEntries is the flow table's size in entries over all CPUs
	// (xdp.flow_table_size).
	FlowEntries uint32
}

// New builds the environment; everything is removed in t.Cleanup.
func New(t testing.TB) *Env { return NewWithFlowTable(t, 0) }

// NewWithFlowTable is New with a flow table of `flows` entries (0: the
// compiled-in size).
func NewWithFlowTable(t testing.TB, flows uint32) *Env {
	tp := netns.New(t)
	lb := tp.AddHost("lb")
	peer := tp.AddHost("peer")
	l, _ := tp.Pair(lb, "eth0", []string{LBAddr4.String() + "/24", LBAddr6.String() + "/64"},
		peer, "eth0", []string{"10.0.0.2/24", "fd00::2/64"})
	// bpf_fib_lookup refuses to answer on interfaces that do not forward.
	lb.Sysctl(t, "net.ipv4.conf.all.forwarding", "1")
	lb.Sysctl(t, "net.ipv4.conf.eth0.forwarding", "1")
	lb.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	for i := 1; i <= 9; i++ {
		lb.Neigh(t, "eth0", Backend4(i), BackendMAC(i))
		lb.Neigh(t, "eth0", Backend6(i), BackendMAC(i))
	}
	lb.Neigh(t, "eth0", GWAddr4, GWMAC)
	lb.Route(t, RemoteNet4, "via", GWAddr4.String())

	spec, err := bpf.LoadLb()
	if err != nil {
		t.Fatal(err)
	}
	return load(t, lb, l, spec, flows)
}

// Sibling loads another build of the LB program (spec, e.g. an older
// lb_bpfel.o) with maps of its own, in e's namespace and on e's link: the
// bench times it beside e's in the same run.
func (e *Env) Sibling(t testing.TB, spec *ebpf.CollectionSpec) *Env {
	return load(t, e.Host, e.Link, spec, e.FlowEntries)
}

func load(t testing.TB, lb *netns.Host, l netns.Link, spec *ebpf.CollectionSpec, flows uint32) *Env {
	objs := new(bpf.LbObjects)
	// An older build (a baseline) may lack maps today's objects have: give it
	// today's, which its program does not use. Its settings may be shorter:
	// give it today's, whose start its program reads.
	if cur, err := bpf.LoadLb(); err == nil {
		for name, ms := range cur.Maps {
			if _, ok := spec.Maps[name]; !ok {
				spec.Maps[name] = ms
			}
		}
		if old := spec.Maps[bpf.LbMapSettings]; old.ValueSize < cur.Maps[bpf.LbMapSettings].ValueSize {
			spec.Maps[bpf.LbMapSettings] = cur.Maps[bpf.LbMapSettings]
		}
	}
	if flows == 0 {
		flows = bpf.FlowEntriesDefault
	}
	// Today's flow table is a per-CPU array of buckets; an older build's
	// (a baseline's) an LRU hash of entries.
	if ms := spec.Maps[bpf.LbMapFlows]; ms.Type == ebpf.PerCPUArray || ms.Type == ebpf.Array {
		if _, err := bpf.SizeFlowTable(spec, flows); err != nil {
			t.Fatal(err)
		}
	} else {
		ms.MaxEntries = flows
	}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("load lb: %+v", ve)
		}
		t.Fatalf("load lb: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	e := &Env{Host: lb, Link: l, Objs: objs, Maps: maps.FromObjects(&objs.LbMaps), LBMAC: l.MAC, FlowEntries: flows}
	if err := e.Maps.PutSettings(maps.Settings{Src4: LBAddr4, Src6: LBAddr6}); err != nil {
		t.Fatal(err)
	}
	return e
}

// Run runs the program once on frame, as if it arrived on eth0.
func (e *Env) Run(t testing.TB, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	return e.RunOn(t, prog, frame, e.Link.Index)
}

// RunOn runs the program once on frame, as if it arrived on the interface
// of index ifindex.
func (e *Env) RunOn(t testing.TB, prog *ebpf.Program, frame []byte, ifindex int) (uint32, []byte) {
	t.Helper()
	var (
		ret uint32
		out []byte
	)
	err := e.Host.Do(func() error {
		opts := &ebpf.RunOptions{
			Data:    frame,
			DataOut: make([]byte, len(frame)+512),
			Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)},
		}
		var err error
		ret, err = prog.Run(opts)
		out = opts.DataOut
		return err
	})
	if err != nil {
		t.Fatalf("run program: %v", err)
	}
	return ret, out
}

// ServiceSpec is what AddService installs.
type ServiceSpec struct {
	maps.Service
	Backends []netip.Addr // ids are assigned from FirstBackendID on
	Weights  []uint32     // optional; default 1 each
	FirstID  uint32
}

// AddService installs a service, its backends (all up) and its Maglev table,
// and returns the table.
func (e *Env) AddService(t testing.TB, s ServiceSpec) []uint32 {
	t.Helper()
	if s.RingSize == 0 {
		s.RingSize = maps.DefaultRingSize
	}
	if err := e.Maps.PutService(s.Service); err != nil {
		t.Fatal(err)
	}
	var mb []maps.MaglevBackend
	for i, a := range s.Backends {
		id := s.FirstID + uint32(i)
		if err := e.Maps.PutBackend(maps.Backend{ID: id, ServiceID: s.ID, Addr: a, Up: true}); err != nil {
			t.Fatal(err)
		}
		w := uint32(1)
		if i < len(s.Weights) {
			w = s.Weights[i]
		}
		mb = append(mb, maps.MaglevBackend{Key: a.String(), ID: id, Weight: w})
	}
	return e.SetRing(t, s.ID, s.RingSize, mb)
}

// SetRing builds and installs a service's table.
func (e *Env) SetRing(t testing.TB, svcID, size uint32, mb []maps.MaglevBackend) []uint32 {
	t.Helper()
	table, err := maps.BuildMaglev(mb, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Maps.PutRing(svcID, table); err != nil {
		t.Fatal(err)
	}
	return table
}

// Stat returns a summed verdict or event counter.
func (e *Env) Stat(t testing.TB, name string) uint64 {
	t.Helper()
	s, err := e.Maps.StatByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return s.Packets
}
