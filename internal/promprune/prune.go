// Package promprune drops the Prometheus series of things that are gone (a
// service a reload removed, a backend DNS no longer names), which a metric
// vector would otherwise keep, at zero traffic, for good.
package promprune

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Vec is a metric vector: its series can be deleted by their labels.
type Vec interface {
	prometheus.Collector
	Delete(prometheus.Labels) bool
}

// Prune collects v's series, returns those keep accepts and deletes the
// others from v. Done at scrape time, it also drops a series that a
// request still in flight when its service went brought back.
func Prune(v Vec, keep func(prometheus.Labels) bool) []prometheus.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		v.Collect(ch)
		close(ch)
	}()
	var out []prometheus.Metric
	var stale []prometheus.Labels
	for met := range ch {
		var pb dto.Metric
		if err := met.Write(&pb); err != nil {
			out = append(out, met)
			continue
		}
		l := prometheus.Labels{}
		for _, lp := range pb.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		if keep(l) {
			out = append(out, met)
		} else {
			stale = append(stale, l)
		}
	}
	// Only now: v holds its lock while it collects.
	for _, l := range stale {
		v.Delete(l)
	}
	return out
}
