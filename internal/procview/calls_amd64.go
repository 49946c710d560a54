package procview

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// pathCalls are the calls the filter sends to the listener.
var pathCalls = map[uintptr]call{
	unix.SYS_OPEN:       {kind: kOpen},
	unix.SYS_OPENAT:     {kind: kOpen, at: true},
	unix.SYS_OPENAT2:    {kind: kOpen2, at: true},
	unix.SYS_STAT:       {kind: kStat},
	unix.SYS_LSTAT:      {kind: kStat, nofollow: true},
	unix.SYS_NEWFSTATAT: {kind: kStat, at: true, flags: true},
	unix.SYS_STATX:      {kind: kStatx, at: true},
	unix.SYS_ACCESS:     {kind: kAccess},
	unix.SYS_FACCESSAT:  {kind: kAccess, at: true},
	unix.SYS_FACCESSAT2: {kind: kAccess, at: true, flags: true},
	unix.SYS_READLINK:   {kind: kReadlink},
	unix.SYS_READLINKAT: {kind: kReadlink, at: true},
}
