package l7

import (
	"io"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
)

// panicLog is the logger of the newest Server, for goroutines that have
// none of their own at hand (a backend connection's reader).
var panicLog atomic.Pointer[slog.Logger]

// contain, deferred at the root of a goroutine that serves one client
// connection, stream or backend connection, turns a panic into a logged
// error and that connection closed: nothing a peer sends may end the
// process and every other service with it (net/http recovers its
// handlers the same way). A panic is still a bug: the stack is logged.
func contain(what string, c io.Closer) {
	v := recover()
	if v == nil {
		return
	}
	if log := panicLog.Load(); log != nil {
		log.Error("l7: recovered from a panic; its connection is closed (a bug: please report it with this stack)",
			"in", what, "panic", v, "stack", string(debug.Stack()))
	}
	if c != nil {
		c.Close()
	}
}
