//go:build linux

package bpf_test

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/maps"
)

func maxCPUs(t *testing.T) int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The sizes _Static_assert'ed in bpf/include/structs.h.
func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"svc_key", unsafe.Sizeof(bpf.LbSvcKey{}), 20},
		{"svc", unsafe.Sizeof(bpf.LbSvc{}), 32},
		{"backend", unsafe.Sizeof(bpf.LbBackend{}), 28},
		{"flow_key", unsafe.Sizeof(bpf.LbFlowKey{}), 40},
		{"flow", unsafe.Sizeof(bpf.LbFlow{}), 24},
		{"flow_way", unsafe.Sizeof(bpf.LbFlowWay{}), 64},
		{"flow_bucket", unsafe.Sizeof(bpf.LbFlowBucket{}), 72 * bpf.FlowWays},
		{"frag_key", unsafe.Sizeof(bpf.LbFragKey{}), 40},
		{"frag", unsafe.Sizeof(bpf.LbFrag{}), 16},
		{"rl_key", unsafe.Sizeof(bpf.LbRlKey{}), 24},
		{"counters", unsafe.Sizeof(bpf.LbCounters{}), 24},
		{"stat", unsafe.Sizeof(bpf.LbStat{}), 16},
		{"globals", unsafe.Sizeof(bpf.LbGlobals{}), 72},
		{"icmp_rl_key", unsafe.Sizeof(bpf.LbIcmpRlKey{}), 20},
	} {
		if c.got != c.want {
			t.Errorf("%s: Go size %d, C size %d", c.name, c.got, c.want)
		}
	}
}

// TestStatNamesFollowEnum keeps maps.StatNames in the order of enum xlb_stat.
func TestStatNamesFollowEnum(t *testing.T) {
	spec, err := bpf.LoadLb()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("xlb_stat", &e); err != nil {
		t.Fatal(err)
	}
	// C name -> Go label, where they differ beyond case and prefix.
	renamed := map[string]string{
		"EV_ICMP_TOO_BIG_FWD": "icmp_too_big_forwarded",
		"ICMP_TOO_BIG_SENT":   "icmp_too_big_sent",
		"EV_FLOW_MISS":        "flow_miss_non_syn",
		"EV_FLOW_RESELECT":    "flow_reselect",
		"EV_FLOW_SKIPPED":     "flow_insert_skipped",
		"EV_FLOW_UDP_EXPIRED": "flow_udp_expired",
		"DROP_ICMP_LIMITED":   "drop_icmp_rate_limit",
		"EV_FLOW_OTHER_CPU":   "flow_other_cpu",
	}
	var want []string
	for _, v := range e.Values {
		name := strings.TrimPrefix(v.Name, "XLB_STAT_")
		if name == "MAX" {
			continue
		}
		if r, ok := renamed[name]; ok {
			want = append(want, r)
		} else {
			want = append(want, strings.ToLower(name))
		}
	}
	if strings.Join(want, ",") != strings.Join(maps.StatNames, ",") {
		t.Errorf("maps.StatNames\n got %v\nwant %v", maps.StatNames, want)
	}
}
