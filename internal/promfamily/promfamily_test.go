package promfamily

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func serve(t *testing.T, accept, encoding string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	used := Counter("xlb_test_used_total", "Has a series.")
	empty := Gauge("xlb_test_empty", "Has none yet.\nSecond line.")
	c := prometheus.NewCounterVec(used.CounterOpts(), []string{"x"})
	c.WithLabelValues("a").Add(2)
	reg.MustRegister(c, prometheus.NewGaugeVec(empty.GaugeOpts(), []string{"y"}))
	h := Handler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), []Family{used, empty, empty})
	req := httptest.NewRequest("GET", "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return rec, string(body)
}

// TestHandlerDeclaresEmptyFamilies: a family without series is named once,
// with its HELP (escaped) and TYPE, and the text still parses; one with
// series is not repeated. Asked for gzip, the text answer is plain.
func TestHandlerDeclaresEmptyFamilies(t *testing.T) {
	for _, enc := range []string{"", "gzip"} {
		rec, body := serve(t, "", enc)
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		want := "# HELP xlb_test_empty Has none yet.\\nSecond line.\n# TYPE xlb_test_empty gauge\n"
		if strings.Count(body, want) != 1 {
			t.Errorf("encoding %q: the empty family is not declared once:\n%s", enc, body)
		}
		if strings.Count(body, "# TYPE xlb_test_used_total counter") != 1 || !strings.Contains(body, `xlb_test_used_total{x="a"} 2`) {
			t.Errorf("encoding %q: the used family is not there once:\n%s", enc, body)
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("answer does not parse: %v\n%s", err, body)
		}
		// The parser keeps no family without samples, but accepts it.
		if _, ok := fams["xlb_test_used_total"]; !ok {
			t.Errorf("parsed families %v lack the used one", fams)
		}
	}
}

// TestHandlerLeavesProtobufAlone: what Prometheus asks for is promhttp's
// answer, unchanged.
func TestHandlerLeavesProtobufAlone(t *testing.T) {
	rec, body := serve(t, "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "")
	if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "protobuf") {
		t.Fatalf("Content-Type %q", ct)
	}
	if strings.Contains(body, "xlb_test_empty") {
		t.Errorf("protobuf answer names the empty family")
	}
}
