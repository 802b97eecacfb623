package config

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestPinpointQuietOnValidYAML: the heuristics that move a syntax error to
// its likely line find nothing to blame in valid files, block scalars and
// multi-line flows included, so they cannot send an operator to a line that
// is fine.
func TestPinpointQuietOnValidYAML(t *testing.T) {
	spec, err := os.ReadFile("testdata/spec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"spec": string(spec),
		"block-scalar-and-flows": `
services:
- name: a   # a sequence at its key's indentation
  layer: 4
  note: |
      text indented
        more, still text
  backends: [
      {address: 10.0.0.2},
    {address: "10.0.0.3"}]
  health_check: {type: http, path: '/it''s'}
  x: "a # not a comment"   # a comment with a "quote
-   name: b
    layer: 7
    routes:
      -   match: {host: a}
          backends:
          - address: 127.0.0.1:1
`,
	} {
		var v any
		if err := yaml.Unmarshal([]byte(text), &v); err != nil {
			t.Fatalf("%s is not valid YAML: %v", name, err)
		}
		lines := strings.Split(text, "\n")
		if i := misindented(lines, 1); i != 0 {
			t.Errorf("%s: misindented blames line %d: %q", name, i, lines[i-1])
		}
		for i, l := range lines {
			if _, open := scanLine(l); open {
				t.Errorf("%s: line %d seen as opening a quote: %q", name, i+1, l)
			}
		}
	}
}
