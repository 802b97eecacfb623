// Package promtest reads what a Prometheus registry exposes, for tests that
// check which series exist.
package promtest

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Series lists the series of family name on g by their labels
// ("service=web,backend=10.0.0.1:80"), sorted, leaving out the labels in
// drop.
func Series(t testing.TB, g prometheus.Gatherer, name string, drop ...string) []string {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if !slices.Contains(drop, l.GetName()) {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			out = append(out, strings.Join(labels, ","))
		}
	}
	slices.Sort(out)
	return out
}
