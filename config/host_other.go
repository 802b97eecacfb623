//go:build !linux

package config

import "net"

// interfaceExists reports whether this host has an interface named name.
func interfaceExists(name string) (bool, error) {
	_, err := net.InterfaceByName(name)
	return err == nil, nil
}
