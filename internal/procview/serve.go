package procview

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// call is how a path call takes its arguments: after the directory
// descriptor when at, and what it does.
type call struct {
	kind     kind
	at       bool // the first argument is a directory descriptor
	flags    bool // stat and access calls: the last argument is AT_* flags
	nofollow bool // lstat
}

type kind int

const (
	kOpen     kind = iota // [dirfd,] path, flags, mode
	kOpen2                // dirfd, path, how, size
	kStat                 // [dirfd,] path, buf[, flags]
	kStatx                // dirfd, path, flags, mask, buf
	kAccess               // [dirfd,] path, mode[, flags]
	kReadlink             // [dirfd,] path, buf, size
)

// loop answers calls until the tree has ended (the listener hangs up) or
// the View is closed. When the listener fails, the View lets the tree go:
// its calls fail with ENOSYS from then on, rather than wait.
func (v *View) loop() {
	var n notif
	buf := make([]byte, 0, unix.PathMax+4096)
	fds := []unix.PollFd{{Fd: int32(v.listener), Events: unix.POLLIN}, {Fd: int32(v.stop), Events: unix.POLLIN}}
	for failures := 0; failures < 100; {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if !errors.Is(err, unix.EINTR) {
				failures++
			}
			continue
		}
		if fds[1].Revents != 0 || fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return
		}
		switch err := recv(v.listener, &n); {
		case err == nil:
			v.answer(&n, buf)
			failures = 0
		case !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.ENOENT): // ENOENT: the caller was killed
			failures++
		}
	}
	v.closeListener()
}

// answer answers one call: from the host's files when its path is one
// route takes and this thread has the tree's credentials, else by letting
// it go on. A panic (a bug) fails the call with EIO rather than end the
// init.
func (v *View) answer(n *notif, buf []byte) {
	defer func() {
		if recover() != nil {
			_ = send(v.listener, n.id, false, 0, unix.EIO)
		}
	}()
	c, ok := pathCalls[uintptr(n.data.nr)]
	if !ok || n.data.arch != auditArch || !v.credOK {
		_ = send(v.listener, n.id, true, 0, 0)
		return
	}
	a := n.data.args[:]
	if c.at {
		a = a[1:]
	}
	pid := int(n.pid)
	path, err := readString(pid, a[0], buf)
	if err != nil {
		_ = send(v.listener, n.id, true, 0, 0)
		return
	}
	t, ok := v.route(path, pid, c.final(a))
	if !ok || !valid(v.listener, n.id) {
		_ = send(v.listener, n.id, true, 0, 0)
		return
	}
	switch c.kind {
	case kOpen, kOpen2:
		v.open(n, c, a, t)
	case kStat:
		flags := 0
		if c.nofollow {
			flags = unix.AT_SYMLINK_NOFOLLOW
		}
		if c.flags {
			flags = int(a[2])
		}
		var st unix.Stat_t
		err := unix.Fstatat(t.dir, t.rel, &st, flags)
		v.reply(n.id, 0, writeStruct(pid, a[1], err, unsafe.Pointer(&st), unsafe.Sizeof(st)))
	case kStatx:
		var st unix.Statx_t
		err := unix.Statx(t.dir, t.rel, int(a[1]), int(a[2]), &st)
		v.reply(n.id, 0, writeStruct(pid, a[3], err, unsafe.Pointer(&st), unsafe.Sizeof(st)))
	case kAccess:
		flags := 0
		if c.flags {
			flags = int(a[2])
		}
		v.reply(n.id, 0, unix.Faccessat(t.dir, t.rel, uint32(a[1]), flags))
	case kReadlink:
		var val int64
		var err error
		if t.link != "" {
			val, err = writeLink(pid, a, t.link)
		} else {
			val, err = readlink(pid, a, t)
		}
		v.reply(n.id, val, err)
	}
}

// final reports whether the call does not follow a symlink at the end of
// its path (a: its arguments after the directory descriptor): readlink,
// lstat, AT_SYMLINK_NOFOLLOW, O_NOFOLLOW.
func (c call) final(a []uint64) bool {
	switch c.kind {
	case kReadlink:
		return true
	case kOpen:
		return a[1]&unix.O_NOFOLLOW != 0
	case kStat:
		return c.nofollow || (c.flags && a[2]&unix.AT_SYMLINK_NOFOLLOW != 0)
	case kStatx:
		return a[1]&unix.AT_SYMLINK_NOFOLLOW != 0
	case kAccess:
		return c.flags && a[2]&unix.AT_SYMLINK_NOFOLLOW != 0
	}
	return false // openat2: its flags are in memory; /proc/self is followed
}

// reply returns val from the call, or fails it with err's errno.
func (v *View) reply(id uint64, val int64, err error) {
	if err != nil {
		var errno unix.Errno
		if !errors.As(err, &errno) {
			errno = unix.EIO
		}
		_ = send(v.listener, id, false, 0, errno)
		return
	}
	_ = send(v.listener, id, false, val, 0)
}

// open opens the host's file and puts it in the caller. It opens without
// blocking (a FIFO reached through /proc/self/fd would stop every call of
// the tree) and gives the caller the blocking mode it asked for.
func (v *View) open(n *notif, c call, a []uint64, t target) {
	var fd int
	var err error
	flags := int(a[1])
	if c.kind == kOpen2 {
		var how unix.OpenHow
		if size := a[2]; size < uint64(unsafe.Sizeof(how)) {
			v.reply(n.id, 0, unix.EINVAL)
			return
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(&how)), unsafe.Sizeof(how))
		if err := readMem(int(n.pid), a[1], b); err != nil {
			v.reply(n.id, 0, unix.EFAULT)
			return
		}
		flags = int(how.Flags)
		how.Flags |= unix.O_CLOEXEC | unix.O_NONBLOCK
		fd, err = unix.Openat2(t.dir, t.rel, &how)
	} else {
		fd, err = unix.Openat(t.dir, t.rel, flags|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(a[2]))
	}
	if err != nil {
		v.reply(n.id, 0, err)
		return
	}
	defer unix.Close(fd)
	if flags&unix.O_NONBLOCK == 0 {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
		}
	}
	if err := sendFD(v.listener, n.id, fd, flags&unix.O_CLOEXEC != 0); err != nil {
		v.reply(n.id, 0, err)
	}
}

// readlink reads the host's link into the caller's buffer (a: path, buf,
// size), cut to its size as readlink(2) does.
func readlink(pid int, a []uint64, t target) (int64, error) {
	b := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(t.dir, t.rel, b)
	if err != nil {
		return 0, err
	}
	return writeLink(pid, a, string(b[:n]))
}

// writeLink writes link into the caller's readlink buffer.
func writeLink(pid int, a []uint64, link string) (int64, error) {
	size := int64(int32(a[2])) // an int for the kernel
	if size <= 0 {
		return 0, unix.EINVAL
	}
	b := []byte(link)
	if int64(len(b)) > size {
		b = b[:size]
	}
	if err := writeMem(pid, a[1], b); err != nil {
		return 0, unix.EFAULT
	}
	return int64(len(b)), nil
}

// writeStruct writes the size bytes at p into the caller at addr, unless
// err (the call's) is set.
func writeStruct(pid int, addr uint64, err error, p unsafe.Pointer, size uintptr) error {
	if err != nil {
		return err
	}
	if writeMem(pid, addr, unsafe.Slice((*byte)(p), size)) != nil {
		return unix.EFAULT
	}
	return nil
}
