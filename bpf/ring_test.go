//go:build linux

package bpf_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/pkt"
)

// xdpMD is struct xdp_md, to set the ingress interface of a run.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// TestRingSizeChangeUnderTraffic swaps a service's table between sizes
// (as the daemon does when a service grows past 655 backends or shrinks
// back: the table, then the service record) while new flows keep arriving
// on another CPU. No packet may index a table with the other table's
// modulus: nothing is dropped as "no backend".
func TestRingSizeChangeUnderTraffic(t *testing.T) {
	w := newWorld(t)
	var mb []maps.MaglevBackend
	for id := uint32(10); id <= 12; id++ {
		mb = append(mb, maps.MaglevBackend{Key: w.addrOf[id].String(), ID: id, Weight: 1})
	}
	svc := maps.Service{ServiceKey: maps.ServiceKey{VIP: dsrVIP4, Port: 80, Proto: maps.ProtoTCP}, ID: 4, DSR: true}
	// A DSR SYN reruns the same path on every repeat of BPF_PROG_TEST_RUN
	// (only the MACs change): each repeat is a fresh Maglev pick.
	var frames [][]byte
	for i := range 16 {
		frames = append(frames, pkt.MustBuild(t, tcp4(client4, uint16(43000+i*977), dsrVIP4, 80, "S")))
	}
	if err := w.Maps.ClearStats(); err != nil {
		t.Fatal(err)
	}
	var (
		stop atomic.Bool
		runs atomic.Int64
		wg   sync.WaitGroup
		rerr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rerr = w.Host.Do(func() error {
			for i := 0; !stop.Load(); i++ {
				f := frames[i%len(frames)]
				opts := &ebpf.RunOptions{Data: f, DataOut: make([]byte, len(f)+64), Repeat: 200,
					Context: xdpMD{DataEnd: uint32(len(f)), IngressIfindex: uint32(w.Link.Index)}}
				if _, err := w.Objs.XlbLb.Run(opts); err != nil {
					return err
				}
				runs.Add(200)
			}
			return nil
		})
	}()
	// Enough swaps, with traffic between them. (An outer-map update waits
	// for an RCU grace period, so a swap takes milliseconds.)
	for i := 0; i < 40 || runs.Load() < 20_000; i++ {
		size := uint32(65537)
		if i%2 == 1 {
			size = 7
		}
		w.SetRing(t, svc.ID, size, mb)
		svc.RingSize = size
		if err := w.Maps.PutService(svc); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got := w.Stat(t, "drop_no_backend"); got != 0 {
		t.Errorf("%d of %d packets dropped as no backend while table sizes changed", got, runs.Load())
	}
	// A run interrupted by a signal is retried whole: tx may exceed runs.
	if got := w.Stat(t, "tx"); got < uint64(runs.Load()) {
		t.Errorf("tx %d of %d runs", got, runs.Load())
	}
}
