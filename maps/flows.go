//go:build linux

package maps

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
)

// The connection table is a per-CPU array of buckets of bpf.FlowWays ways
// (bpf/include/flowtab.h): a flow lives in the bucket its hash (HashFlow)
// masked by the bucket count names, on the CPU that saw it (and on others it
// migrated to). This file is the Go twin of flowtab.h.

// Flow is one connection-table entry.
type Flow struct {
	FlowKey
	BackendID uint32
	ServiceID uint32
	Gen       uint32 // the backend slot's generation when the flow was made
	LastSeen  uint64 // CLOCK_MONOTONIC (coarse) ns: UDP, of the last packet; TCP, of the entry's making
	CPU       int    `json:"-"` // whose table holds this copy (FlowCopies only)
}

func flowFrom(k FlowKey, v bpf.LbFlow) Flow {
	return Flow{FlowKey: k, BackendID: v.BackendId, ServiceID: uint32(v.SvcId), Gen: v.Gen, LastSeen: v.AtimeNs}
}

// flowHash is hash_flow of a kernel key: HashFlow of its 5-tuple.
func flowHash(k bpf.LbFlowKey) uint32 {
	var b [40]byte
	for i, w := range k.Src {
		binary.NativeEndian.PutUint32(b[i*4:], w)
	}
	for i, w := range k.Dst {
		binary.NativeEndian.PutUint32(b[16+i*4:], w)
	}
	binary.NativeEndian.PutUint16(b[32:], k.Sport)
	binary.NativeEndian.PutUint16(b[34:], k.Dport)
	b[36], b[37] = k.Proto, k.Family
	binary.NativeEndian.PutUint16(b[38:], k.Pad)
	return hashKey(&b)
}

// FlowBucket is the bucket of the connection table (of buckets buckets per
// CPU, a power of two) a flow lives in.
func FlowBucket(k FlowKey, buckets uint32) uint32 {
	return flowHash(k.kernel()) & (buckets - 1)
}

// flowTag is flow_tag.
func flowTag(hash uint32) uint32 { return hash | 1 }

// newestAge is the age of b's most recently seen way (ages are the
// kernel's jiffies, which userspace does not read): an entry put with it
// counts as just seen.
func newestAge(b *bpf.LbFlowBucket) uint32 {
	var newest uint32
	found := false
	for i := range b.Ways {
		if b.Tag[i] != 0 && (!found || int32(b.Age[i]-newest) > 0) {
			newest, found = b.Age[i], true
		}
	}
	return newest
}

// flowFind is flow_find: the way of b holding k, or -1.
func flowFind(b *bpf.LbFlowBucket, k bpf.LbFlowKey) int {
	tag := flowTag(flowHash(k))
	for i := range b.Ways {
		if b.Tag[i] == tag && b.Ways[i].Key == k {
			return i
		}
	}
	return -1
}

// flowStore is flow_store: k's own way, else an empty one, else the one
// seen longest ago.
func flowStore(b *bpf.LbFlowBucket, k bpf.LbFlowKey, f bpf.LbFlow, age uint32) {
	victim := flowFind(b, k)
	if victim < 0 {
		victim = 0
		for i := range b.Ways {
			if b.Tag[i] == 0 {
				victim = i
				break
			}
			if int32(b.Age[i]-b.Age[victim]) < 0 {
				victim = i
			}
		}
	}
	b.Tag[victim], b.Age[victim] = flowTag(flowHash(k)), age
	b.Ways[victim] = bpf.LbFlowWay{Key: k, Flow: f}
}

// flowCPUs is how many CPU slices the table has: the possible CPUs.
func flowCPUs() (int, error) {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, fmt.Errorf("flow table: %w", err)
	}
	return max(n, 1), nil
}

// flowBuckets is the buckets of one CPU's slice (of an older build's per-CPU
// array, which the bench times as a baseline: its entries).
func (m *Maps) flowBuckets() uint32 {
	n, err := flowCPUs()
	if err != nil || m.Flows.Type() == ebpf.PerCPUArray {
		return m.Flows.MaxEntries()
	}
	return m.Flows.MaxEntries() / uint32(n)
}

// bucketCopies reads bucket idx of every CPU's slice.
func (m *Maps) bucketCopies(idx uint32) ([]bpf.LbFlowBucket, error) {
	n, err := flowCPUs()
	if err != nil {
		return nil, err
	}
	per := make([]bpf.LbFlowBucket, n)
	for c := range per {
		if err := m.Flows.Lookup(uint32(c)*m.flowBuckets()+idx, &per[c]); err != nil {
			return nil, err
		}
	}
	return per, nil
}

// LookupFlow returns the entry a packet of the flow follows. Each CPU that
// saw the flow holds a copy (a sender that migrated leaves one behind); of
// those the most recently seen one that is still valid (service in place,
// same backend generation, backend up) wins, else the most recently seen.
func (m *Maps) LookupFlow(k FlowKey) (Flow, error) {
	copies, err := m.FlowCopies(k)
	if err != nil {
		return Flow{}, err
	}
	if len(copies) == 0 {
		return Flow{}, fmt.Errorf("lookup flow %v: %w", k, ebpf.ErrKeyNotExist)
	}
	for _, f := range copies {
		if _, ok := m.validFlow(f); ok {
			return f, nil
		}
	}
	return copies[0], nil
}

// FlowCopies returns the copies of a flow's entry, one per CPU that holds
// it (Flow.CPU), the most recently seen first (by the bucket's ages).
func (m *Maps) FlowCopies(k FlowKey) ([]Flow, error) {
	kk := k.kernel()
	per, err := m.bucketCopies(flowHash(kk) & (m.flowBuckets() - 1))
	if err != nil {
		return nil, fmt.Errorf("lookup flow %v: %w", k, err)
	}
	var (
		out  []Flow
		ages = map[int]uint32{}
	)
	for c := range per {
		if w := flowFind(&per[c], kk); w >= 0 {
			f := flowFrom(k, per[c].Ways[w].Flow)
			f.CPU = c
			ages[c] = per[c].Age[w]
			out = append(out, f)
		}
	}
	// Ages are jiffies, the same clock on every CPU.
	slices.SortStableFunc(out, func(a, b Flow) int { return cmp.Compare(int32(ages[b.CPU]-ages[a.CPU]), 0) })
	return out, nil
}

// PutFlow pins a flow to a backend on every CPU (tests, and restoring state),
// evicting as the data plane would. The flow only holds while ServiceID and
// Gen match the backend's record. The bucket is read and written back whole:
// an insert the data plane makes into the same bucket in between is lost.
func (m *Maps) PutFlow(f Flow) error {
	kk := f.FlowKey.kernel()
	idx := flowHash(kk) & (m.flowBuckets() - 1)
	per, err := m.bucketCopies(idx)
	if err != nil {
		return fmt.Errorf("put flow %v: %w", f.FlowKey, err)
	}
	v := bpf.LbFlow{BackendId: f.BackendID, SvcId: uint16(f.ServiceID), Gen: f.Gen, AtimeNs: f.LastSeen}
	for c := range per {
		flowStore(&per[c], kk, v, newestAge(&per[c]))
		if err := m.Flows.Put(uint32(c)*m.flowBuckets()+idx, &per[c]); err != nil {
			return fmt.Errorf("put flow %v: %w", f.FlowKey, err)
		}
	}
	return nil
}

// flowBatch is how many buckets of each CPU one read takes.
const flowBatch = 1024

// eachFlow calls fn with every entry of the table, once per flow (a flow
// several CPUs hold counts once, with its most recent copy), until fn
// returns false. It reads the CPUs' slices side by side, through the map's
// memory (a 1M-entry table is some 72 MB, so callers do it on request
// only), or bucket by bucket when the map cannot be mapped: a read-only
// descriptor (OpenPinned's) cannot map a BPF map. The data plane writes
// while it reads: a bucket read mid-write may show a way half old, half
// new, which a listing can live with.
func (m *Maps) eachFlow(fn func(Flow) bool) error {
	cpus, err := flowCPUs()
	if err != nil {
		return err
	}
	buckets := m.flowBuckets()
	read := func(c int, first uint32, into []bpf.LbFlowBucket) error {
		for i := range into {
			if err := m.Flows.Lookup(uint32(c)*buckets+first+uint32(i), &into[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if mem, err := m.Flows.Memory(); err == nil {
		read = func(c int, first uint32, into []bpf.LbFlowBucket) error {
			size := int64(unsafe.Sizeof(bpf.LbFlowBucket{}))
			raw := unsafe.Slice((*byte)(unsafe.Pointer(&into[0])), int64(len(into))*size)
			_, err := mem.ReadAt(raw, (int64(c)*int64(buckets)+int64(first))*size)
			return err
		}
	}
	chunk := make([][]bpf.LbFlowBucket, cpus)
	for c := range chunk {
		chunk[c] = make([]bpf.LbFlowBucket, min(buckets, flowBatch))
	}
	type way struct {
		bpf.LbFlowWay
		age uint32
	}
	seen := make([]way, 0, bpf.FlowWays*cpus)
	for first := uint32(0); first < buckets; first += flowBatch {
		n := min(buckets-first, flowBatch)
		for c := range chunk {
			if err := read(c, first, chunk[c][:n]); err != nil {
				return fmt.Errorf("read flows: %w", err)
			}
		}
		for i := range n {
			seen = seen[:0]
			for c := range chunk {
				b := &chunk[c][i]
			ways:
				for wi, w := range b.Ways {
					if b.Tag[wi] == 0 {
						continue
					}
					for j := range seen {
						if seen[j].Key == w.Key {
							if int32(b.Age[wi]-seen[j].age) > 0 {
								seen[j] = way{w, b.Age[wi]}
							}
							continue ways
						}
					}
					seen = append(seen, way{w, b.Age[wi]})
				}
			}
			for _, w := range seen {
				if !fn(flowFrom(flowKeyFrom(w.Key), w.Flow)) {
					return nil
				}
			}
		}
	}
	return nil
}

// ListFlows lists the connection table, up to limit entries (0 = all).
func (m *Maps) ListFlows(limit int) ([]Flow, error) {
	var out []Flow
	err := m.eachFlow(func(f Flow) bool {
		out = append(out, f)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// CountFlows counts connection-table entries per backend id: those made
// for the backend that holds the id now (its service and its slot's
// generation). Ids are reused, and an entry of the id's previous owner,
// which the program re-selects at its next packet, is nobody's active flow
// (nor what keeps a draining backend from being removed).
func (m *Maps) CountFlows() (map[uint32]int, error) {
	n := make(map[uint32]int)
	owners := map[uint32]bpf.LbBackend{}
	err := m.eachFlow(func(f Flow) bool {
		be, ok := owners[f.BackendID]
		if !ok {
			if m.Backends.Lookup(f.BackendID, &be) != nil {
				be = bpf.LbBackend{}
			}
			owners[f.BackendID] = be
		}
		if be.Family != 0 && be.SvcId == f.ServiceID && be.Gen == f.Gen {
			n[f.BackendID]++
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}
