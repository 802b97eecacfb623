package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/testpki"
)

// TestReadmeExamples: every YAML example in the README parses with
// neither an error nor a warning, so that an operator who copies one gets
// what the text around it says. The files the examples name under
// /etc/xlb (certificates, keys, a password) are made in a folder of the
// test's: one test certificate and key stand for every .crt and .key. A fragment is read as the README reads it: a block without services is
// added to the first example, a layer 4 one without xdp gets its
// interfaces.
func TestReadmeExamples(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	type example struct {
		line int
		text string
	}
	var examples []example
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```yaml" {
			continue
		}
		start := i + 2 // the first line of YAML, counted from 1
		var block []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			block = append(block, lines[i])
		}
		examples = append(examples, example{start, strings.Join(block, "\n") + "\n"})
	}
	if len(examples) < 5 {
		t.Fatalf("%d YAML examples in the README; the test reads ```yaml blocks", len(examples))
	}
	dir := t.TempDir()
	certFile, keyFile := testpki.NewCA(t, "readme").Issue(t, "example.com")
	content := map[string][]byte{".crt": mustRead(t, certFile), ".key": mustRead(t, keyFile)}
	files := regexp.MustCompile(`/etc/xlb/[A-Za-z0-9._/-]+`)
	hasKey := func(text, key string) bool {
		return strings.HasPrefix(text, key+":") || strings.Contains(text, "\n"+key+":")
	}
	for _, ex := range examples {
		text := files.ReplaceAllStringFunc(ex.text, func(name string) string {
			f := filepath.Join(dir, strings.TrimPrefix(name, "/etc/xlb/"))
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				t.Fatal(err)
			}
			b, ok := content[filepath.Ext(name)]
			if !ok {
				b = []byte("stands for " + name + "\n")
			}
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		})
		switch {
		case !hasKey(text, "services"):
			text = examples[0].text + text
		case !hasKey(text, "xdp") && strings.Contains(text, "layer: 4"):
			text = "xdp:\n  interfaces: [eth0]\n" + text
		}
		c, err := Parse("README.md", []byte(text))
		if err != nil {
			t.Errorf("README.md:%d: the example does not parse:\n%v", ex.line, err)
			continue
		}
		if len(c.Warnings) > 0 {
			t.Errorf("README.md:%d: the example draws warnings:\n%s", ex.line, strings.Join(c.Warnings, "\n"))
		}
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
