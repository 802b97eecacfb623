//go:build linux

// Package maps is typed Go access to the load balancer's kernel maps: the only
// place that converts between Go types and the generated C structs.
package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
)

// Protocol numbers as the kernel map keys carry them.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Service flags and backend flags; they mirror enum xlb_svc_flags and
// enum xlb_backend_flags in bpf/include/consts.h.
const (
	svcFlagIPHash       uint32 = 1
	svcFlagDSR          uint32 = 2
	backendFlagUp       uint8  = 1
	backendFlagFailOpen uint8  = 2
	backendOriginShift         = 2 // two bits: Origin
)

// Origin is where the daemon has a backend from, kept in its record so that
// the next daemon, which adopts the record, reports it right (the programs
// do not read it).
type Origin uint8

const (
	OriginConfig Origin = iota // the config file
	OriginAPI                  // the admin API
	OriginDNS                  // DNS discovery
)

// Limits of the kernel maps (bpf/include/consts.h).
const (
	MaxServices = 1024
	MaxBackends = 16384
)

// Maps is the set of load-balancer maps, as loaded or adopted by the loader.
type Maps struct {
	Services     *ebpf.Map
	SvcByID      *ebpf.Map
	Backends     *ebpf.Map
	Nexthops     *ebpf.Map
	MaglevRings  *ebpf.Map
	Flows        *ebpf.Map
	Frags        *ebpf.Map
	RateLimits   *ebpf.Map
	Stats        *ebpf.Map
	SvcStats     *ebpf.Map
	BackendStats *ebpf.Map
	Settings     *ebpf.Map

	// epochMu orders the read-modify-writes of the settings' epoch (see
	// bumpEpoch) among this process's writers; xlbd is the maps' one writer.
	epochMu sync.Mutex
}

// bumpEpoch moves the data plane's epoch on: an established flow is followed
// on its entry alone (no service lookup, no backend checks) only while the
// epoch it was checked under is current, so each flow is checked again on its
// next packet. Every write those checks depend on calls it after the write,
// so that a flow checked against the old state carries the old epoch.
func (m *Maps) bumpEpoch() error {
	if m.Settings == nil {
		return nil
	}
	return m.writeSettings(nil)
}

// writeSettings writes v, or the current settings when v is nil, with the
// next epoch.
func (m *Maps) writeSettings(v *bpf.LbGlobals) error {
	m.epochMu.Lock()
	defer m.epochMu.Unlock()
	var cur bpf.LbGlobals
	if err := m.Settings.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	if v == nil {
		v = &cur
	}
	v.Epoch = nextEpoch(cur.Epoch)
	if err := m.Settings.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return nil
}

// nextEpoch skips 0, which marks a flow never checked.
func nextEpoch(e uint32) uint32 {
	if e+1 == 0 {
		return 1
	}
	return e + 1
}

// FromObjects takes the maps of a loaded LB collection. It does not own them:
// closing stays with whoever loaded them.
func FromObjects(o *bpf.LbMaps) *Maps {
	return &Maps{
		Services:     o.Services,
		SvcByID:      o.SvcById,
		Backends:     o.Backends,
		Nexthops:     o.Nexthops,
		MaglevRings:  o.MaglevRings,
		Flows:        o.Flows,
		Frags:        o.Frags,
		RateLimits:   o.RateLimits,
		Stats:        o.Stats,
		SvcStats:     o.SvcStats,
		BackendStats: o.BackendStats,
		Settings:     o.Settings,
	}
}

// Addr16 converts an address to the kernel's four network-order words (IPv4
// in the first word) and its family (4 or 6).
func Addr16(a netip.Addr) (w [4]uint32, family uint8) {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		w[0] = binary.NativeEndian.Uint32(b[:])
		return w, 4
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return w, 6
}

// AddrFrom16 is the inverse of Addr16.
func AddrFrom16(w [4]uint32, family uint8) netip.Addr {
	if family == 4 {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], w[0])
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[i*4:], w[i])
	}
	return netip.AddrFrom16(b)
}

// Ports travel in network order; in the kernel's structs they are u16 loads
// of those bytes, so on a little-endian host they look byte-swapped.
func portKernel(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func portHost(p uint16) uint16 { return portKernel(p) }

// ServiceKey identifies a service: what a packet's destination must match.
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16
	Proto uint8 // ProtoTCP or ProtoUDP
}

func (k ServiceKey) String() string {
	p := "tcp"
	if k.Proto == ProtoUDP {
		p = "udp"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.VIP, k.Port), p)
}

func (k ServiceKey) kernel() bpf.LbSvcKey {
	addr, fam := Addr16(k.VIP)
	return bpf.LbSvcKey{Addr: addr, Port: portKernel(k.Port), Proto: k.Proto, Family: fam}
}

// Service is one L4 service's record.
type Service struct {
	ServiceKey
	ID       uint32 // 1..MaxServices-1: index of its Maglev table and counters
	RingSize uint32 // prime; length of the table PutRing installs (informational: the kernel reads the size from the table)
	IPHash   bool   // hash the source address only
	DSR      bool   // L2 DSR instead of IPIP
	// Rate limit on new connections per source address: Rate per Per, with
	// bursts of Burst. Rate 0 turns it off.
	Rate  uint64
	Per   time.Duration
	Burst uint64
}

func (s Service) kernel() (bpf.LbSvc, error) {
	v := bpf.LbSvc{Id: s.ID, RingSize: s.RingSize}
	if s.IPHash {
		v.Flags |= svcFlagIPHash
	}
	if s.DSR {
		v.Flags |= svcFlagDSR
	}
	if s.Rate > 0 {
		if s.Per <= 0 {
			return v, fmt.Errorf("rate limit of service %s: period must be positive", s.ServiceKey)
		}
		interval := uint64(s.Per) / s.Rate
		if interval == 0 {
			interval = 1
		}
		burst := max(s.Burst, 1)
		v.RlIntervalNs = interval
		v.RlTauNs = (burst - 1) * interval
	}
	return v, nil
}

// PutService creates or updates a service.
func (m *Maps) PutService(s Service) error {
	if s.ID == 0 || s.ID >= MaxServices {
		return fmt.Errorf("put service %s: id %d out of range 1..%d", s.ServiceKey, s.ID, MaxServices-1)
	}
	v, err := s.kernel()
	if err != nil {
		return err
	}
	k := s.ServiceKey.kernel()
	// An id whose record is empty is given to a service now (ids are
	// reused, lowest first): its counters start at zero, not at what the
	// id's previous service counted. A restarted daemon finds its services'
	// records in place and keeps their counters.
	var cur bpf.LbSvc
	if err := m.SvcByID.Lookup(s.ID, &cur); err != nil {
		return fmt.Errorf("put service %s: %w", s.ServiceKey, err)
	}
	if cur.Id == 0 {
		if err := m.ResetCounters(m.SvcStats, s.ID); err != nil {
			return fmt.Errorf("put service %s: reset counters: %w", s.ServiceKey, err)
		}
	}
	// By id first: established flows find their service there, new flows
	// through the key, and neither must see a service the other lacks.
	if err := m.SvcByID.Put(s.ID, &v); err != nil {
		return fmt.Errorf("put service %s: %w", s.ServiceKey, err)
	}
	if err := m.Services.Put(&k, &v); err != nil {
		return fmt.Errorf("put service %s: %w", s.ServiceKey, err)
	}
	// Its flows carry its flags (dsr).
	if err := m.bumpEpoch(); err != nil {
		return fmt.Errorf("put service %s: %w", s.ServiceKey, err)
	}
	return nil
}

// DeleteService removes a service's record; its table and backends stay until
// they are removed too, so packets stop matching first.
// Established flows of the service re-select (and find no service) from then on.
func (m *Maps) DeleteService(k ServiceKey) error {
	kk := k.kernel()
	var v bpf.LbSvc
	if err := m.Services.Lookup(&kk, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("delete service %s: %w", k, err)
	}
	if err := m.Services.Delete(&kk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete service %s: %w", k, err)
	}
	if err := m.SvcByID.Put(v.Id, &bpf.LbSvc{}); err != nil {
		return fmt.Errorf("delete service %s: %w", k, err)
	}
	if err := m.bumpEpoch(); err != nil {
		return fmt.Errorf("delete service %s: %w", k, err)
	}
	return nil
}

// Backend is one backend's record. Backend IDs are per (service, address).
type Backend struct {
	ID        uint32 // 1..MaxBackends-1
	ServiceID uint32
	Addr      netip.Addr
	Up        bool // healthy: flows to a backend that is not up re-select
	// FailOpen: Up only because its service fails open (its checks say
	// down), so that a restart recovers its health, not the fail-open.
	FailOpen bool
	Origin   Origin
}

// PutBackend creates or updates a backend. A slot given to another (service,
// address) than it held gets a new generation, so flows made for the old
// backend re-select instead of following the id to the new one, and its
// counters start at zero; the slot's cached next hop is invalidated on
// every CPU.
func (m *Maps) PutBackend(b Backend) error {
	if b.ID == 0 || b.ID >= MaxBackends {
		return fmt.Errorf("put backend %s: id %d out of range 1..%d", b.Addr, b.ID, MaxBackends-1)
	}
	addr, fam := Addr16(b.Addr)
	var cur bpf.LbBackend
	if err := m.Backends.Lookup(b.ID, &cur); err != nil {
		return fmt.Errorf("put backend %d (%s): %w", b.ID, b.Addr, err)
	}
	v := bpf.LbBackend{Addr: addr, Family: fam, SvcId: b.ServiceID, Gen: cur.Gen}
	if cur.Family != fam || cur.Addr != addr || cur.SvcId != b.ServiceID {
		v.Gen++
	}
	if b.Up {
		v.Flags = backendFlagUp
		if b.FailOpen {
			v.Flags |= backendFlagFailOpen
		}
	}
	v.Flags |= uint8(b.Origin&3) << backendOriginShift
	if err := m.Backends.Put(b.ID, &v); err != nil {
		return fmt.Errorf("put backend %d (%s): %w", b.ID, b.Addr, err)
	}
	if err := m.InvalidateNexthop(b.ID); err != nil {
		return fmt.Errorf("put backend %d (%s): %w", b.ID, b.Addr, err)
	}
	// After the epoch moved (InvalidateNexthop): the old backend's flows
	// re-select from here on, so what its last packets counted is not
	// carried into the new backend's totals.
	if v.Gen != cur.Gen {
		if err := m.ResetCounters(m.BackendStats, b.ID); err != nil {
			return fmt.Errorf("put backend %d (%s): reset counters: %w", b.ID, b.Addr, err)
		}
	}
	return nil
}

// DeleteBackend clears a backend slot (a new generation: flows still
// pointing at it re-select) and its cached next hop.
func (m *Maps) DeleteBackend(id uint32) error {
	var cur bpf.LbBackend
	if err := m.Backends.Lookup(id, &cur); err != nil {
		return fmt.Errorf("delete backend %d: %w", id, err)
	}
	if err := m.Backends.Put(id, &bpf.LbBackend{Gen: cur.Gen + 1}); err != nil {
		return fmt.Errorf("delete backend %d: %w", id, err)
	}
	if err := m.InvalidateNexthop(id); err != nil {
		return fmt.Errorf("delete backend %d: %w", id, err)
	}
	return nil
}

// InvalidateNexthop clears a backend's cached next hop on every CPU, so the
// next packet to it asks the FIB again (a new address, or a MAC that moved),
// and moves the epoch (bumpEpoch), so every flow checks its backend again.
// PutBackend and DeleteBackend end with it.
func (m *Maps) InvalidateNexthop(id uint32) error {
	if m.Nexthops != nil {
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return err
		}
		// Zeroes of the map's own value size: a build whose next hops are
		// laid out otherwise (the bench's baseline) is cleared alike.
		zero := make([][]byte, n)
		for i := range zero {
			zero[i] = make([]byte, m.Nexthops.ValueSize())
		}
		if err := m.Nexthops.Put(id, zero); err != nil {
			return fmt.Errorf("invalidate next hop of backend %d: %w", id, err)
		}
	}
	if err := m.bumpEpoch(); err != nil {
		return fmt.Errorf("invalidate next hop of backend %d: %w", id, err)
	}
	return nil
}

// BackendGen returns a backend slot's generation (tests, and flows made by hand).
func (m *Maps) BackendGen(id uint32) (uint32, error) {
	var cur bpf.LbBackend
	if err := m.Backends.Lookup(id, &cur); err != nil {
		return 0, fmt.Errorf("lookup backend %d: %w", id, err)
	}
	return cur.Gen, nil
}

func backendOf(id uint32, v *bpf.LbBackend) Backend {
	up := v.Flags&backendFlagUp != 0
	return Backend{ID: id, ServiceID: v.SvcId, Addr: AddrFrom16(v.Addr, v.Family), Up: up, FailOpen: up && v.Flags&backendFlagFailOpen != 0,
		Origin: Origin(v.Flags>>backendOriginShift) & 3}
}

// LookupBackend reads a backend slot.
func (m *Maps) LookupBackend(id uint32) (Backend, error) {
	var v bpf.LbBackend
	if err := m.Backends.Lookup(id, &v); err != nil {
		return Backend{}, fmt.Errorf("lookup backend %d: %w", id, err)
	}
	if v.Family == 0 {
		return Backend{}, fmt.Errorf("lookup backend %d: %w", id, ebpf.ErrKeyNotExist)
	}
	return backendOf(id, &v), nil
}

// PutRing installs a service's Maglev table. It fills a new inner array and
// swaps it in with one update, so the kernel sees the old table or the new
// one, never a mix. The array's entry 0 holds the table's size, so a change
// of size takes effect with the table itself: no packet indexes a table
// with another's modulus.
func (m *Maps) PutRing(serviceID uint32, table []uint32) error {
	if len(table) == 0 || !IsPrime(uint32(len(table))) {
		return fmt.Errorf("put ring of service %d: size %d is not prime", serviceID, len(table))
	}
	inner, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "maglev_ring",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(len(table)) + 1,
		Flags:      1 << 12, // BPF_F_INNER_MAP: tables of different sizes share one outer map
	})
	if err != nil {
		return fmt.Errorf("create ring of service %d: %w", serviceID, err)
	}
	defer inner.Close()
	keys := make([]uint32, len(table)+1)
	vals := make([]uint32, len(table)+1)
	for i := range keys {
		keys[i] = uint32(i)
	}
	vals[ringSizeSlot] = uint32(len(table))
	copy(vals[1:], table)
	if _, err := inner.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("fill ring of service %d: %w", serviceID, err)
	}
	if err := m.MaglevRings.Put(serviceID, inner); err != nil {
		return fmt.Errorf("swap ring of service %d: %w", serviceID, err)
	}
	return nil
}

// Ring reads back a service's installed Maglev table.
func (m *Maps) Ring(serviceID uint32) ([]uint32, error) {
	var inner *ebpf.Map
	if err := m.MaglevRings.Lookup(serviceID, &inner); err != nil {
		return nil, fmt.Errorf("lookup ring of service %d: %w", serviceID, err)
	}
	defer inner.Close()
	info, err := inner.Info()
	if err != nil {
		return nil, fmt.Errorf("ring of service %d: %w", serviceID, err)
	}
	n := info.MaxEntries
	keys := make([]uint32, n)
	vals := make([]uint32, n)
	var cursor ebpf.MapBatchCursor
	got := 0
	for got < int(n) {
		c, err := inner.BatchLookup(&cursor, keys[got:], vals[got:], nil)
		got += c
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read ring of service %d: %w", serviceID, err)
		}
	}
	all := make([]uint32, n)
	for i := 0; i < got; i++ {
		all[keys[i]] = vals[i]
	}
	if n == 0 || all[ringSizeSlot] != n-1 {
		return nil, fmt.Errorf("ring of service %d: size slot says %d, array holds %d entries", serviceID, all[0], n)
	}
	return all[1:], nil
}

// ringSizeSlot is XLB_RING_SIZE_SLOT: the entry of a ring array that holds its size.
const ringSizeSlot = 0

// DeleteRing removes a service's table.
func (m *Maps) DeleteRing(serviceID uint32) error {
	if err := m.MaglevRings.Delete(serviceID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete ring of service %d: %w", serviceID, err)
	}
	return nil
}

// Settings are the data plane's global knobs.
type Settings struct {
	Src4, Src6 netip.Addr // outer source addresses of encapsulated packets
	// Src4Prefix, when valid, replaces Src4 as the IPIP outer source: each flow
	// gets an address of the prefix derived from its client address and ports.
	// Src4 stays the source of route lookups (and of health probes).
	Src4Prefix        netip.Prefix
	UDPTimeout        time.Duration // idle UDP flows re-select after this
	MaxNewFlowsPerCPU uint64        // flow-table inserts per CPU per second; 0 = no cap
	// ICMP too-big answers per client address: ICMPRate per second with bursts of
	// ICMPBurst. 0 takes DefaultICMPRate and DefaultICMPBurst; a negative rate turns
	// the limit off.
	ICMPRate  int
	ICMPBurst int
}

// Defaults of the ICMP too-big answer limit per client.
const (
	DefaultICMPRate  = 10
	DefaultICMPBurst = 10
)

// DefaultUDPTimeout is how long an idle UDP flow keeps its backend.
const DefaultUDPTimeout = 30 * time.Second

// PutSettings writes the global settings.
func (m *Maps) PutSettings(s Settings) error {
	v := bpf.LbGlobals{MaxNewFlowsCpu: s.MaxNewFlowsPerCPU}
	// The program takes its flow-table mask from here: the buckets of one
	// CPU's slice (a power of two, set by the loader) less one.
	if m.Flows != nil {
		v.FlowMask = m.flowBuckets() - 1
	}
	if s.Src4.IsValid() {
		if !s.Src4.Is4() {
			return fmt.Errorf("settings: outer IPv4 source %s is not IPv4", s.Src4)
		}
		w, _ := Addr16(s.Src4)
		v.Src4 = w[0]
	}
	if s.Src4Prefix.IsValid() {
		p := s.Src4Prefix.Masked()
		if !p.Addr().Is4() || p.Bits() >= 32 {
			return fmt.Errorf("settings: IPIP source prefix %s is not an IPv4 prefix shorter than /32", s.Src4Prefix)
		}
		w, _ := Addr16(p.Addr())
		var mask [4]byte
		binary.BigEndian.PutUint32(mask[:], uint32(1)<<(32-p.Bits())-1)
		v.Src4Prefix = w[0]
		v.Src4Mask = binary.NativeEndian.Uint32(mask[:])
	}
	if s.Src6.IsValid() {
		if !s.Src6.Is6() || s.Src6.Is4In6() {
			return fmt.Errorf("settings: outer IPv6 source %s is not IPv6", s.Src6)
		}
		v.Src6, _ = Addr16(s.Src6)
	}
	rate, burst := s.ICMPRate, s.ICMPBurst
	if rate == 0 {
		rate = DefaultICMPRate
	}
	if burst <= 0 {
		burst = DefaultICMPBurst
	}
	if rate > 0 {
		v.IcmpIntervalNs = uint64(time.Second) / uint64(rate)
		v.IcmpTauNs = uint64(burst-1) * v.IcmpIntervalNs
	}
	v.UdpTimeoutNs = uint64(s.UDPTimeout)
	if s.UDPTimeout <= 0 {
		v.UdpTimeoutNs = uint64(DefaultUDPTimeout)
	}
	if err := m.writeSettings(&v); err != nil {
		return fmt.Errorf("put settings: %w", err)
	}
	return nil
}

// FlowKey is a connection's 5-tuple as the client sends it.
type FlowKey struct {
	Src, Dst netip.AddrPort
	Proto    uint8
}

func (k FlowKey) kernel() bpf.LbFlowKey {
	src, fam := Addr16(k.Src.Addr())
	dst, _ := Addr16(k.Dst.Addr())
	return bpf.LbFlowKey{Src: src, Dst: dst, Sport: portKernel(k.Src.Port()), Dport: portKernel(k.Dst.Port()),
		Proto: k.Proto, Family: fam}
}

func flowKeyFrom(k bpf.LbFlowKey) FlowKey {
	return FlowKey{
		Src:   netip.AddrPortFrom(AddrFrom16(k.Src, k.Family), portHost(k.Sport)),
		Dst:   netip.AddrPortFrom(AddrFrom16(k.Dst, k.Family), portHost(k.Dport)),
		Proto: k.Proto,
	}
}

// ListServices reads every service record.
func (m *Maps) ListServices() ([]Service, error) {
	var (
		out []Service
		k   bpf.LbSvcKey
		v   bpf.LbSvc
	)
	it := m.Services.Iterate()
	for it.Next(&k, &v) {
		s := Service{
			ServiceKey: ServiceKey{VIP: AddrFrom16(k.Addr, k.Family), Port: portHost(k.Port), Proto: k.Proto},
			ID:         v.Id, RingSize: v.RingSize,
			IPHash: v.Flags&svcFlagIPHash != 0, DSR: v.Flags&svcFlagDSR != 0,
		}
		if v.RlIntervalNs > 0 {
			// The kernel keeps the interval, not the configured fraction.
			s.Rate, s.Per, s.Burst = 1, time.Duration(v.RlIntervalNs), v.RlTauNs/v.RlIntervalNs+1
		}
		out = append(out, s)
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("iterate services: %w", err)
	}
	return out, nil
}

// ListBackends reads every used backend slot.
func (m *Maps) ListBackends() ([]Backend, error) {
	var (
		out []Backend
		k   uint32
		v   bpf.LbBackend
	)
	it := m.Backends.Iterate()
	for it.Next(&k, &v) {
		if v.Family == 0 {
			continue
		}
		out = append(out, backendOf(k, &v))
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("iterate backends: %w", err)
	}
	return out, nil
}

// OpenPinned opens the maps a loader pinned under pinPath, for tools that
// read them without loading the program (xlbctl maps). Close releases them.
func OpenPinned(pinPath string) (*Maps, error) {
	m := &Maps{}
	for name, dst := range map[string]**ebpf.Map{
		bpf.LbMapServices: &m.Services, bpf.LbMapSvcById: &m.SvcByID, bpf.LbMapBackends: &m.Backends, bpf.LbMapNexthops: &m.Nexthops, bpf.LbMapMaglevRings: &m.MaglevRings,
		bpf.LbMapFlows: &m.Flows, bpf.LbMapFrags: &m.Frags, bpf.LbMapRateLimits: &m.RateLimits,
		bpf.LbMapStats: &m.Stats, bpf.LbMapSvcStats: &m.SvcStats, bpf.LbMapBackendStats: &m.BackendStats,
		bpf.LbMapSettings: &m.Settings,
	} {
		mp, err := ebpf.LoadPinnedMap(pinPath+"/"+name, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("open pinned map %s under %s (is xlbd's data plane loaded?): %w", name, pinPath, err)
		}
		*dst = mp
	}
	return m, nil
}

// Close closes every map; only for Maps from OpenPinned.
func (m *Maps) Close() error {
	var errs []error
	for _, mp := range []*ebpf.Map{m.Services, m.SvcByID, m.Nexthops, m.Backends, m.MaglevRings, m.Flows, m.Frags, m.RateLimits, m.Stats, m.SvcStats, m.BackendStats, m.Settings} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}
