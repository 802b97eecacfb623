//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7"
)

// l7Parts wires the reconciler and controller to a real l7 server with the
// L4 data plane off: what xlbd runs for layer 7 services, minus the checker.
func l7Parts(t *testing.T, cfg *config.Config) (*controller, *l7.Server) {
	t.Helper()
	web, err := l7.New(l7.Options{StickySecret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		web.Shutdown(ctx)
	})
	log := slog.New(slog.DiscardHandler)
	r := &reconciler{log: log, model: newModel(), l4: newL4Projector(log, nil, newIDs()), l7: &l7Projector{web: web},
		retarget: func(*model) {}, changed: func() {}}
	if err := r.load(cfg, true); err != nil {
		t.Fatal(err)
	}
	return &controller{log: log, r: r, reload: func() error { return r.load(cfg, false) }}, web
}

func freeListen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func l7Config(t *testing.T) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`l7: {drain_timeout: 10s}
services:
  - name: web
    layer: 7
    listen: %q
    backends:
      - {address: 127.0.0.1:9001, weight: 2}
      - {address: 127.0.0.1:9002}
    routes:
      - match: {path_prefix: /r/}
        backends: [{address: 127.0.0.1:9009}]
`, freeListen(t))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestControllerL7RuntimeChanges(t *testing.T) {
	ctl, web := l7Parts(t, l7Config(t))
	u1 := web.Upstream("web", "127.0.0.1:9001")
	u1.Acquire()
	u1.Release()
	if _, err := ctl.PatchBackend("web", "127.0.0.1:9001", api.PatchBackend{Weight: ptr(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9003"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.PatchBackend("web", "127.0.0.1:9002", api.PatchBackend{Drain: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if got := web.Upstream("web", "127.0.0.1:9001"); got != u1 || got.Weight() != 7 || got.Requests() != 1 {
		t.Errorf("9001 after an add and a drain: same %v, weight %d, requests %d; want its live state with the API weight 7",
			got == u1, got.Weight(), got.Requests())
	}
	if u := web.Upstream("web", "127.0.0.1:9002"); !u.Drained() {
		t.Error("drain through the API did not reach the l7 pool")
	}

	ch, err := ctl.RemoveBackend("web", "127.0.0.1:9002")
	if err != nil || ch.Note != removedNote {
		t.Errorf("remove of a config backend: %+v, %v; want the note %q", ch, err, removedNote)
	}
	_, err = ctl.PatchBackend("web", "127.0.0.1:9009", api.PatchBackend{Weight: ptr(3)})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("patch of a route-only backend: %v, want ErrInvalid", err)
	}
	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9003"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("second add: %v, want ErrConflict", err)
	}

	if _, err := ctl.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := web.Upstream("web", "127.0.0.1:9001"); got != u1 || got.Weight() != 2 {
		t.Errorf("after a reload 9001 has weight %d, want the file's 2 (same live state: %v)", got.Weight(), got == u1)
	}
	if u := web.Upstream("web", "127.0.0.1:9002"); u == nil || u.Drained() {
		t.Error("after a reload 9002 should be back and not drained")
	}
	if u := web.Upstream("web", "127.0.0.1:9003"); u == nil || !u.Drained() {
		t.Error("after a reload the API-added 9003 should drain before it goes")
	}
	var listed []string
	for _, s := range ctl.Services() {
		for _, b := range s.Backends {
			listed = append(listed, fmt.Sprintf("%s:%s:%v", b.Address, b.Source, b.Draining))
		}
	}
	want := "[127.0.0.1:9001:config:false 127.0.0.1:9002:config:false 127.0.0.1:9003:api:true 127.0.0.1:9009:config:false]"
	if fmt.Sprint(listed) != want {
		t.Errorf("services after the reload list %v, want %s", listed, want)
	}
}

func ptr[T any](v T) *T { return &v }
