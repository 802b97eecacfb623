//go:build linux

package bpf_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
)

// establish sends a flow's SYN to service 1 (vip4:80) and returns the backend id it got.
func establish(t *testing.T, w *world, sport uint16) (uint32, pkt.Spec) {
	t.Helper()
	syn := tcp4(client4, sport, vip4, 80, "S")
	act, _ := w.run(t, pkt.MustBuild(t, syn))
	wantAction(t, act, xdpTX)
	id := w.want(1, syn, false)
	ack := syn
	ack.TCPFlags = "A"
	return id, ack
}

// learnNexthop establishes a flow to service 1 and sends one packet of it,
// which learns its backend's next hop: it returns the backend id and that
// packet.
func learnNexthop(t *testing.T, w *world, sport uint16) (uint32, []byte) {
	t.Helper()
	id, ack := establish(t, w, sport)
	in := pkt.MustBuild(t, ack)
	if _, out := w.run(t, in); !bytes.Equal(out[0:6], w.macOf[id]) {
		t.Fatalf("first packet to %x, want %s", out[0:6], w.macOf[id])
	}
	return id, in
}

// dropFromRing rebuilds service 1's table without backend id.
func dropFromRing(t *testing.T, w *world, id uint32) {
	t.Helper()
	var mb []maps.MaglevBackend
	for bid := uint32(1); bid <= 3; bid++ {
		if bid != id {
			mb = append(mb, maps.MaglevBackend{Key: w.addrOf[bid].String(), ID: bid, Weight: 1})
		}
	}
	w.tables[1] = w.SetRing(t, 1, maps.DefaultRingSize, mb)
}

// TestStaleFlowDoesNotFollowReusedBackendID: a flow whose backend was
// removed and whose id now names another backend (of another service, or
// another address of the same one) re-selects in its own service instead
// of reaching the newcomer.
func TestStaleFlowDoesNotFollowReusedBackendID(t *testing.T) {
	for _, c := range []struct {
		name    string
		svc     uint32
		newAddr netip.Addr
	}{
		{"ipv4-tcp-id-reused-by-other-service-reselect-TX", 4, lbtest.Backend4(6)},
		{"ipv4-tcp-id-reused-same-service-new-address-reselect-TX", 1, lbtest.Backend4(7)},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			id, ack := establish(t, w, 42000)
			dropFromRing(t, w, id)
			if err := w.Maps.DeleteBackend(id); err != nil {
				t.Fatal(err)
			}
			if err := w.Maps.PutBackend(maps.Backend{ID: id, ServiceID: c.svc, Addr: c.newAddr, Up: true}); err != nil {
				t.Fatal(err)
			}
			if err := w.Maps.ClearStats(); err != nil {
				t.Fatal(err)
			}
			in := pkt.MustBuild(t, ack)
			act, out := w.run(t, in)
			wantAction(t, act, xdpTX)
			if got := w.backendOf(t, out); got == c.newAddr {
				t.Fatalf("stale flow reached %s, the new holder of backend id %d", got, id)
			}
			w.checkEncap(t, in, out, w.want(1, ack, false))
			if got := w.Stat(t, "flow_reselect"); got != 1 {
				t.Errorf("flow_reselect = %d, want 1", got)
			}
		})
	}
}

// TestFlowOfDeletedServicePasses: once its service is gone, an established
// flow's packets are not forwarded on the strength of the flow entry.
func TestFlowOfDeletedServicePasses(t *testing.T) {
	w := newWorld(t)
	_, ack := establish(t, w, 42100)
	if err := w.Maps.DeleteService(maps.ServiceKey{VIP: vip4, Port: 80, Proto: maps.ProtoTCP}); err != nil {
		t.Fatal(err)
	}
	act, _ := w.run(t, pkt.MustBuild(t, ack))
	wantAction(t, act, xdpPass)
}

// TestBackendWriteInvalidatesNexthop: after a backend's MAC moved, writing
// the backend makes the next packet use the new MAC at once, not after the
// cache's second.
func TestBackendWriteInvalidatesNexthop(t *testing.T) {
	w := newWorld(t)
	id, in := learnNexthop(t, w, 42200)
	moved := lbtest.BackendMAC(0x42)
	w.Host.Neigh(t, "eth0", w.addrOf[id], moved)
	if err := w.Maps.PutBackend(maps.Backend{ID: id, ServiceID: 1, Addr: w.addrOf[id], Up: true}); err != nil {
		t.Fatal(err)
	}
	act, out := w.run(t, in)
	wantAction(t, act, xdpTX)
	if !bytes.Equal(out[0:6], moved) {
		t.Errorf("after the write: to %x, want the new MAC %s", out[0:6], moved)
	}
	// The flow was kept: same backend, same generation.
	if got := w.backendOf(t, out); got != w.addrOf[id] {
		t.Errorf("flow moved to %s", got)
	}
}

// TestNexthopOfEarlierGenerationUnused: a cached next hop names the slot's
// generation it was learnt for. One learnt for the slot's previous backend
// (a FIB lookup that read the slot just before userspace rewrote it, and
// stored its answer just after userspace cleared the cache) is not used,
// neither its MAC nor its address: the next packet learns the next hop
// again. The same entry under the current generation is used as it is,
// so the hand-written entry is what the program reads.
func TestNexthopOfEarlierGenerationUnused(t *testing.T) {
	w := newWorld(t)
	id, in := learnNexthop(t, w, 42400)
	gen, err := w.Maps.BackendGen(id)
	if err != nil {
		t.Fatal(err)
	}
	stale := lbtest.BackendMAC(0x44)
	staleAddr := lbtest.Backend4(9)
	plant := func(gen uint32) {
		t.Helper()
		var per []bpf.LbNexthop
		if err := w.Objs.Nexthops.Lookup(id, &per); err != nil {
			t.Fatal(err)
		}
		for i := range per {
			per[i].Dmac = [6]uint8(stale)
			per[i].InIfindex = uint32(w.Link.Index)
			per[i].Ifindex = uint32(w.Link.Index)
			per[i].Mtu = 1500
			per[i].Expires = ^uint64(0)
			per[i].Addr, per[i].Family = maps.Addr16(staleAddr)
			per[i].Gen = gen
		}
		if err := w.Objs.Nexthops.Put(id, per); err != nil {
			t.Fatal(err)
		}
	}

	plant(gen)
	act, out := w.run(t, in)
	wantAction(t, act, xdpTX)
	if !bytes.Equal(out[0:6], stale) || w.backendOf(t, out) != staleAddr {
		t.Fatalf("an entry of the current generation: to %x (%s), want the planted %s (%s)", out[0:6], w.backendOf(t, out), stale, staleAddr)
	}

	plant(gen - 1)
	for range 4 {
		act, out = w.run(t, in)
		wantAction(t, act, xdpTX)
		if !bytes.Equal(out[0:6], w.macOf[id]) {
			t.Errorf("an entry of the previous generation: to %x, want the backend's %s", out[0:6], w.macOf[id])
		}
		if got := w.backendOf(t, out); got != w.addrOf[id] {
			t.Errorf("an entry of the previous generation: encapsulated to %s, want %s", got, w.addrOf[id])
		}
	}
}

// TestNexthopCacheExpires: without a backend write, a moved MAC is learnt
// once the per-CPU cache entry expires (100 jiffies: at most a second).
func TestNexthopCacheExpires(t *testing.T) {
	w := newWorld(t)
	id, in := learnNexthop(t, w, 42300)
	moved := lbtest.BackendMAC(0x43)
	w.Host.Neigh(t, "eth0", w.addrOf[id], moved)
	time.Sleep(1100 * time.Millisecond)
	// Each CPU the test thread ran on has its own entry: run on several.
	for range 8 {
		if _, out := w.run(t, in); !bytes.Equal(out[0:6], moved) {
			t.Fatalf("after the TTL: to %x, want the new MAC %s", out[0:6], moved)
		}
	}
}

// TestReusedIDsCountFromZero: ids are reused, so a backend slot given to
// another backend, or a service id given to another service, starts its
// counters at zero instead of at its previous owner's totals; rewriting a
// backend or a service as it was keeps them (a reload, a restarted daemon).
func TestReusedIDsCountFromZero(t *testing.T) {
	w := newWorld(t)
	id, _ := establish(t, w, 42600)
	packets := func(c maps.Counters, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c.Packets
	}
	if got := packets(w.Maps.BackendCounters(id)); got != 1 {
		t.Fatalf("backend %d counted %d packets, want the SYN", id, got)
	}
	if err := w.Maps.PutBackend(maps.Backend{ID: id, ServiceID: 1, Addr: w.addrOf[id], Up: true}); err != nil {
		t.Fatal(err)
	}
	if got := packets(w.Maps.BackendCounters(id)); got != 1 {
		t.Errorf("backend %d rewritten as it was: %d packets, want 1 kept", id, got)
	}
	if err := w.Maps.PutBackend(maps.Backend{ID: id, ServiceID: 2, Addr: lbtest.Backend4(9), Up: true}); err != nil {
		t.Fatal(err)
	}
	if got := packets(w.Maps.BackendCounters(id)); got != 0 {
		t.Errorf("backend slot %d given to another backend: %d packets, want 0", id, got)
	}

	// Service 1 counted the SYN; rewritten as it is, it keeps the count.
	svc := maps.Service{ServiceKey: maps.ServiceKey{VIP: vip4, Port: 80, Proto: maps.ProtoTCP}, ID: 1}
	if got := packets(w.Maps.ServiceCounters(1)); got != 1 {
		t.Fatalf("service 1 counted %d packets, want the SYN", got)
	}
	if err := w.Maps.PutService(svc); err != nil {
		t.Fatal(err)
	}
	if got := packets(w.Maps.ServiceCounters(1)); got != 1 {
		t.Errorf("service 1 rewritten as it was: %d packets, want 1 kept", got)
	}
	if err := w.Maps.DeleteService(svc.ServiceKey); err != nil {
		t.Fatal(err)
	}
	other := maps.Service{ServiceKey: maps.ServiceKey{VIP: netip.MustParseAddr("10.0.0.77"), Port: 80, Proto: maps.ProtoTCP}, ID: 1}
	if err := w.Maps.PutService(other); err != nil {
		t.Fatal(err)
	}
	if got := packets(w.Maps.ServiceCounters(1)); got != 0 {
		t.Errorf("service id 1 given to another service: %d packets, want 0", got)
	}
}

// TestCountFlowsOnlyTheIDsOwner: the flow count of a backend id (xlbctl
// status's active flows, and the idle test of a drain before removal)
// leaves out the entries an earlier holder of the id left: the program
// re-selects them, they are nobody's.
func TestCountFlowsOnlyTheIDsOwner(t *testing.T) {
	w := newWorld(t)
	id, _ := establish(t, w, 42100)
	count := func() int {
		t.Helper()
		n, err := w.Maps.CountFlows()
		if err != nil {
			t.Fatal(err)
		}
		return n[id]
	}
	if got := count(); got != 1 {
		t.Fatalf("backend %d counts %d flows, want its 1", id, got)
	}
	dropFromRing(t, w, id)
	if err := w.Maps.DeleteBackend(id); err != nil {
		t.Fatal(err)
	}
	if err := w.Maps.PutBackend(maps.Backend{ID: id, ServiceID: 4, Addr: lbtest.Backend4(6), Up: true}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 0 {
		t.Errorf("the id's new holder counts %d flows of the old one, want 0", got)
	}
}

// TestLaterFragmentNotToReusedSlot: the later fragments of a datagram go
// where its first went, and nowhere else: once that backend's id names
// another backend (of another service here), they are dropped rather than
// handed to a backend that never saw the datagram's start.
func TestLaterFragmentNotToReusedSlot(t *testing.T) {
	w := newWorld(t)
	first, later := fragments(6100, 0x2345)
	act, _ := w.run(t, pkt.MustBuild(t, first))
	wantAction(t, act, xdpTX)
	id := w.want(2, first, false)

	if err := w.Maps.DeleteBackend(id); err != nil {
		t.Fatal(err)
	}
	newcomer := lbtest.Backend4(6)
	if err := w.Maps.PutBackend(maps.Backend{ID: id, ServiceID: 4, Addr: newcomer, Up: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Maps.ClearStats(); err != nil {
		t.Fatal(err)
	}
	act, out := w.run(t, pkt.MustBuild(t, later))
	if act != xdpDrop {
		t.Fatalf("later fragment after its backend's id was reused: action %d (to %s), want drop", act, w.backendOf(t, out))
	}
	if got := w.Stat(t, "drop_no_backend"); got != 1 {
		t.Errorf("drop_no_backend = %d, want 1", got)
	}
}
