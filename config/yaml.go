package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the nodes a parse visits, aliases included, so that a file
// of aliases to aliases cannot make it run for minutes.
const maxNodes = 1 << 20

// maxErrors bounds the errors reported: past it, fixing the first ones is
// the next step anyway.
const maxErrors = 200

// parser walks the YAML tree of one file, collecting errors and warnings.
type parser struct {
	file   string
	dir    string // relative paths in the file are relative to it
	data   []byte
	errs   []located
	warns  []located
	budget int
	svcs   []svcMeta // parallel to Config.Services

	noRouterID bool // the bgp section has no router_id key

	// host turns on the checks against this host (checkHost), which a
	// config parsed where it will not run must go without.
	host hostMode
}

// located is an error or warning with its column, to order the several
// problems a one-line flow mapping can hold.
type located struct {
	Error
	col int
}

// svcMeta remembers where a service's keys are, for checks across
// services; a nil node means the key is absent or invalid.
type svcMeta struct {
	path   string
	node   *yaml.Node // the service's mapping
	name   *yaml.Node
	vip    *yaml.Node
	listen *yaml.Node
	// announce is the service's announce key, if written.
	announce *yaml.Node
}

func newParser(filename string, data []byte) *parser {
	return &parser{file: filename, dir: filepath.Dir(filename), data: data, budget: maxNodes}
}

// errorf records an error at node n (nil: line 0).
func (p *parser) errorf(n *yaml.Node, key, format string, args ...any) {
	switch {
	case len(p.errs) < maxErrors:
		p.errs = append(p.errs, p.locate(n, key, fmt.Sprintf(format, args...)))
	case len(p.errs) == maxErrors:
		// Sorted last: its line is the largest so far.
		last := located{Error: Error{File: p.file, Msg: fmt.Sprintf("more than %d errors; stopping here", maxErrors)}, col: math.MaxInt}
		for _, e := range p.errs {
			last.Line = max(last.Line, e.Line)
		}
		p.errs = append(p.errs, last)
	}
}

// warnf records a warning at node n.
func (p *parser) warnf(n *yaml.Node, key, format string, args ...any) {
	p.warns = append(p.warns, p.locate(n, key, fmt.Sprintf(format, args...)))
}

func (p *parser) locate(n *yaml.Node, key, msg string) located {
	l := located{Error: Error{File: p.file, Key: key, Msg: msg}}
	if n != nil {
		l.Line, l.col = n.Line, n.Column
	}
	return l
}

func sortLocated(l []located) {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].col < l[j].col
	})
}

func (p *parser) errorList() ErrorList {
	sortLocated(p.errs)
	out := make(ErrorList, len(p.errs))
	for i, e := range p.errs {
		out[i] = e.Error
	}
	return out
}

func (p *parser) warnings() []string {
	sortLocated(p.warns)
	out := make([]string, len(p.warns))
	for i, w := range p.warns {
		out[i] = w.Error.Error()
	}
	return out
}

var (
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlAnchorRE = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// document parses the file's single YAML document and returns its root, or
// nil when the file is empty or invalid.
func (p *parser) document() *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(p.data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntaxError(err)
		return nil
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		p.errorf(next.Content[0], "", "a second YAML document starts here; the config is a single document (remove the \"---\")")
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// syntaxError records a YAML syntax error, at the line of its likely cause.
func (p *parser) syntaxError(err error) {
	msg := err.Error()
	e := located{Error: Error{File: p.file}}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if m := yamlAnchorRE.FindStringSubmatch(msg); m != nil {
		e.Line = p.lineOf("*" + m[1])
		msg = strings.TrimPrefix(msg, "yaml: ")
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		// The parser leaves the line out when the problem is on the first
		// line (it counts from 0 and prints only non-zero lines).
		if !strings.Contains(msg, "anchor") {
			e.Line = 1
		}
	}
	if e.Line > 0 {
		e.Line, msg = pinpoint(p.data, e.Line, msg)
	}
	e.Msg = "invalid YAML: " + msg
	p.errs = append(p.errs, e)
}

// lineOf returns the line of the first occurrence of s in the file, or 0.
func (p *parser) lineOf(s string) int {
	i := bytes.Index(p.data, []byte(s))
	if i < 0 {
		return 0
	}
	return bytes.Count(p.data[:i], []byte("\n")) + 1
}

// resolve follows aliases, and counts the node against the budget. It
// returns nil (treated as absent) once the budget is spent.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	p.budget--
	if p.budget == 0 {
		p.errorf(n, "", "the file expands to more than %d YAML nodes (through aliases); simplify it", maxNodes)
	}
	if p.budget <= 0 {
		return nil
	}
	return n
}

// isNull reports whether n is absent or an explicit null (`key:` or `~`).
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's value for a type error: the value itself for a
// scalar (quoted when it is a string), else its kind.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		if n.ShortTag() == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "nothing"
}

// join appends a key to a dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends a list index to a path.
func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// entry is one key: value pair of a mapping.
type entry struct {
	key  string
	k, v *yaml.Node
}

// fields is a mapping's entries by key, in file order.
type fields struct {
	list []*entry
	m    map[string]*entry
}

// get returns the entry for key, or nil when the key is absent or null.
func (f fields) get(key string) *entry {
	e := f.m[key]
	if e == nil || isNull(e.v) {
		return nil
	}
	return e
}

// at is where to report a missing key: the key itself when it is written
// as null, else the mapping.
func (f fields) at(key string, mapping *yaml.Node) *yaml.Node {
	if e := f.m[key]; e != nil {
		return e.k
	}
	return mapping
}

// mapping returns the entries of a mapping, merging `<<: *anchor` keys and
// reporting duplicate and non-scalar keys. ok is false when n is null or not
// a mapping (the latter is reported).
func (p *parser) mapping(n *yaml.Node, path, want string) ([]*entry, bool) {
	n = p.resolve(n)
	if isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "expected %s, got %s", want, describe(n))
		return nil, false
	}
	var out []*entry
	seen := map[string]*entry{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		kr := p.resolve(k)
		if kr == nil || kr.Kind != yaml.ScalarNode || isNull(kr) {
			p.errorf(k, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		e := &entry{key: kr.Value, k: k, v: v}
		if first := seen[e.key]; first != nil {
			p.errorf(k, join(path, e.key), "key given twice (first on line %d)", first.k.Line)
			continue
		}
		seen[e.key] = e
		out = append(out, e)
	}
	// Merged keys never override keys written in the mapping itself; of
	// several merged mappings, the first wins (YAML merge key semantics).
	for _, m := range merges {
		for _, src := range p.mergeSources(m, path, 0) {
			for _, e := range src {
				if seen[e.key] == nil {
					seen[e.key] = e
					out = append(out, e)
				}
			}
		}
	}
	return out, true
}

// mergeSources returns the mappings a `<<` key merges: one mapping or a
// list of them.
func (p *parser) mergeSources(v *yaml.Node, path string, depth int) [][]*entry {
	if depth > 10 {
		p.errorf(v, path, "merge keys nested too deep (an anchor merging itself?)")
		return nil
	}
	v = p.resolve(v)
	if v == nil {
		return nil
	}
	if v.Kind == yaml.SequenceNode {
		var out [][]*entry
		for _, item := range v.Content {
			out = append(out, p.mergeSources(item, path, depth+1)...)
		}
		return out
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(v, path, "<< merges a mapping or a list of mappings, got %s", describe(v))
		return nil
	}
	// A merged mapping's own merge keys are resolved with depth, to stop
	// an anchor that merges itself.
	var out []*entry
	seen := map[string]bool{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		kr := p.resolve(k)
		if kr == nil || kr.Kind != yaml.ScalarNode || isNull(kr) || seen[kr.Value] {
			continue // reported where the anchor is defined
		}
		seen[kr.Value] = true
		out = append(out, &entry{key: kr.Value, k: k, v: val})
	}
	for _, m := range merges {
		for _, src := range p.mergeSources(m, path, depth+1) {
			for _, e := range src {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
		}
	}
	return [][]*entry{out}
}

// fields returns a mapping's entries, reporting keys not in known with a
// suggestion. Keys in other are accepted too; the caller judges them.
func (p *parser) fields(n *yaml.Node, path, want string, known []string, other ...string) (fields, bool) {
	list, ok := p.mapping(n, path, want)
	f := fields{m: map[string]*entry{}}
	if !ok {
		return f, false
	}
	for _, e := range list {
		if !contains(known, e.key) && !contains(other, e.key) {
			p.unknownKey(e, path, known, other)
			continue
		}
		f.list = append(f.list, e)
		f.m[e.key] = e
	}
	return f, true
}

func (p *parser) unknownKey(e *entry, path string, known, other []string) {
	all := append(append([]string(nil), known...), other...)
	if s := suggest(e.key, all); s != "" {
		p.errorf(e.k, join(path, e.key), "unknown key; did you mean %q?", s)
		return
	}
	p.errorf(e.k, join(path, e.key), "unknown key; known keys here: %s", strings.Join(all, ", "))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scalar returns n resolved when it is a non-null scalar; a mapping or list
// is reported as a type error using want ("a string", ...).
func (p *parser) scalar(n *yaml.Node, path, want string) (*yaml.Node, bool) {
	n = p.resolve(n)
	if isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected %s, got %s", want, describe(n))
		return nil, false
	}
	return n, true
}

// str decodes a string; any scalar is taken as its text.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	s, ok := p.scalar(n, path, "a string")
	if !ok {
		return "", false
	}
	return s.Value, true
}

// integer decodes an integer in lo..hi. A quoted number ("80") is accepted,
// as templating tools often write them.
func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	s, ok := p.scalar(n, path, "an integer")
	if !ok {
		return 0, false
	}
	var v int64
	var err error
	switch s.ShortTag() {
	case "!!int":
		err = s.Decode(&v)
	case "!!str":
		v, err = strconv.ParseInt(strings.TrimSpace(s.Value), 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil {
		p.errorf(s, path, "expected an integer, got %s", describe(s))
		return 0, false
	}
	if v < lo || v > hi {
		p.errorf(s, path, "must be between %d and %d, got %d", lo, hi, v)
		return 0, false
	}
	return v, true
}

// duration decodes a Go duration of at least lo.
func (p *parser) duration(n *yaml.Node, path string, lo time.Duration) (time.Duration, bool) {
	s, ok := p.scalar(n, path, "a duration like 5s")
	if !ok {
		return 0, false
	}
	switch s.ShortTag() {
	case "!!int", "!!float":
		if s.Value == "0" { // needs no unit, as in Go
			break
		}
		p.errorf(s, path, "expected a duration like 5s, got %s (add a unit: %ss or %sms)", s.Value, s.Value, s.Value)
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s.Value))
	if err != nil {
		p.errorf(s, path, "expected a duration like 5s, got %s", describe(s))
		return 0, false
	}
	if d < lo {
		if lo == 0 {
			p.errorf(s, path, "must not be negative, got %s", d)
		} else if lo == 1 {
			p.errorf(s, path, "must be positive, got %s", d)
		} else {
			p.errorf(s, path, "must be at least %s, got %s", lo, d)
		}
		return 0, false
	}
	return d, true
}

// oneOf decodes a string that must be one of allowed.
func (p *parser) oneOf(n *yaml.Node, path string, allowed ...string) (string, bool) {
	s, ok := p.scalar(n, path, "a string")
	if !ok {
		return "", false
	}
	if contains(allowed, s.Value) {
		return s.Value, true
	}
	p.errorf(s, path, "must be %s, got %s%s", orList(allowed), describe(s), didYouMean(s.Value, allowed))
	return "", false
}

// didYouMean returns "; did you mean X?" for a value close to an allowed
// one, else "".
func didYouMean(v string, allowed []string) string {
	if s := suggest(v, allowed); s != "" {
		return fmt.Sprintf("; did you mean %s?", s)
	}
	return ""
}

// orList formats "a, b or c".
func orList(l []string) string {
	if len(l) <= 1 {
		return strings.Join(l, "")
	}
	return strings.Join(l[:len(l)-1], ", ") + " or " + l[len(l)-1]
}

// seq returns the items of a list; a null list is empty. A scalar where a
// list belongs is reported with an example.
func (p *parser) seq(n *yaml.Node, path, example string) ([]*yaml.Node, bool) {
	n = p.resolve(n)
	if isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "expected a list like %s, got %s", example, describe(n))
		return nil, false
	}
	return n.Content, true
}
