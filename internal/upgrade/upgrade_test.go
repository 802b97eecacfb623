package upgrade

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEnvFor: the value names each address with its descriptor, and the
// descriptors lose close-on-exec so that they survive exec.
func TestEnvFor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := EnvFor(map[string]*os.File{"127.0.0.1:8080": f})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := f.SyscallConn()
	var fd, flags int
	rc.Control(func(d uintptr) { fd = int(d); flags, _ = unix.FcntlInt(d, unix.F_GETFD, 0) })
	if v != "127.0.0.1:8080="+strconv.Itoa(fd) {
		t.Errorf("EnvFor: %q, want the address and descriptor %d", v, fd)
	}
	if flags&unix.FD_CLOEXEC != 0 {
		t.Error("the descriptor is still close-on-exec")
	}
	if _, err := EnvFor(map[string]*os.File{"a;b": f}); err == nil {
		t.Error("an address with ';' was accepted")
	}
}

// TestInheritInNewImage: a process started with listening sockets named
// in Env takes them as working listeners, by the address they were
// opened for or by the address it resolves to, and closes what it does
// not take. (The hand-on runs through a real exec: the child is this test
// binary.)
func TestInheritInNewImage(t *testing.T) {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	fa, _ := a.(*net.TCPListener).File()
	fb, _ := b.(*net.TCPListener).File()
	aAddr, bPort := a.Addr().String(), b.Addr().(*net.TCPAddr).Port
	a.Close() // as the draining image does: the duplicates keep the sockets
	b.Close()
	cmd := exec.Command(os.Args[0])
	cmd.ExtraFiles = []*os.File{fa, fb} // descriptors 3 and 4 in the child
	cmd.Env = append(os.Environ(), "XLB_UPGRADE_CHILD=1", "XLB_TEST_A="+aAddr, fmt.Sprintf("XLB_TEST_B=%d", bPort),
		Env+"="+aAddr+"=3;0.0.0.0:"+strconv.Itoa(bPort)+"=4")
	out, err := cmd.CombinedOutput()
	fa.Close()
	fb.Close()
	if err != nil || !strings.Contains(string(out), "child: ok") {
		t.Fatalf("the child: %v\n%s", err, out)
	}
	if _, err := net.Dial("tcp", aAddr); err == nil {
		t.Error("the socket still takes connections after the child closed it")
	}
}

// TestMain runs the child's half of TestInheritInNewImage when this
// binary is that child.
func TestMain(m *testing.M) {
	if os.Getenv("XLB_UPGRADE_CHILD") == "1" {
		if err := childHalf(); err != nil {
			fmt.Println("child:", err)
			os.Exit(1)
		}
		fmt.Println("child: ok")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func childHalf() error {
	s, err := FromEnv()
	if err != nil {
		return err
	}
	if _, ok := os.LookupEnv(Env); ok {
		return fmt.Errorf("the variable is still set")
	}
	aAddr := os.Getenv("XLB_TEST_A")
	ln, ok := s.Take(aAddr)
	if !ok {
		return fmt.Errorf("no listener for %s", aAddr)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", aAddr)
	if err != nil {
		return fmt.Errorf("the inherited socket does not take connections: %v", err)
	}
	c.Close()
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	conn.Close()
	if _, ok := s.Take(aAddr); ok {
		return fmt.Errorf("taken twice")
	}
	// ":P" finds the socket handed on as "0.0.0.0:P".
	lb, ok := s.Take(":" + os.Getenv("XLB_TEST_B"))
	if !ok {
		return fmt.Errorf("the wildcard socket was not found by \":port\"")
	}
	lb.Close()
	if closed := s.CloseRest(); len(closed) != 0 {
		return fmt.Errorf("CloseRest closed %v", closed)
	}
	return nil
}

// TestBadEnv: a value that does not name listening sockets is an error.
func TestBadEnv(t *testing.T) {
	t.Setenv(Env, "x=notanumber;y=1")
	s, err := FromEnv()
	if err == nil || !strings.Contains(err.Error(), "not ADDR=FD") {
		t.Errorf("err %v", err)
	}
	if len(s.lns) != 0 {
		t.Errorf("took %v", s.lns)
	}
}
