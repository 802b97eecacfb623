package l7_test

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHeadAnsweredByXLBHasNoBody: a HEAD that xlb answers itself (503 no
// backend, 429 rate limit) carries the length a GET would get and no body:
// on a kept-alive HTTP/1.1 connection a body would be read as the start of
// the next answer, and over HTTP/2 it is DATA a HEAD stream must not have.
func TestHeadAnsweredByXLBHasNoBody(t *testing.T) {
	for _, tc := range []struct {
		name, svc string
		prime     bool // a GET first, to use the rate limit's only token
	}{
		{"503", fmt.Sprintf("backends:\n  - {address: %q, weight: 0}\n", freePort(t)), false},
		{"429", backendsYAML(newBackend(t, "a", nil)) + "rate_limit: {rate: 1/m, burst: 1}\n", true},
	} {
		t.Run(tc.name+"/http1", func(t *testing.T) {
			p := startProxy(t, tc.svc, "")
			rc := dialRaw(t, p.listen)
			if tc.prime {
				rc.write(getReq("/"))
				rc.read("GET")
			}
			rc.write("HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, _ := rc.read("HEAD")
			if resp.StatusCode < 400 || resp.ContentLength <= 0 {
				t.Errorf("HEAD: %d, content-length %d; want xlb's own answer with the length a GET gets", resp.StatusCode, resp.ContentLength)
			}
			rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if line, err := rc.br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 ") {
				t.Errorf("after xlb's %d to a HEAD the connection reads %q (%v): the answer carried a body", resp.StatusCode, line, err)
			}
		})
	}
	t.Run("503/h2", func(t *testing.T) {
		p := startProxy(t, fmt.Sprintf("backends:\n  - {address: %q, weight: 0}\n", freePort(t)), "")
		c, err := net.Dial("tcp", p.listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":method", "HEAD"}, {":scheme", "http"}, {":path", "/"}, {":authority", "x"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					return
				}
			case *http2.DataFrame:
				if len(f.Data()) > 0 {
					t.Fatalf("xlb's answer to a HEAD carries %d bytes of DATA", len(f.Data()))
				}
				if f.StreamEnded() {
					return
				}
			}
		}
	})
}
