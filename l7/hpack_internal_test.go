package l7

import (
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestAppendHpack: what xlb's encoder writes decodes, with x/net's decoder,
// to the fields it was given: whole static matches, indexed names (below
// and above the 4-bit prefix), new names, long values, credentials.
func TestAppendHpack(t *testing.T) {
	fields := []hpack.HeaderField{
		{Name: ":status", Value: "200"}, {Name: ":status", Value: "503"}, {Name: ":method", Value: "POST"},
		{Name: ":path", Value: "/pkg.Service/Method"}, {Name: ":authority", Value: "example.com"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "www-authenticate", Value: "Basic"},
		{Name: "grpc-status", Value: "0"}, {Name: "x-long", Value: strings.Repeat("v", 300)},
		{Name: strings.Repeat("n", 200), Value: ""}, {Name: "authorization", Value: "Bearer t"},
		{Name: "cookie", Value: "a=b"}, {Name: "accept-encoding", Value: "gzip, deflate"},
	}
	var b []byte
	for _, f := range fields {
		b = appendHpack(b, f.Name, f.Value)
	}
	got, err := hpack.NewDecoder(4096, nil).DecodeFull(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(fields) {
		t.Fatalf("%d fields decoded, want %d", len(got), len(fields))
	}
	for i, f := range fields {
		if got[i].Name != f.Name || got[i].Value != f.Value {
			t.Errorf("field %d: %q: %q, want %q: %q", i, got[i].Name, got[i].Value, f.Name, f.Value)
		}
		if sens := f.Name == "authorization" || f.Name == "cookie"; got[i].Sensitive != sens {
			t.Errorf("field %s: never-indexed %v, want %v", f.Name, got[i].Sensitive, sens)
		}
	}
	if b[0] != 0x88 {
		t.Errorf(":status 200 is %#x, want the static entry 8 (0x88)", b[0])
	}
}
