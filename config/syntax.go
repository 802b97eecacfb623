package config

import (
	"bytes"
	"fmt"
	"strings"
)

// The YAML parser reports a syntax error at the line of the construct it
// gave up on (a block's or a flow's first line), which can be many lines
// above the mistake. pinpoint looks at the text for the usual culprits (a
// tab, a flow or a quote left open, a line indented to no block) from that
// line on, and returns the line and message to report instead; it returns
// them unchanged when it finds nothing.
func pinpoint(data []byte, line int, msg string) (int, string) {
	lines := strings.Split(string(data), "\n")
	switch {
	case strings.Contains(msg, "cannot start any token") && line <= len(lines) && strings.HasPrefix(strings.TrimLeft(lines[line-1], " "), "\t"):
		return line, "a tab indents this line; YAML indents with spaces only"
	case strings.Contains(msg, "tab character"):
		for i, l := range lines {
			if indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]; strings.Contains(indent, "\t") {
				return i + 1, "a tab indents this line; YAML indents with spaces only"
			}
		}
	case strings.HasPrefix(msg, "did not find expected ',' or "):
		closer := msg[len(msg)-2 : len(msg)-1]
		for i := max(line-1, 0); i < len(lines); i++ {
			if depth, _ := scanLine(lines[i]); depth > 0 {
				return i + 1, fmt.Sprintf("%s: the flow opened on this line is not closed with %s", msg, closer)
			}
		}
	case msg == "found unexpected end of stream":
		for i := max(line-1, 0); i < len(lines); i++ {
			if _, open := scanLine(lines[i]); open {
				return i + 1, "the quote opened on this line is not closed on it"
			}
		}
	case msg == "did not find expected key" || msg == "did not find expected '-' indicator":
		// A quote left open swallows the lines up to the next quote.
		for i := max(line-1, 0); i < len(lines); i++ {
			if _, open := scanLine(lines[i]); open {
				return i + 1, "the quote opened on this line is not closed on it"
			}
		}
		if i := misindented(lines, line); i > 0 {
			return i, fmt.Sprintf("%s: this line's indentation lines up with no block above it", msg)
		}
	}
	return line, msg
}

// scanLine returns a line's net count of flow openers ([ and {) less
// closers, and whether a quoted scalar is still open at its end; quotes and
// comments are skipped.
func scanLine(l string) (depth int, openQuote bool) {
	var quote byte
	tokenStart := true // a quote here opens a quoted scalar
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case quote == '"':
			if c == '\\' {
				i++
			} else if c == '"' {
				quote = 0
			}
			continue
		case quote == '\'':
			if c == '\'' {
				if i+1 < len(l) && l[i+1] == '\'' {
					i++
				} else {
					quote = 0
				}
			}
			continue
		}
		switch {
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return depth, false
		case (c == '"' || c == '\'') && tokenStart:
			quote = c
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		}
		tokenStart = c == ' ' || c == '\t' || c == ':' || c == ',' || c == '[' || c == '{' || c == '-'
	}
	return depth, quote != 0
}

// misindented returns the first line from line `from` on (1-based) whose
// indentation matches no open block, or 0. Block scalars' and multi-line
// flows' lines are skipped: their indentation is free.
func misindented(lines []string, from int) int {
	indents := []int{0}
	opens := false // the last line ends with "key:" or "-": a deeper line starts a block
	scalarAt := -1 // inside a block scalar: lines deeper than this indent are its text
	flow := 0      // inside a multi-line flow
	for i, l := range lines {
		t := strings.TrimLeft(l, " ")
		k := len(l) - len(t)
		if t == "" || t[0] == '#' {
			continue
		}
		if scalarAt >= 0 {
			if k > scalarAt {
				continue
			}
			scalarAt = -1
		}
		if flow > 0 {
			d, _ := scanLine(l)
			flow += d
			continue
		}
		top := indents[len(indents)-1]
		switch {
		case k > top && opens:
			indents = append(indents, k)
		case k > top:
			if i+1 >= from {
				return i + 1
			}
		default:
			for len(indents) > 1 && indents[len(indents)-1] > k {
				indents = indents[:len(indents)-1]
			}
			if indents[len(indents)-1] != k && i+1 >= from {
				return i + 1
			}
		}
		// "- key: v" opens a mapping at the key's column as well.
		for rest := t; strings.HasPrefix(rest, "- ") || rest == "-"; {
			trimmed := strings.TrimLeft(strings.TrimPrefix(rest, "-"), " ")
			k += len(rest) - len(trimmed)
			if trimmed != "" {
				indents = append(indents, k)
			}
			rest = trimmed
		}
		body := t
		if j := commentStart(body); j >= 0 {
			body = strings.TrimRight(body[:j], " ")
		}
		d, _ := scanLine(body)
		flow = max(d, 0)
		opens = strings.HasSuffix(body, ":") || body == "-" || strings.HasSuffix(body, " -")
		if j := strings.LastIndex(body, ": "); j >= 0 && isBlockScalarHeader(body[j+2:]) || isBlockScalarHeader(body) {
			scalarAt, opens = indents[len(indents)-1], false
		}
	}
	return 0
}

// commentStart returns where a comment starts in a line, or -1.
func commentStart(l string) int {
	for i := 0; i < len(l); i++ {
		if l[i] == '#' && (i == 0 || l[i-1] == ' ') {
			if _, open := scanLine(l[:i]); !open {
				return i
			}
		}
	}
	return -1
}

func isBlockScalarHeader(s string) bool {
	s = strings.TrimSpace(s)
	return s != "" && (s[0] == '|' || s[0] == '>') && len(bytes.Trim([]byte(s[1:]), "+-0123456789")) == 0
}
