//go:build linux

package daemon

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/promfamily"
	"github.com/xlbproject/xlb/internal/promprune"
	"github.com/xlbproject/xlb/l7"
	"github.com/xlbproject/xlb/maps"
)

// metrics holds the daemon's own metrics and collects the kernel's counters
// at scrape time (summed over CPUs), so nothing polls the maps in between.
type metrics struct {
	version     string
	r           *reconciler
	reloads     *prometheus.CounterVec
	checkTime   *prometheus.HistogramVec
	checks      *prometheus.CounterVec
	transitions *prometheus.CounterVec

	// checkedMu guards checked, the services whose check-duration series
	// exist.
	checkedMu sync.Mutex
	checked   map[string]bool

	packets, bytes, newFlows, dropped, verdicts, events, up, failOpen, info, attached *prometheus.Desc
	// lost names the configured interfaces the XDP program is missing
	// from (Daemon.checkAttachments); nil until the daemon sets it.
	lost func() map[string]bool
}

// The daemon's metric families; MetricFamilies declares them, so that
// /metrics names each one before it has a series.
var (
	famReloads     = promfamily.Counter("xlb_config_reloads_total", "Config reloads by result (ok, error).")
	famCheckTime   = promfamily.Histogram("xlb_health_check_duration_seconds", "Duration of active health checks.")
	famChecks      = promfamily.Counter("xlb_health_checks_total", "Active health checks by result (ok, fail).")
	famTransitions = promfamily.Counter("xlb_backend_transitions_total", "Backend health state changes, by new state.")
	famPackets     = promfamily.Counter("xlb_l4_packets_total", "Packets forwarded by the XDP program.")
	famBytes       = promfamily.Counter("xlb_l4_bytes_total", "Bytes forwarded by the XDP program (before encapsulation).")
	famNewFlows    = promfamily.Counter("xlb_l4_new_flows_total", "Flows the XDP program assigned to a backend.")
	famDropped     = promfamily.Counter("xlb_l4_dropped_total", "Packets the XDP program dropped, by reason.")
	famVerdicts    = promfamily.Counter("xlb_l4_verdicts_total", "Every XDP verdict, by kind (pass_*, tx, redirect, drop_*, icmp_too_big_sent).")
	famEvents      = promfamily.Counter("xlb_l4_events_total", "Flow-table and ICMP events of the XDP program.")
	famUp          = promfamily.Gauge("xlb_backend_up", "1 when the backend passes its health checks.")
	famFailOpen    = promfamily.Gauge("xlb_service_fail_open", "1 when every backend is down and the service forwards to the last healthy set.")
	famInfo        = promfamily.Gauge("xlb_build_info", "xlbd's version.")
	famLookups     = promfamily.Counter("xlb_discovery_lookups_total", "DNS lookups of discovered services, by result (ok, nxdomain, empty, error, timeout).")
	famDiscovered  = promfamily.Gauge("xlb_discovery_backends", "Backends the service's DNS name gives now (after max_backends).")
	famPeerUp      = promfamily.Gauge("xlb_bgp_peer_up", "1 while the BGP session to the peer is established.")
	famAnnounced   = promfamily.Gauge("xlb_bgp_announced", "1 while the service's VIP is announced to the BGP peers.")
	famAttached    = promfamily.Gauge("xlb_xdp_attached", "1 while the XDP program is on the configured interface (0: detached, or the interface is gone).")
)

// MetricFamilies is every family xlbd's own collectors and its L7 tier
// export (not the Go runtime's, which always have series).
func MetricFamilies() []promfamily.Family {
	return append([]promfamily.Family{famReloads, famCheckTime, famChecks, famTransitions,
		famPackets, famBytes, famNewFlows, famDropped, famVerdicts, famEvents, famUp, famFailOpen, famInfo,
		famLookups, famDiscovered, famPeerUp, famAnnounced, famAttached}, l7.MetricFamilies()...)
}

func newMetrics(version string, r *reconciler) *metrics {
	sb := []string{"service", "backend"}
	m := &metrics{
		version: version, r: r, checked: map[string]bool{},
		reloads:     prometheus.NewCounterVec(famReloads.CounterOpts(), []string{"result"}),
		checkTime:   prometheus.NewHistogramVec(famCheckTime.HistogramOpts([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}), []string{"service"}),
		checks:      prometheus.NewCounterVec(famChecks.CounterOpts(), []string{"service", "backend", "result"}),
		transitions: prometheus.NewCounterVec(famTransitions.CounterOpts(), []string{"service", "backend", "state"}),
		packets:     famPackets.Desc(sb...),
		bytes:       famBytes.Desc(sb...),
		newFlows:    famNewFlows.Desc(sb...),
		dropped:     famDropped.Desc("reason"),
		verdicts:    famVerdicts.Desc("verdict"),
		events:      famEvents.Desc("event"),
		up:          famUp.Desc(sb...),
		failOpen:    famFailOpen.Desc("service"),
		info:        famInfo.Desc("version"),
		attached:    famAttached.Desc("interface"),
	}
	// A series that appears only at the first failure cannot be alerted on
	// with increase() until a second one, nor told apart from a daemon that
	// does not export it.
	for _, res := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(res)
	}
	return m
}

// trackChecked makes xlb_health_check_duration_seconds have a series for
// every service with active checks, before its first check ends (for the
// same reason as the reload counters), and drops those of services that
// are no longer checked, as discovery does with its gauge.
func (m *metrics) trackChecked(md *model) {
	want := map[string]bool{}
	for _, name := range md.order {
		if md.services[name].checked() {
			want[name] = true
		}
	}
	m.checkedMu.Lock()
	defer m.checkedMu.Unlock()
	for name := range m.checked {
		if !want[name] {
			m.checkTime.DeleteLabelValues(name)
		}
	}
	for name := range want {
		m.checkTime.WithLabelValues(name)
	}
	m.checked = want
}

func (m *metrics) register(reg *prometheus.Registry) error {
	// checks and transitions are collected by m, which knows the model's
	// backends.
	for _, c := range []prometheus.Collector{m, m.reloads, m.checkTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.packets, m.bytes, m.newFlows, m.dropped, m.verdicts, m.events, m.up, m.failOpen, m.info, m.attached} {
		ch <- d
	}
	m.checks.Describe(ch)
	m.transitions.Describe(ch)
}

// events are the counters of enum xlb_stat that are not verdicts.
var eventNames = map[string]bool{
	"icmp_too_big_forwarded": true, "flow_miss_non_syn": true, "flow_reselect": true,
	"flow_insert_skipped": true, "flow_udp_expired": true, "flow_other_cpu": true,
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.info, prometheus.GaugeValue, 1, m.version)
	type row struct {
		svc, addr string
		id        uint32
		up        bool
	}
	var rows []row
	failOpen := map[string]bool{}
	var l7names, ifnames []string
	var health []prometheus.Metric
	mp := m.r.l4.maps
	m.r.read(func(cfg *config.Config, md *model) {
		if mp != nil && cfg != nil {
			ifnames = cfg.XDP.Interfaces
		}
		// Under the model's lock: a backend it has cannot lose its series
		// to a change made between this look and the pruning.
		health = m.backendSeries(md)
		for _, name := range md.order {
			s := md.services[name]
			if !s.cfg.IsL4() {
				l7names = append(l7names, name)
				continue
			}
			// With the L4 data plane off a service has no id (nor
			// counters), but its backends are still checked.
			if _, ok := m.r.l4.serviceID(name); ok {
				failOpen[name] = m.r.l4.failingOpen(name)
			}
			for _, b := range s.backends {
				rows = append(rows, row{name, b.name, m.r.l4.backendID(name, b.addr), b.up})
			}
		}
	})
	var lost map[string]bool
	if m.lost != nil {
		lost = m.lost()
	}
	for _, ifname := range ifnames {
		ch <- prometheus.MustNewConstMetric(m.attached, prometheus.GaugeValue, b2f(!lost[ifname]), ifname)
	}
	for _, name := range l7names {
		for _, b := range m.r.l7.status(name) {
			ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, b2f(b.Healthy && !b.Ejected), name, b.Address)
		}
	}

	for _, h := range health {
		ch <- h
	}
	for name, fo := range failOpen {
		ch <- prometheus.MustNewConstMetric(m.failOpen, prometheus.GaugeValue, b2f(fo), name)
	}
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, b2f(r.up), r.svc, r.addr)
		// With the L4 data plane off every counter is there at 0, as
		// /api/v1/stats has them, so that a dashboard or an alert works on
		// every node.
		var c maps.Counters
		if mp != nil {
			if r.id == 0 {
				continue
			}
			var err error
			if c, err = mp.BackendCounters(r.id); err != nil {
				continue
			}
		}
		ch <- prometheus.MustNewConstMetric(m.packets, prometheus.CounterValue, float64(c.Packets), r.svc, r.addr)
		ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.CounterValue, float64(c.Bytes), r.svc, r.addr)
		ch <- prometheus.MustNewConstMetric(m.newFlows, prometheus.CounterValue, float64(c.NewFlows), r.svc, r.addr)
	}
	var stats []maps.Stat
	if mp == nil {
		for _, name := range maps.StatNames {
			stats = append(stats, maps.Stat{Name: name})
		}
	} else {
		var err error
		if stats, err = mp.ReadStats(); err != nil {
			return
		}
	}
	for _, s := range stats {
		switch {
		case eventNames[s.Name]:
			ch <- prometheus.MustNewConstMetric(m.events, prometheus.CounterValue, float64(s.Packets), s.Name)
		default:
			ch <- prometheus.MustNewConstMetric(m.verdicts, prometheus.CounterValue, float64(s.Packets), s.Name)
			if reason, ok := strings.CutPrefix(s.Name, "drop_"); ok {
				ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(s.Packets), reason)
			}
		}
	}
}

// backendSeries collects xlb_health_checks_total and
// xlb_backend_transitions_total, and deletes the series of backends the
// model no longer has: under autoscaling or discovery the addresses that
// came and went would otherwise pile up for good. A check that ends just
// after its backend went brings a series back; the next scrape drops it.
func (m *metrics) backendSeries(md *model) []prometheus.Metric {
	live := map[string]bool{}
	for _, name := range md.order {
		for _, b := range md.services[name].checkedBackends() {
			live[checkKey(name, b.name)] = true
		}
	}
	keep := func(l prometheus.Labels) bool { return live[checkKey(l["service"], l["backend"])] }
	return append(promprune.Prune(m.checks, keep), promprune.Prune(m.transitions, keep)...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
