//go:build !linux

package maintenance

import "errors"

// Lock needs Linux, as the data plane it guards does.
func Lock(string) (func(), error) { return nil, errors.New("lock pin path: needs Linux") }

func clearStaleLock(string) {}
