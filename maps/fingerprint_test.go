package maps

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// node is one balancer's view of a service, kept as the daemon keeps it:
// backends by address with node-local IDs (lowest free first), weights,
// drains and health; its table is built from the weighted, healthy ones.
type node struct {
	ids     map[string]uint32
	used    map[uint32]bool
	weight  map[string]uint32
	drained map[string]bool
	down    map[string]bool
}

func newNode() *node {
	return &node{ids: map[string]uint32{}, used: map[uint32]bool{}, weight: map[string]uint32{}, drained: map[string]bool{}, down: map[string]bool{}}
}

func (n *node) add(addr string, w uint32) {
	if _, ok := n.ids[addr]; !ok {
		id := uint32(1)
		for n.used[id] {
			id++
		}
		n.used[id], n.ids[addr] = true, id
	}
	n.weight[addr] = w
}

func (n *node) remove(addr string) {
	delete(n.used, n.ids[addr])
	delete(n.ids, addr)
	delete(n.weight, addr)
	delete(n.drained, addr)
	delete(n.down, addr)
}

func (n *node) table(t *testing.T) ([]uint32, map[uint32]string) {
	t.Helper()
	var mb []MaglevBackend
	keys := map[uint32]string{}
	for addr, id := range n.ids {
		keys[id] = addr
		if !n.drained[addr] && !n.down[addr] && n.weight[addr] > 0 {
			mb = append(mb, MaglevBackend{Key: addr, ID: id, Weight: n.weight[addr]})
		}
	}
	tab, err := BuildMaglev(mb, RingSizeFor(len(n.ids)))
	if err != nil {
		t.Fatal(err)
	}
	return tab, keys
}

// byAddress is the table as backend addresses, slot by slot: what decides
// where a flow goes, whatever the IDs.
func byAddress(tab []uint32, keys map[uint32]string) []byte {
	var b bytes.Buffer
	for _, id := range tab {
		b.WriteString(keys[id])
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestMaglevTablesAgreeAcrossNodes: nodes that reach the same backends,
// weights, drains and health by different histories (the same changes in
// another order, one node having added and removed a backend the other never
// saw, so their IDs differ) build byte-identical tables by address and show
// the same fingerprint.
func TestMaglevTablesAgreeAcrossNodes(t *testing.T) {
	start := func() *node {
		n := newNode()
		for i := 1; i <= 6; i++ {
			n.add(fmt.Sprintf("10.0.1.%d", i), 1)
		}
		return n
	}
	changes := []func(*node){
		func(n *node) { n.add("10.0.1.7", 2) },         // added
		func(n *node) { n.remove("10.0.1.3") },         // removed
		func(n *node) { n.drained["10.0.1.2"] = true }, // drained
		func(n *node) { n.weight["10.0.1.1"] = 3 },     // re-weighted
		func(n *node) { n.down["10.0.1.5"] = true },    // failed its checks
		func(n *node) { n.add("10.0.1.8", 1); n.down["10.0.1.8"] = true; n.down["10.0.1.8"] = false },
	}
	ref := start()
	for _, c := range changes {
		c(ref)
	}
	refTab, refKeys := ref.table(t)
	want := byAddress(refTab, refKeys)
	wantFP := MaglevFingerprint(refTab, refKeys)
	if len(wantFP) != 12 {
		t.Fatalf("fingerprint %q, want 12 hex digits", wantFP)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	idsDiffered := false
	for trial := 0; trial < 20; trial++ {
		n := start()
		// A backend this node alone saw come and go shifts its IDs.
		n.add("10.0.9.9", 1)
		n.remove("10.0.1.1")
		n.add("10.0.1.1", 1)
		n.remove("10.0.9.9")
		order := rng.Perm(len(changes))
		for _, i := range order {
			changes[i](n)
		}
		tab, keys := n.table(t)
		if got := byAddress(tab, keys); !bytes.Equal(got, want) {
			t.Fatalf("order %v: table differs from the reference by address", order)
		}
		if fp := MaglevFingerprint(tab, keys); fp != wantFP {
			t.Errorf("order %v: fingerprint %s, want %s", order, fp, wantFP)
		}
		idsDiffered = idsDiffered || !slices.Equal(tab, refTab)
	}
	if !idsDiffered {
		t.Errorf("every node had the reference's IDs: the test does not show that IDs do not matter")
	}

	// A node that sees one backend's health differently disagrees, and the
	// fingerprint says so.
	other := start()
	for _, c := range changes {
		c(other)
	}
	other.down["10.0.1.4"] = true
	tab, keys := other.table(t)
	if bytes.Equal(byAddress(tab, keys), want) {
		t.Fatal("a different health view built the same table")
	}
	if fp := MaglevFingerprint(tab, keys); fp == wantFP {
		t.Errorf("a different table has the same fingerprint %s", fp)
	}
}

func TestMaglevFingerprintEmpty(t *testing.T) {
	if fp := MaglevFingerprint(nil, nil); fp != "" {
		t.Errorf("empty table: fingerprint %q", fp)
	}
	// Unknown IDs still digest, distinctly from a known key.
	a := MaglevFingerprint([]uint32{1, 1, 2}, map[uint32]string{1: "10.0.0.1"})
	b := MaglevFingerprint([]uint32{1, 1, 2}, map[uint32]string{1: "10.0.0.1", 2: "10.0.0.2"})
	if a == b || a == "" {
		t.Errorf("fingerprints %q and %q", a, b)
	}
}
