package procview

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
)

// filterProgram returns the filter: calls of this architecture whose
// number is one of pathCalls go to the listener, all others are allowed
// (the container's own filter still applies to them).
func filterProgram() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, fmt.Errorf("%w: the system calls of %s are not known", ErrUnavailable, runtime.GOARCH)
	}
	nrs := make([]uint32, 0, len(pathCalls))
	for nr := range pathCalls {
		nrs = append(nrs, uint32(nr))
	}
	n := len(nrs)
	// 0: load arch; 1: other arch → allow; 2: load nr; 3..3+n-1: match →
	// notify; 3+n: allow; 4+n: notify.
	prog := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArch, 0, uint8(n+1)),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
	}
	for i, nr := range nrs {
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, uint8(n-i), 0))
	}
	prog = append(prog,
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW),
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_USER_NOTIF),
	)
	if n+1 > 255 {
		return nil, fmt.Errorf("procview: %d calls do not fit a jump", n)
	}
	return prog, nil
}

func stmt(code uint16, k uint32) unix.SockFilter {
	return unix.SockFilter{Code: code, K: k}
}

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// install sets no_new_privs and the filter on the calling thread and
// returns the listener.
func install(prog []unix.SockFilter) (int, error) {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("%w: set no_new_privs: %w", ErrUnavailable, err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return -1, fmt.Errorf("%w: install a seccomp filter with a listener: %w", ErrUnavailable, e)
	}
	return int(fd), nil
}
