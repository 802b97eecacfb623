package maintenance

import (
	"errors"
	"os"
	"testing"

	"github.com/xlbproject/xlb/test/privileged"
)

func TestAroundDetach(t *testing.T) {
	privileged.Require(t) // writes under /run
	pin := "/sys/fs/bpf/xlb-maintenance-test-" + t.Name()
	t.Cleanup(func() { os.Remove(Path(pin)) })

	// Not in maintenance: the withdraw's mark is forgotten after detach.
	err := AroundDetach(pin, func() error { return Set(pin, true) })
	if err != nil || On(pin) {
		t.Fatalf("after a detach outside maintenance: err %v, in maintenance %t", err, On(pin))
	}
	// In maintenance: it stays.
	if err := Set(pin, true); err != nil {
		t.Fatal(err)
	}
	if err := AroundDetach(pin, func() error { return Set(pin, true) }); err != nil || !On(pin) {
		t.Fatalf("after a detach in maintenance: err %v, in maintenance %t", err, On(pin))
	}
	// A failed detach changes nothing.
	Set(pin, false)
	boom := errors.New("boom")
	if err := AroundDetach(pin, func() error { Set(pin, true); return boom }); !errors.Is(err, boom) || !On(pin) {
		t.Fatalf("after a failed detach: err %v, in maintenance %t", err, On(pin))
	}
	if Path("/sys/fs/bpf/xlb") != "/run/xlb/sys_fs_bpf_xlb.announce-off" {
		t.Errorf("marker path %s", Path("/sys/fs/bpf/xlb"))
	}
}
