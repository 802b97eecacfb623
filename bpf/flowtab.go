//go:build linux

package bpf

import (
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The flow table's shape (bpf/include/consts.h): a per-CPU array of buckets of
// FlowWays ways each.
const (
	// FlowWays is XLB_FLOW_WAYS.
	FlowWays = 4
	// FlowEntriesDefault is XLB_FLOWS_DEFAULT: xdp.flow_table_size's default.
	FlowEntriesDefault = 1 << 20

	flowWaySize = 72 // sizeof(struct flow_way) and its tag and age in the bucket
)

// FlowBuckets is the number of buckets per CPU that holds a table of entries
// flows in total over cpus CPUs: entries / FlowWays / cpus, rounded up to a
// power of two (the program masks the flow hash), at least 1.
func FlowBuckets(entries uint32, cpus int) uint32 { return flowBuckets(entries, cpus, FlowWays) }

func flowBuckets(entries uint32, cpus int, ways uint32) uint32 {
	n := uint64(entries) / uint64(max(ways, 1)) / uint64(max(cpus, 1))
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(n-1)
}

// FlowEntries is the inverse of FlowBuckets: the entries of a table of
// buckets per CPU, over cpus CPUs.
func FlowEntries(buckets uint32, cpus int) uint64 {
	return uint64(buckets) * FlowWays * uint64(max(cpus, 1))
}

// SizeFlowTable sets the flows map of an LB collection to hold entries flows
// in total (0: FlowEntriesDefault) on this machine's possible CPUs, and
// returns its buckets per CPU. The map holds a slice of that many buckets
// per CPU (a per-CPU array of an older build: that many buckets, each per
// CPU).
func SizeFlowTable(spec *ebpf.CollectionSpec, entries uint32) (uint32, error) {
	ms, ok := spec.Maps[LbMapFlows]
	if !ok {
		return 0, fmt.Errorf("size flow table: no map %q", LbMapFlows)
	}
	if entries == 0 {
		entries = FlowEntriesDefault
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, fmt.Errorf("size flow table: %w", err)
	}
	// The ways from the bucket's type: a build with another XLB_FLOW_WAYS or
	// another way size (the bench compares them) gets the same entries.
	buckets := flowBuckets(entries, cpus, bucketWays(ms))
	ms.MaxEntries = buckets
	if ms.Type == ebpf.Array {
		ms.MaxEntries = buckets * uint32(cpus)
	}
	return buckets, nil
}

// bucketWays is the length of the ways array of a flows map's bucket type,
// or, without BTF, its size over this build's way size.
func bucketWays(ms *ebpf.MapSpec) uint32 {
	if s, ok := btf.UnderlyingType(ms.Value).(*btf.Struct); ok {
		for _, m := range s.Members {
			if a, ok := btf.UnderlyingType(m.Type).(*btf.Array); ok && m.Name == "ways" {
				return a.Nelems
			}
		}
	}
	return ms.ValueSize / flowWaySize
}
