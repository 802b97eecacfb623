package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/xlbproject/xlb/api"
)

// grid lays rows out in aligned columns and returns one line per row, so
// that rows of two grids can be interleaved (service lines between backend
// lines) while each grid keeps its columns aligned across the whole output.
func grid(rows [][]string) []string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return lines
}

// renderStatus prints services and backends in the manner of ipvsadm -Ln:
// a legend, then per service a line "TCP 10.0.0.10:80 maglev ipip api" and
// one "->" line per backend.
func renderStatus(w io.Writer, svcs []api.Service) error {
	if len(svcs) == 0 {
		_, err := fmt.Fprintln(w, "no services")
		return err
	}
	svcRows := [][]string{{"Prot", "LocalAddress:Port", "Scheduler", "Forward", "Service", ""}}
	beRows := [][]string{{"  -> Backend", "Weight", "Config", "Health", "Drain", "Source", "Active", "Pkts/Reqs", "Bytes", "Check"}}
	runtime := false
	for _, s := range svcs {
		flag := ""
		if s.FailOpen {
			flag = "FAIL-OPEN (every backend down: serving the last healthy set)"
		}
		if s.MaglevFingerprint != "" {
			// Equal on every node given the same config and health.
			flag = strings.TrimSpace("table " + s.MaglevFingerprint + " " + flag)
		}
		svcRows = append(svcRows, []string{strings.ToUpper(orDash(s.Protocol)), s.Address, orDash(s.Scheduler), orDash(s.Forward), s.Name, flag})
		for _, b := range s.Backends {
			health, check := "up", ""
			if !b.Healthy {
				health = "DOWN"
				if b.LastCheck != "ok" {
					check = b.LastCheck
				}
			}
			// A word, as Health's "DOWN": the column is read by scanning
			// for the exceptions, and "-" keeps the rest quiet.
			drain := "-"
			if b.Draining {
				drain = "draining"
			}
			source := orDash(b.Source)
			if !b.Persisted {
				source += "*"
				runtime = true
			}
			traffic, volume := strconv.FormatUint(b.Counters.Packets, 10), humanBytes(b.Counters.Bytes)
			if s.Layer == 7 {
				traffic, volume = strconv.FormatUint(b.Counters.Requests, 10), "-"
			}
			beRows = append(beRows, []string{"  -> " + b.Address, strconv.Itoa(b.Weight), strconv.Itoa(b.ConfigWeight),
				health, drain, source, strconv.FormatInt(b.Active, 10), traffic, volume, check})
		}
	}
	svcLines, beLines := grid(svcRows), grid(beRows)
	var out strings.Builder
	out.WriteString(svcLines[0] + "\n" + beLines[0] + "\n")
	next := 1
	for i, s := range svcs {
		out.WriteString(svcLines[i+1] + "\n")
		if len(s.Backends) == 0 {
			out.WriteString("  (no backends)\n")
		}
		for range s.Backends {
			out.WriteString(beLines[next] + "\n")
			next++
		}
	}
	if runtime {
		out.WriteString("* runtime change: the next reload undoes it unless it is written to the config file\n")
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// renderChange prints the answer of a mutating call.
func renderChange(w io.Writer, ch api.Change) error {
	what := ch.Service
	if ch.Backend != "" {
		what += " " + ch.Backend
	}
	msg := fmt.Sprintf("%s: %s\n", what, ch.Result)
	if ch.Note != "" {
		msg += "  " + ch.Note + "\n"
	} else if !ch.Persisted {
		msg += "  runtime change: the next reload undoes it unless it is written to the config file\n"
	}
	_, err := io.WriteString(w, msg)
	return err
}

// renderStats prints the data plane's verdict and event counters.
func renderStats(w io.Writer, st api.Stats) error {
	rows := [][]string{{"Counter", "Kind", "Packets", "Bytes"}}
	for _, s := range st.L4 {
		rows = append(rows, []string{s.Name, statKind(s.Name), strconv.FormatUint(s.Packets, 10), humanBytes(s.Bytes)})
	}
	_, err := io.WriteString(w, strings.Join(grid(rows), "\n")+"\n")
	return err
}

// statKind is the XDP action a counter's packets got (README "Counters"),
// or "event" for counters beside the verdicts.
func statKind(name string) string {
	switch {
	case strings.HasPrefix(name, "pass_"):
		return "PASS"
	case strings.HasPrefix(name, "drop_"):
		return "DROP"
	case name == "tx" || name == "icmp_too_big_sent":
		return "TX"
	case name == "redirect":
		return "REDIRECT"
	}
	return "event"
}

// humanBytes prints a byte count with a binary suffix: 1536 -> "1.5K".
func humanBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10)
	}
	v, unit := float64(n), -1
	// 1023.96K would print as "1024.0K".
	for v >= 1023.95 && unit < 5 {
		v /= 1024
		unit++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + string("KMGTPE"[unit])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
