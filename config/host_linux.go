package config

import (
	"errors"

	"golang.org/x/sys/unix"
)

// interfaceExists reports whether the calling thread's network namespace
// has an interface named name. It asks the kernel by name, as the netlink
// lookup of the attach does, so an alternative name (ip link property add
// altname) counts; net.InterfaceByName knows the primary names only.
func interfaceExists(name string) (bool, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	switch err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENODEV):
		return false, nil
	default:
		return false, err
	}
}
