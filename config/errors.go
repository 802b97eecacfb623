package config

import (
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a config file: where it is and what to do about it.
type Error struct {
	File string // the file name given to Load or Parse
	Line int    // 1-based; 0 when the YAML parser could not tell
	Key  string // dotted path of the key, e.g. services[1].backends[0].weight; empty for the whole file
	Msg  string // what is wrong and, where it helps, the fix
}

// Error formats the error as "file:line: key: message", leaving out the
// parts that are unknown.
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every error found in a config file, sorted by line. Parse and
// Load never return an empty ErrorList as an error.
type ErrorList []Error

// Error returns every error, one per line.
func (l ErrorList) Error() string {
	return strings.Join(l.Details(), "\n")
}

// Details returns every error as a string; the admin API sends them as the
// details of a failed reload.
func (l ErrorList) Details() []string {
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = e.Error()
	}
	return out
}

// suggest returns the known key closest to an unknown one, or "" when none
// is close enough to be a likely typo.
// aliases are the other names people give a value, which spelling alone
// would not lead to ("http2" is one letter from http1, not h2).
var aliases = map[string]string{
	"http2": "h2", "http/2": "h2", "http_2": "h2", "http/1.1": "http1", "http1.1": "http1", "http11": "http1",
	"tls": "https", "ssl": "https", "roundrobin": "round_robin", "rr": "round_robin", "leastconn": "least_conn",
}

func suggest(key string, known []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	k := norm(key)
	if alias, ok := aliases[k]; ok && slices.Contains(known, alias) {
		return alias
	}
	best, bestDist := "", -1
	for _, cand := range known {
		c := norm(cand)
		if c == k {
			return cand // only case or dashes differ
		}
		d := editDistance(k, c)
		if bestDist < 0 || d < bestDist {
			best, bestDist = cand, d
		}
	}
	limit := 2
	if len(k) <= 4 {
		limit = 1
	}
	if bestDist >= 0 && bestDist <= limit {
		return best
	}
	// A prefix of a long key is a likely shorthand: "unhealthy" for
	// "unhealthy_threshold".
	if len(k) >= 4 {
		for _, cand := range known {
			if strings.HasPrefix(norm(cand), k) {
				return cand
			}
		}
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of two neighbours ("naem" for "name")
// count one each.
func editDistance(a, b string) int {
	rows := [3][]int{make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)}
	for j := range rows[1] {
		rows[1][j] = j
	}
	for i := 1; i <= len(a); i++ {
		prev2, prev, cur := rows[0], rows[1], rows[2]
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		rows[0], rows[1], rows[2] = prev, cur, prev2
	}
	return rows[1][len(b)]
}
