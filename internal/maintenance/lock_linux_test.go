package maintenance

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/test/privileged"
)

func TestLock(t *testing.T) {
	privileged.Require(t) // writes under /run
	pin := "/sys/fs/bpf/xlb-lock-test-" + t.Name()
	path := File(pin, ".lock")
	t.Cleanup(func() { os.Remove(path) })

	release, err := Lock(pin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(pin)
	if err == nil || !strings.Contains(err.Error(), "another xlbd (pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("a second lock: err %v, want one naming this process", err)
	}
	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the release left %s (stat: %v)", path, err)
	}
	release, err = Lock(pin)
	if err != nil {
		t.Fatalf("lock after a release: %v", err)
	}
	release()
}

// TestLockOneHolder takes and releases the lock from several goroutines at
// once (each open is its own lock, as another process's would be) and
// checks that no two ever hold it: a lock taken on a file the holder's
// release had just removed would make a second holder (without the check
// on the path, hundreds of times in a run of this test).
func TestLockOneHolder(t *testing.T) {
	privileged.Require(t)
	pin := "/sys/fs/bpf/xlb-lock-test-" + t.Name()
	t.Cleanup(func() { os.Remove(File(pin, ".lock")) })

	const takers, takes = 8, 50
	var holders atomic.Int32
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute)
	for range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < takes; {
				if time.Now().After(deadline) {
					t.Errorf("took the lock %d times of %d in a minute", n, takes)
					return
				}
				release, err := Lock(pin)
				if err != nil {
					runtime.Gosched()
					continue
				}
				n++
				if h := holders.Add(1); h != 1 {
					t.Errorf("%d holders of one lock", h)
				}
				time.Sleep(20 * time.Microsecond) // as long as a holder may take
				holders.Add(-1)
				release()
			}
		}()
	}
	wg.Wait()
}

func TestAroundDetachClearsStaleLock(t *testing.T) {
	privileged.Require(t)
	pin := "/sys/fs/bpf/xlb-lock-test-" + t.Name()
	path := File(pin, ".lock")
	t.Cleanup(func() { os.Remove(path); os.Remove(Path(pin)) })

	// A killed xlbd's file: nobody holds it.
	if err := os.WriteFile(path, []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := AroundDetach(pin, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("detach left a dead xlbd's lock %s (stat: %v)", path, err)
	}

	// A live one's stays, and stays held.
	release, err := Lock(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := AroundDetach(pin, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(pin); err == nil || !strings.Contains(err.Error(), "another xlbd") {
		t.Fatalf("after detach, a running xlbd's lock: %v, want it still held", err)
	}
}
