package maps

// Health probes through the forwarding path carry this SO_MARK (XLB_HC_MARK
// and XLB_HC_MARK_MASK in bpf/include/consts.h; a program test uses
// HealthProbeMark, so a drift fails it): the high bits say "xlb probe", the
// low bits name the backend id.
const (
	healthProbeMark     uint32 = 0x786c0000
	healthProbeMarkMask uint32 = 0xffffc000
)

// HealthProbeMark is the SO_MARK of a probe to backend id through the
// forwarding path.
func HealthProbeMark(id uint32) uint32 { return healthProbeMark | id&^healthProbeMarkMask }
