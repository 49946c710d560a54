package procview

import (
	"bytes"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// notif is struct seccomp_notif.
type notif struct {
	id    uint64
	pid   uint32
	flags uint32
	data  seccompData
}

// seccompData is struct seccomp_data.
type seccompData struct {
	nr   int32
	arch uint32
	ip   uint64
	args [6]uint64
}

// notifResp is struct seccomp_notif_resp.
type notifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// notifAddfd is struct seccomp_notif_addfd.
type notifAddfd struct {
	id         uint64
	flags      uint32
	srcfd      uint32
	newfd      uint32
	newfdFlags uint32
}

func ioctl(fd int, req uint, arg unsafe.Pointer) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if e != 0 {
		return r, e
	}
	return r, nil
}

// recv waits for the next call.
func recv(listener int, n *notif) error {
	*n = notif{}
	_, err := ioctl(listener, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
	return err
}

// send answers a call: the call goes on (cont), or returns val, or fails
// with errno.
func send(listener int, id uint64, cont bool, val int64, errno unix.Errno) error {
	r := notifResp{id: id, val: val, error: -int32(errno)}
	if cont {
		r = notifResp{id: id, flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	}
	_, err := ioctl(listener, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	return err
}

// sendFD answers an open with a copy of fd in the caller, which the call
// returns.
func sendFD(listener int, id uint64, fd int, cloexec bool) error {
	a := notifAddfd{id: id, flags: unix.SECCOMP_ADDFD_FLAG_SEND, srcfd: uint32(fd)}
	if cloexec {
		a.newfdFlags = unix.O_CLOEXEC
	}
	_, err := ioctl(listener, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	return err
}

// valid reports whether the call id still waits for its answer: the
// caller was not killed, so what was read from its memory is its own.
func valid(listener int, id uint64) bool {
	_, err := ioctl(listener, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
	return err == nil
}

// errNotString is returned for a path longer than PATH_MAX.
var errNotString = errors.New("no NUL within PATH_MAX")

// readString reads the NUL-terminated string at addr in pid's memory,
// page by page (a read across the end of a mapping fails).
func readString(pid int, addr uint64, buf []byte) (string, error) {
	const page = 4096
	buf = buf[:0]
	for len(buf) < unix.PathMax {
		n := page - int(addr%page)
		chunk := buf[len(buf) : len(buf)+n]
		got, err := unix.ProcessVMReadv(pid,
			[]unix.Iovec{{Base: &chunk[0], Len: uint64(n)}},
			[]unix.RemoteIovec{{Base: uintptr(addr), Len: n}}, 0)
		if err != nil {
			return "", err
		}
		if i := bytes.IndexByte(chunk[:got], 0); i >= 0 {
			return string(buf[:len(buf)+i]), nil
		}
		buf = buf[:len(buf)+got]
		addr += uint64(got)
	}
	return "", errNotString
}

// readMem fills b from addr in pid's memory.
func readMem(pid int, addr uint64, b []byte) error {
	return vmCopy(unix.ProcessVMReadv, pid, addr, b)
}

// writeMem writes b at addr in pid's memory.
func writeMem(pid int, addr uint64, b []byte) error {
	return vmCopy(unix.ProcessVMWritev, pid, addr, b)
}

// vmCopy copies all of b to or from addr in pid's memory with op
// (process_vm_readv or process_vm_writev); a short copy is EFAULT.
func vmCopy(op func(int, []unix.Iovec, []unix.RemoteIovec, uint) (int, error), pid int, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := op(pid, []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}, []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err != nil {
		return err
	}
	if n != len(b) {
		return unix.EFAULT
	}
	return nil
}
