//go:build linux

package bpf_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/test/privileged"
)

// verifierBudget bounds the instructions the verifier processes for each
// program: a tenth of its limit (1M). Another kernel's verifier prunes
// differently, and a program near the limit here may not load there; the
// count is also the load time every start and upgrade waits (533k took
// 0.75 s). lb.c's slow path is a global function to stay far below it.
const verifierBudget = 100_000

var processedRE = regexp.MustCompile(`processed (\d+) insns`)

func TestVerifierBudget(t *testing.T) {
	privileged.Require(t)
	for _, c := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
	}{
		{"lb", bpf.LoadLb},
		{"decap", bpf.LoadDecap},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, err := c.load()
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "lb" {
				if _, err := bpf.SizeFlowTable(spec, 1024); err != nil {
					t.Fatal(err)
				}
			}
			coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
				Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer coll.Close()
			if len(coll.Programs) == 0 {
				t.Fatal("no programs")
			}
			for name, p := range coll.Programs {
				m := processedRE.FindStringSubmatch(p.VerifierLog)
				if m == nil {
					t.Fatalf("%s: no instruction count in the verifier's log %q", name, p.VerifierLog)
				}
				n, _ := strconv.Atoi(m[1])
				t.Logf("%s: %d instructions processed", name, n)
				if n > verifierBudget {
					t.Errorf("%s: the verifier processed %d instructions, over the budget of %d", name, n, verifierBudget)
				}
			}
		})
	}
}
