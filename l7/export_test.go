package l7

import "time"

// SetH2SendStall shortens how long an HTTP/2 backend may hold an upload's
// windows shut, for a test; it returns the undo.
func SetH2SendStall(d time.Duration) func() {
	old := h2UpSendStall
	h2UpSendStall = d
	return func() { h2UpSendStall = old }
}

// H2DrainRTT is how long a drain waits for its PING's answer.
const H2DrainRTT = h2DrainRTT
