package l7

import "testing"

func TestMatchPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/users": "/v1/users", "/": "/", "": "", "*": "*", "/a/b/": "/a/b/",
		"/a/../b": "/b", "//a": "/a", "/a/./b/": "/a/b/", "/a/..": "/", "/..": "/", "/a/.": "/a/",
		"/a/b/..": "/a/", "/a..b/c": "/a..b/c", "/.well-known/x": "/.well-known/x",
	} {
		if got := matchPath(in); got != want {
			t.Errorf("matchPath(%q) = %q, want %q", in, got, want)
		}
	}
}
