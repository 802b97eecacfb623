package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that it fails only with a
// non-empty ErrorList, that every error of a syntactically valid file has a
// line, and that a valid config differs from nothing in itself.
func FuzzParse(f *testing.F) {
	spec, err := os.ReadFile("testdata/spec.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(spec)
	for _, s := range []string{
		"",
		"services: [{name: a, layer: 4, vip: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1:80}]}]\n",
		"services:\n  - name: web\n    layer: 7\n    listen: :8080\n    vip: 10.0.0.1\n    routes: [{match: {methods: [get]}}]\n",
		"admin: {listen: 0.0.0.0:9100}\nxdp: {mode: fast, flow_table_size: 1}\nl7: {idle_timeout: 5}\n",
		"services:\n  - &s {name: a, layer: 7, listen: \":1\", backends: [{address: \"h:1\"}]}\n  - <<: *s\n    name: b\n",
		"services:\n  - name: a\n    layer: 4\n    health_check: {interval: 1s, expect_status: 399-200}\n    rate_limit: {rate: 0/x, burst: 0}\n",
		"a: [1\n",
		"x: &a [*a]\nservices: *a\n",
		"--- \n...\n---\nservices: []\n",
		"services:\n  - name: a\n    layer: 7\n    listen: \":1\"\n    protocols: [h2, h2, x]\n    tls: {certificates: [{cert_file: a}, ~, x], min_version: 1.1, client_ca_file: c}\n    backend_protocol: h2c\n    backend_tls: {ca_file: \"\", server_name: \"a b\", key_file: k}\n    backends: [{address: \"h:1\"}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("no error and no config")
			}
			if d := Diff(c, c); len(d) != 0 {
				t.Fatalf("Diff(c, c) = %q", d)
			}
			if r := c.RestartNeeded(c); len(r) != 0 {
				t.Fatalf("RestartNeeded(c) = %q", r)
			}
			return
		}
		if c != nil {
			t.Fatal("a config with errors")
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("error %T %v is not a non-empty ErrorList", err, err)
		}
		valid := validYAML(data)
		for i, e := range list {
			if e.File != "f.yaml" || e.Msg == "" {
				t.Errorf("error %#v: no file or message", e)
			}
			if valid && e.Line < 1 {
				t.Errorf("valid YAML, but error %#v has no line", e)
			}
			if i > 0 && e.Line < list[i-1].Line {
				t.Errorf("errors not sorted by line: %v", list)
			}
		}
		if _, err2 := Parse("f.yaml", data); err2 == nil || !slices.Equal(err2.(ErrorList).Details(), list.Details()) {
			t.Errorf("a second Parse gave other errors: %v", err2)
		}
	})
}

// validYAML reports whether every document of data parses.
func validYAML(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
