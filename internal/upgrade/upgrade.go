// Package upgrade carries listening sockets across xlbd's re-execution of
// itself (SIGUSR2: a new binary in the same process, as NGINX's binary
// upgrade, without a second process to coordinate): the old image hands
// its listeners' descriptors to the new one through the environment, so
// that no connection is refused while it drains and the new one starts.
// Connections that arrive meanwhile wait in the sockets' backlogs.
package upgrade

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Env is the variable that names the inherited descriptors:
// "ADDR=FD;ADDR=FD", ADDR as the config wrote the listen address.
const Env = "XLB_INHERITED_LISTENERS"

// Set is the listeners a new image inherited, by the address they were
// opened for, until Take claims them.
type Set struct {
	mu  sync.Mutex
	lns map[string]net.Listener
}

// FromEnv takes the listeners named in Env and removes the variable, so
// that no program xlbd starts sees it. Descriptors that are not listening
// sockets are an error (and closed).
func FromEnv() (*Set, error) {
	v, ok := os.LookupEnv(Env)
	os.Unsetenv(Env)
	s := &Set{lns: map[string]net.Listener{}}
	if !ok || v == "" {
		return s, nil
	}
	var errs []error
	for _, item := range strings.Split(v, ";") {
		addr, fdText, ok := strings.Cut(item, "=")
		fd, err := strconv.Atoi(fdText)
		if !ok || err != nil || fd < 3 {
			errs = append(errs, fmt.Errorf("%s: %q is not ADDR=FD", Env, item))
			continue
		}
		f := os.NewFile(uintptr(fd), "inherited "+addr)
		unix.CloseOnExec(fd)
		ln, err := net.FileListener(f)
		f.Close() // FileListener made its own descriptor
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: descriptor %d for %s: %w", Env, fd, addr, err))
			continue
		}
		s.lns[addr] = ln
	}
	return s, errors.Join(errs...)
}

// Addrs lists the addresses of the listeners not taken yet.
func (s *Set) Addrs() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []string
	for addr := range s.lns {
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	return addrs
}

// FromFiles makes a Set of files (what EnvFor was given): the same
// process serves on with them when the new image could not be run.
func FromFiles(files map[string]*os.File) (*Set, error) {
	s := &Set{lns: map[string]net.Listener{}}
	var errs []error
	for addr, f := range files {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		s.lns[addr] = ln
	}
	return s, errors.Join(errs...)
}

// Take returns the inherited listener for addr, matched by the address as
// written or, failing that, by the local address it resolves to; ok is
// false when there is none.
func (s *Set) Take(addr string) (net.Listener, bool) {
	if s == nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ln, ok := s.lns[addr]; ok {
		delete(s.lns, addr)
		return ln, true
	}
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, false
	}
	for k, ln := range s.lns {
		got, ok := ln.Addr().(*net.TCPAddr)
		if ok && got.Port == want.Port && (got.IP.Equal(want.IP) || want.IP == nil && got.IP.IsUnspecified()) {
			delete(s.lns, k)
			return ln, true
		}
	}
	return nil, false
}

// Listen is Take, else a new listener.
func (s *Set) Listen(addr string) (net.Listener, error) {
	if ln, ok := s.Take(addr); ok {
		return ln, nil
	}
	return net.Listen("tcp", addr)
}

// CloseRest closes what nobody took (a listener the new config dropped)
// and returns the addresses it closed.
func (s *Set) CloseRest() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var closed []string
	for addr, ln := range s.lns {
		ln.Close()
		closed = append(closed, addr)
	}
	s.lns = map[string]net.Listener{}
	return closed
}

// EnvFor makes Env's value for files (listen address → a duplicate of its
// listening socket, as net.TCPListener.File gives) and lets them survive
// exec; the files must stay open until then.
func EnvFor(files map[string]*os.File) (string, error) {
	var items []string
	for addr, f := range files {
		if strings.ContainsAny(addr, ";=") {
			return "", fmt.Errorf("listen address %q cannot be handed on", addr)
		}
		// Not f.Fd(), which would make the socket blocking for every
		// descriptor that shares it.
		rc, err := f.SyscallConn()
		if err != nil {
			return "", fmt.Errorf("%s: %w", addr, err)
		}
		var fd int
		var ferr error
		if err := rc.Control(func(d uintptr) {
			fd = int(d)
			_, ferr = unix.FcntlInt(d, unix.F_SETFD, 0)
		}); err != nil || ferr != nil {
			return "", fmt.Errorf("descriptor for %s: %w", addr, errors.Join(err, ferr))
		}
		items = append(items, addr+"="+strconv.Itoa(fd))
	}
	return strings.Join(items, ";"), nil
}
