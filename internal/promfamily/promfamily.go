// Package promfamily makes /metrics name every metric family xlbd exports
// from its first scrape. A vector has no series until its first sample (no
// BGP peer, no L4 service, no request yet), and client_golang then writes
// nothing of it, so a scrape could not tell a family xlbd exports from one
// it does not, nor show its help. A declared family without series is
// written as its HELP and TYPE lines alone, which the text format allows.
package promfamily

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Family is a metric family's name, help and type (counter, gauge or
// histogram), the source of both its collector's options and its
// declaration.
type Family struct {
	Name, Help, Type string
}

func Counter(name, help string) Family   { return Family{name, help, "counter"} }
func Gauge(name, help string) Family     { return Family{name, help, "gauge"} }
func Histogram(name, help string) Family { return Family{name, help, "histogram"} }

// Desc is the family's descriptor, for a collector that makes its
// metrics at scrape time.
func (f Family) Desc(labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(f.Name, f.Help, labels, nil)
}

func (f Family) CounterOpts() prometheus.CounterOpts {
	return prometheus.CounterOpts{Name: f.Name, Help: f.Help}
}

func (f Family) GaugeOpts() prometheus.GaugeOpts {
	return prometheus.GaugeOpts{Name: f.Name, Help: f.Help}
}

func (f Family) HistogramOpts(buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Name: f.Name, Help: f.Help, Buckets: buckets}
}

// Handler answers as next (promhttp's handler) does and, when the answer is
// in the text format, adds the HELP and TYPE lines of each family of
// declared that the answer has no TYPE line for. Other formats (protobuf,
// OpenMetrics, which Prometheus itself asks for) pass through unchanged.
func Handler(next http.Handler, declared []Family) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if expfmt.Negotiate(r.Header).FormatType() != expfmt.TypeTextPlain {
			next.ServeHTTP(w, r)
			return
		}
		// Uncompressed, so that lines can be added; the answer is small.
		r = r.Clone(r.Context())
		r.Header.Del("Accept-Encoding")
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if rec.status == http.StatusOK {
			body = append(body, missing(body, declared)...)
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.status)
		w.Write(body)
	})
}

// missing is the declaration lines of the families of declared that text
// has no TYPE line for.
func missing(text []byte, declared []Family) []byte {
	have := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			have[name] = true
		}
	}
	var out bytes.Buffer
	for _, f := range declared {
		if have[f.Name] {
			continue
		}
		have[f.Name] = true
		fmt.Fprintf(&out, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Type)
	}
	return out.Bytes()
}

// escapeHelp escapes help as the text format wants (backslash, newline).
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}
