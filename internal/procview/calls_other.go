//go:build !amd64 && !arm64

package procview

// auditArch 0: Start returns ErrUnavailable.
const auditArch = 0

var pathCalls = map[uintptr]call{}
