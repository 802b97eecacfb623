//go:build linux

// Package integration runs xlb against real TCP across network namespaces:
// a client, a balancer and three backends on one bridge.
package integration

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/loader"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/netns"
)

var (
	vip4 = netip.MustParseAddr("10.0.0.100")
	vip6 = netip.MustParseAddr("fd00::100")
	lb4  = netip.MustParseAddr("10.0.0.2")
	lb6  = netip.MustParseAddr("fd00::2")
)

// decapAllow is the backends' -allow: the balancer's own addresses.
var decapAllow = []netip.Prefix{netip.PrefixFrom(lb4, 32), netip.PrefixFrom(lb6, 128)}

// lab is the topology: client, lb and backends b1..b3 on one bridge.
type lab struct {
	tp       *netns.Topology
	client   *netns.Host
	lb       *netns.Host
	lbLink   netns.Link
	backends []*netns.Host
	links    []netns.Link
	dp       *loader.Dataplane
	maps     *maps.Maps
}

func backendAddr4(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(11 + i)}) }
func backendAddr6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd00::%x", 0x11+i)) }

// newTopo builds the topology; backends serve their name on VIP:80 (IPv4
// and IPv6) and, with decap, run xlb's decapsulation program.
func newTopo(t *testing.T, decap bool) *lab {
	t.Helper()
	l := &lab{tp: netns.New(t)}
	l.client = l.tp.AddHost("client")
	l.lb = l.tp.AddHost("lb")
	l.tp.Connect(l.client, "eth0", "10.0.0.1/24", "fd00::1/64")
	// A veth hands its peer packets whose checksum the sender left to
	// offload; native XDP forwards frames without that note, so a wire's
	// worth of checksums must be in the packet, as from a real NIC.
	l.client.Run(t, "ethtool", "-K", "eth0", "tx", "off")
	l.lbLink = l.tp.Connect(l.lb, "eth0", lb4.String()+"/24", lb6.String()+"/64")
	// The balancer's own health probes through the forwarding path
	// (health_check.via: vip) need whole checksums too.
	l.lb.Run(t, "ethtool", "-K", "eth0", "tx", "off")
	l.client.Route(t, vip4.String()+"/32", "via", lb4.String())
	l.client.Route(t, "-6", vip6.String()+"/128", "via", lb6.String())
	// A veth drops XDP_TX frames unless its peer runs XDP too.
	br := l.tp.AddBridge()
	if err := br.Do(func() error { return loader.AttachPass(l.lbLink.PeerName) }); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("b%d", i+1)
		h := l.tp.AddHost(name)
		link := l.tp.Connect(h, "eth0", backendAddr4(i).String()+"/24", backendAddr6(i).String()+"/64")
		h.AddAddr(t, "lo", vip4.String()+"/32")
		h.AddAddr(t, "lo", vip6.String()+"/128")
		// Backends never answer ARP for the VIP: only the balancer's XDP
		// program may bring them VIP traffic (as in production DSR).
		h.Sysctl(t, "net.ipv4.conf.all.arp_ignore", "1")
		h.Sysctl(t, "net.ipv4.conf.all.arp_announce", "2")
		l.backends = append(l.backends, h)
		l.links = append(l.links, link)
		if decap {
			if err := h.Do(func() error { return loader.AttachDecap("eth0", loader.ModeNative, decapAllow, nil) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	return l
}

// serveNames starts each backend's name server on VIP:80.
func (l *lab) serveNames(t *testing.T) {
	for i, h := range l.backends {
		name := fmt.Sprintf("b%d", i+1)
		for _, addr := range []string{vip4.String() + ":80", "[" + vip6.String() + "]:80"} {
			ln, err := h.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("%s listen %s: %v", name, addr, err)
			}
			t.Cleanup(func() { ln.Close() })
			go serveName(ln, name)
		}
	}
}

// newLab builds the topology and attaches the balancer to lb's eth0 in the
// given mode, driving the maps directly (no daemon).
func newLab(t *testing.T, mode loader.Mode, decap bool) *lab {
	t.Helper()
	l := newTopo(t, decap)
	l.serveNames(t)
	for i, link := range l.links {
		// The balancer resolves backends once; the daemon keeps this warm in production.
		l.lb.Neigh(t, "eth0", backendAddr4(i), link.MAC)
		l.lb.Neigh(t, "eth0", backendAddr6(i), link.MAC)
	}
	l.lb.Sysctl(t, "net.ipv4.conf.all.forwarding", "1")
	l.lb.Sysctl(t, "net.ipv4.conf.eth0.forwarding", "1")
	l.lb.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	dp, err := loader.Load(loader.Options{NoPin: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	l.dp = dp
	l.maps = maps.FromObjects(&dp.Objs.LbMaps)
	if err := l.maps.PutSettings(maps.Settings{Src4: lb4, Src6: lb6}); err != nil {
		t.Fatal(err)
	}
	if err := l.lb.Do(func() error { _, err := dp.Attach("eth0", mode); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.lb.Do(func() error { return dp.Detach("eth0") }) })
	return l
}

func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, name)
		}()
	}
}

// install puts one service with weighted backends (b1..b3) into the maps.
func (l *lab) install(t *testing.T, id uint32, vip netip.Addr, dsr bool, weights []uint32) {
	t.Helper()
	if err := l.maps.PutService(maps.Service{ServiceKey: maps.ServiceKey{VIP: vip, Port: 80, Proto: maps.ProtoTCP}, ID: id, DSR: dsr, RingSize: maps.DefaultRingSize}); err != nil {
		t.Fatal(err)
	}
	var mb []maps.MaglevBackend
	for i, w := range weights {
		addr := backendAddr4(i)
		if vip.Is6() {
			addr = backendAddr6(i)
		}
		bid := id*10 + uint32(i) + 1
		if err := l.maps.PutBackend(maps.Backend{ID: bid, ServiceID: id, Addr: addr, Up: true}); err != nil {
			t.Fatal(err)
		}
		mb = append(mb, maps.MaglevBackend{Key: addr.String(), ID: bid, Weight: w})
	}
	table, err := maps.BuildMaglev(mb, maps.DefaultRingSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.maps.PutRing(id, table); err != nil {
		t.Fatal(err)
	}
}

// connect opens n TCP connections from the client to addr, from `workers`
// threads in parallel, and counts which backend answered each.
func (l *lab) connect(t *testing.T, addr string, n, workers int) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		failed []error
		wg     sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(share int) {
			defer wg.Done()
			err := l.client.Do(func() error {
				buf := make([]byte, 16)
				for i := 0; i < share; i++ {
					c, err := net.DialTimeout("tcp", addr, 2*time.Second)
					if err != nil {
						return fmt.Errorf("connection %d: %w", i, err)
					}
					c.SetDeadline(time.Now().Add(2 * time.Second))
					k, err := io.ReadFull(c, buf[:2])
					c.Close()
					if err != nil {
						return fmt.Errorf("connection %d: read: %w", i, err)
					}
					mu.Lock()
					counts[string(buf[:k])]++
					mu.Unlock()
				}
				return nil
			})
			if err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
			}
		}(n / workers)
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d workers failed; first: %v (answered so far: %v)", len(failed), failed[0], counts)
	}
	return counts
}

// checkShares asserts each backend's share of connections is within 10% of
// its weight's share.
func checkShares(t *testing.T, counts map[string]int, weights []uint32) {
	t.Helper()
	var total, wsum float64
	for _, c := range counts {
		total += float64(c)
	}
	for _, w := range weights {
		wsum += float64(w)
	}
	for i, w := range weights {
		name := fmt.Sprintf("b%d", i+1)
		want := float64(w) / wsum
		got := float64(counts[name]) / total
		if math.Abs(got-want)/want > 0.10 {
			t.Errorf("%s: %.1f%% of %d connections, want %.1f%% ±10%% (counts %v)", name, 100*got, int(total), 100*want, counts)
		} else {
			t.Logf("%s: %.1f%% of connections (weight share %.1f%%)", name, 100*got, 100*want)
		}
	}
}

func TestTCPThroughDSR(t *testing.T) {
	l := newLab(t, loader.ModeNative, false)
	weights := []uint32{1, 1, 2}
	l.install(t, 1, vip4, true, weights)
	counts := l.connect(t, vip4.String()+":80", 4000, 4)
	checkShares(t, counts, weights)
	st, _ := l.maps.StatByName("tx")
	if st.Packets == 0 {
		t.Errorf("the balancer forwarded nothing: traffic bypassed XDP")
	}
}

func TestTCPThroughIPIP(t *testing.T) {
	l := newLab(t, loader.ModeNative, true)
	weights := []uint32{1, 1, 2}
	l.install(t, 1, vip4, false, weights)
	counts := l.connect(t, vip4.String()+":80", 4000, 4)
	checkShares(t, counts, weights)
	// The same over IPv6 (IP6IP6).
	l.install(t, 2, vip6, false, weights)
	counts6 := l.connect(t, "["+vip6.String()+"]:80", 400, 4)
	if len(counts6) != 3 {
		t.Errorf("IPv6: connections reached %v, want all three backends", counts6)
	}
}

func TestTCPThroughIPIPGenericMode(t *testing.T) {
	l := newLab(t, loader.ModeGeneric, true)
	l.install(t, 1, vip4, false, []uint32{1, 1, 1})
	counts := l.connect(t, vip4.String()+":80", 300, 2)
	if len(counts) != 3 {
		t.Errorf("connections reached %v, want all three backends", counts)
	}
}
