//go:build linux

package maps_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

const xdpTX = 3

var (
	whichVIP    = netip.MustParseAddr("10.0.0.100")
	whichClient = netip.MustParseAddr("192.0.2.10")
)

// whichWorld is the real program with one service of three backends
// (ids 1..3) at whichVIP:port/proto; moved is the table once a fourth
// backend (id 4) joins it.
type whichWorld struct {
	*lbtest.Env
	key          maps.ServiceKey
	table, moved []uint32
}

func newWhichWorld(t *testing.T, proto uint8, port uint16, udpTimeout time.Duration) *whichWorld {
	t.Helper()
	privileged.Require(t)
	env := lbtest.New(t)
	if err := env.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, UDPTimeout: udpTimeout}); err != nil {
		t.Fatal(err)
	}
	key := maps.ServiceKey{VIP: whichVIP, Port: port, Proto: proto}
	w := &whichWorld{Env: env, key: key}
	w.table = env.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: key, ID: 1},
		Backends: []netip.Addr{lbtest.Backend4(1), lbtest.Backend4(2), lbtest.Backend4(3)}, FirstID: 1})
	if err := env.Maps.PutBackend(maps.Backend{ID: 4, ServiceID: 1, Addr: lbtest.Backend4(4), Up: true}); err != nil {
		t.Fatal(err)
	}
	var mb []maps.MaglevBackend
	for i := 1; i <= 4; i++ {
		mb = append(mb, maps.MaglevBackend{Key: lbtest.Backend4(i).String(), ID: uint32(i), Weight: 1})
	}
	var err error
	if w.moved, err = maps.BuildMaglev(mb, maps.DefaultRingSize); err != nil {
		t.Fatal(err)
	}
	return w
}

// movingPort is a client port whose flow the fourth backend's arrival
// moves to another backend.
func (w *whichWorld) movingPort(t *testing.T) uint16 {
	t.Helper()
	for port := uint16(30000); port < 40000; port++ {
		src, dst := netip.AddrPortFrom(whichClient, port), netip.AddrPortFrom(whichVIP, w.key.Port)
		if maps.Pick(w.table, false, src, dst, w.key.Proto) != maps.Pick(w.moved, false, src, dst, w.key.Proto) {
			return port
		}
	}
	t.Fatal("no flow moves between the tables")
	return 0
}

// send runs one packet of the flow through the program and returns the
// backend it was encapsulated to.
func (w *whichWorld) send(t *testing.T, s pkt.Spec) netip.Addr {
	t.Helper()
	act, out := w.Run(t, w.Objs.XlbLb, pkt.MustBuild(t, s))
	if act != xdpTX {
		t.Fatalf("%s %d: action %d, want XDP_TX", s.Proto, s.SrcPort, act)
	}
	d, err := pkt.Decode(out)
	if err != nil || d.Outer4 == nil {
		t.Fatalf("output: %v", err)
	}
	a, _ := netip.AddrFromSlice(d.Outer4.DstIP.To4())
	return a
}

func (w *whichWorld) choose(t *testing.T, port uint16) maps.Choice {
	t.Helper()
	ch, err := w.Maps.Choose(w.key, netip.AddrPortFrom(whichClient, port))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestChooseUDPEntryExpires: a UDP entry idle past the timeout is what the
// program no longer follows (flow_udp_expired), so Choose answers from the
// Maglev table too, with the backend the next datagram gets.
func TestChooseUDPEntryExpires(t *testing.T) {
	const timeout = 300 * time.Millisecond
	w := newWhichWorld(t, maps.ProtoUDP, 53, timeout)
	port := w.movingPort(t)
	s := pkt.Spec{Src: whichClient, Dst: whichVIP, SrcPort: port, DstPort: 53, Proto: "udp"}
	first := w.send(t, s)
	if err := w.Maps.PutRing(1, w.moved); err != nil {
		t.Fatal(err)
	}
	now := maps.Pick(w.moved, false, netip.AddrPortFrom(whichClient, port), netip.AddrPortFrom(whichVIP, 53), maps.ProtoUDP)
	if ch := w.choose(t, port); !ch.FromFlowTable || ch.Addr != first || ch.MaglevID != now {
		t.Fatalf("within the timeout: %+v, want %s from the flow table, Maglev %d", ch, first, now)
	}
	time.Sleep(timeout + 100*time.Millisecond)
	ch := w.choose(t, port)
	if ch.FromFlowTable || ch.BackendID != now || ch.Addr != lbtest.Backend4(int(now)) {
		t.Fatalf("idle past the timeout: %+v, want backend %d from the Maglev table", ch, now)
	}
	if got := w.send(t, s); got != ch.Addr {
		t.Errorf("the next datagram went to %s, Choose said %s", got, ch.Addr)
	}
	if got := w.Stat(t, "flow_udp_expired"); got != 1 {
		t.Errorf("flow_udp_expired = %d, want 1", got)
	}
	// That datagram made a fresh entry.
	if ch := w.choose(t, port); !ch.FromFlowTable || ch.BackendID != now {
		t.Errorf("after the next datagram: %+v, want backend %d from the flow table", ch, now)
	}
}

// TestChooseTCPEntryAndSYN: a TCP entry holds against a table change, but a
// SYN from the same port goes by the Maglev table: Choose says both.
func TestChooseTCPEntryAndSYN(t *testing.T) {
	w := newWhichWorld(t, maps.ProtoTCP, 80, 0)
	port := w.movingPort(t)
	s := pkt.Spec{Src: whichClient, Dst: whichVIP, SrcPort: port, DstPort: 80, Proto: "tcp", TCPFlags: "S"}
	first := w.send(t, s)
	if ch := w.choose(t, port); !ch.FromFlowTable || ch.Addr != first || ch.Maglev != first {
		t.Fatalf("after the SYN: %+v, want %s from the flow table and from Maglev", ch, first)
	}
	if err := w.Maps.PutRing(1, w.moved); err != nil {
		t.Fatal(err)
	}
	ch := w.choose(t, port)
	if !ch.FromFlowTable || ch.Addr != first || !ch.Maglev.IsValid() || ch.Maglev == first {
		t.Fatalf("after the table change: %+v, want %s from the flow table and another from Maglev", ch, first)
	}
	s.TCPFlags = "A"
	if got := w.send(t, s); got != first {
		t.Errorf("an ACK went to %s, want the entry's %s", got, first)
	}
	s.TCPFlags = "S"
	if got := w.send(t, s); got != ch.Maglev {
		t.Errorf("a new SYN went to %s, Choose's Maglev pick is %s", got, ch.Maglev)
	}
}
