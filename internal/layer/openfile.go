package layer

import (
	"os"

	"golang.org/x/sys/unix"
)

// OpenFile opens the file at name with open(2) flags and perm, like
// os.OpenFile, without registering it with the runtime's poller: a file on
// disk never blocks, and os.OpenFile spends four fcntl calls and an
// epoll_ctl on each one, which is most of the system calls of a tree of
// small files read or copied. O_CLOEXEC is always added.
func OpenFile(name string, flags int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(name, flags|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
