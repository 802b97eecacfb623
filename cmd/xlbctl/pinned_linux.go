//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"text/tabwriter"

	"github.com/xlbproject/xlb/loader"
	"github.com/xlbproject/xlb/maps"
)

func init() {
	pinnedMaps = dumpPinned
	detachAll = loader.Unpin
}

// flowLimit bounds how many flow-table entries `xlbctl maps` prints.
const flowLimit = 100

type dump struct {
	Services []maps.Service `json:"services"`
	Backends []maps.Backend `json:"backends"`
	Rings    []ringSummary  `json:"maglev_rings"`
	Flows    []maps.Flow    `json:"flows"`
	FlowsAll int            `json:"flows_total"`
	Stats    []maps.Stat    `json:"stats"`
}

type ringSummary struct {
	ServiceID uint32         `json:"service_id"`
	Size      int            `json:"size"`
	Slots     map[uint32]int `json:"slots_per_backend"`
}

// dumpPinned prints the pinned maps in readable form: what the data plane
// holds, straight from the kernel, whether or not xlbd runs.
func dumpPinned(pinPath string, w io.Writer, asJSON bool) error {
	m, err := maps.OpenPinned(pinPath)
	if err != nil {
		return err
	}
	defer m.Close()
	var d dump
	if d.Services, err = m.ListServices(); err != nil {
		return err
	}
	sort.Slice(d.Services, func(i, j int) bool { return d.Services[i].ID < d.Services[j].ID })
	if d.Backends, err = m.ListBackends(); err != nil {
		return err
	}
	for _, s := range d.Services {
		table, err := m.Ring(s.ID)
		if err != nil {
			continue // a service with no healthy, weighted backend has no table
		}
		rs := ringSummary{ServiceID: s.ID, Size: len(table), Slots: map[uint32]int{}}
		for _, id := range table {
			rs.Slots[id]++
		}
		d.Rings = append(d.Rings, rs)
	}
	// Counted, and only the first flowLimit listed: a full table holds a
	// million flows.
	counts, err := m.CountFlows()
	if err != nil {
		return err
	}
	for _, n := range counts {
		d.FlowsAll += n
	}
	if d.Flows, err = m.ListFlows(flowLimit); err != nil {
		return err
	}
	if d.Stats, err = m.ReadStats(); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(d.view())
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "services (%d)\n", len(d.Services))
	fmt.Fprintln(tw, "  id\tservice\ttable\tforwarding\tscheduler\trate limit")
	for _, s := range d.Services {
		fwd, sched, rl := "ipip", "maglev", "off"
		if s.DSR {
			fwd = "dsr"
		}
		if s.IPHash {
			sched = "ip_hash"
		}
		if s.Rate > 0 {
			rl = fmt.Sprintf("%d/%s burst %d", s.Rate, s.Per, s.Burst)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.ServiceKey, s.RingSize, fwd, sched, rl)
	}
	fmt.Fprintf(tw, "\nbackends (%d)\n", len(d.Backends))
	fmt.Fprintln(tw, "  id\tservice id\taddress\tstate")
	for _, b := range d.Backends {
		state := "up"
		if !b.Up {
			state = "DOWN"
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\n", b.ID, b.ServiceID, b.Addr, state)
	}
	fmt.Fprintf(tw, "\nmaglev_rings (%d)\n", len(d.Rings))
	for _, r := range d.Rings {
		ids := make([]uint32, 0, len(r.Slots))
		for id := range r.Slots {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		fmt.Fprintf(tw, "  service %d: %d slots:", r.ServiceID, r.Size)
		for _, id := range ids {
			fmt.Fprintf(tw, " backend %d %.1f%%", id, 100*float64(r.Slots[id])/float64(r.Size))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "\nflows (%d, showing %d)\n", d.FlowsAll, len(d.Flows))
	for _, f := range d.Flows {
		proto := "tcp"
		if f.Proto == maps.ProtoUDP {
			proto = "udp"
		}
		fmt.Fprintf(tw, "  %s\t-> %s\t%s\tbackend %d\n", f.Src, f.Dst, proto, f.BackendID)
	}
	fmt.Fprintln(tw, "\nstats")
	for _, s := range d.Stats {
		fmt.Fprintf(tw, "  %s\t%d packets\t%d bytes\n", s.Name, s.Packets, s.Bytes)
	}
	return tw.Flush()
}

// The JSON form names fields as the admin API does (snake case, protocols
// and durations in words), not as the Go types in package maps do.
type (
	jsonDump struct {
		Services []jsonService `json:"services"`
		Backends []jsonBackend `json:"backends"`
		Rings    []ringSummary `json:"maglev_rings"`
		Flows    []jsonFlow    `json:"flows"`
		FlowsAll int           `json:"flows_total"`
		Stats    []jsonStat    `json:"stats"`
	}
	jsonService struct {
		ID         uint32         `json:"id"`
		Address    string         `json:"address"`
		Protocol   string         `json:"protocol"`
		RingSize   uint32         `json:"ring_size"`
		Forwarding string         `json:"forwarding"`
		Scheduler  string         `json:"scheduler"`
		RateLimit  *jsonRateLimit `json:"rate_limit"`
	}
	jsonRateLimit struct {
		Rate  uint64 `json:"rate"`
		Per   string `json:"per"`
		Burst uint64 `json:"burst"`
	}
	jsonBackend struct {
		ID        uint32 `json:"id"`
		ServiceID uint32 `json:"service_id"`
		Address   string `json:"address"`
		Up        bool   `json:"up"`
		FailOpen  bool   `json:"fail_open"`
	}
	jsonFlow struct {
		Client     string `json:"client"`
		Service    string `json:"service"`
		Protocol   string `json:"protocol"`
		BackendID  uint32 `json:"backend_id"`
		ServiceID  uint32 `json:"service_id"`
		Generation uint32 `json:"generation"`
		LastSeenNs uint64 `json:"last_seen_ns"`
	}
	jsonStat struct {
		Name    string `json:"name"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
	}
)

func protoName(p uint8) string {
	if p == maps.ProtoUDP {
		return "udp"
	}
	return "tcp"
}

func (d dump) view() jsonDump {
	out := jsonDump{Rings: d.Rings, FlowsAll: d.FlowsAll,
		Services: []jsonService{}, Backends: []jsonBackend{}, Flows: []jsonFlow{}, Stats: []jsonStat{}}
	if out.Rings == nil {
		out.Rings = []ringSummary{}
	}
	for _, s := range d.Services {
		js := jsonService{ID: s.ID, Address: netip.AddrPortFrom(s.VIP, s.Port).String(), Protocol: protoName(s.Proto),
			RingSize: s.RingSize, Forwarding: "ipip", Scheduler: "maglev"}
		if s.DSR {
			js.Forwarding = "dsr"
		}
		if s.IPHash {
			js.Scheduler = "ip_hash"
		}
		if s.Rate > 0 {
			js.RateLimit = &jsonRateLimit{Rate: s.Rate, Per: s.Per.String(), Burst: s.Burst}
		}
		out.Services = append(out.Services, js)
	}
	for _, b := range d.Backends {
		out.Backends = append(out.Backends, jsonBackend{ID: b.ID, ServiceID: b.ServiceID, Address: b.Addr.String(), Up: b.Up, FailOpen: b.FailOpen})
	}
	for _, f := range d.Flows {
		out.Flows = append(out.Flows, jsonFlow{Client: f.Src.String(), Service: f.Dst.String(), Protocol: protoName(f.Proto),
			BackendID: f.BackendID, ServiceID: f.ServiceID, Generation: f.Gen, LastSeenNs: f.LastSeen})
	}
	for _, st := range d.Stats {
		out.Stats = append(out.Stats, jsonStat{Name: st.Name, Packets: st.Packets, Bytes: st.Bytes})
	}
	return out
}
