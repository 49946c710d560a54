package layer

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// root confines path resolution to a directory. Every path is resolved as if
// the directory were "/": ".." stops at the root and symlinks (absolute or
// relative) are interpreted inside it. Resolution uses openat2(2) with
// RESOLVE_IN_ROOT, or filepath-securejoin where openat2 is unavailable. Only
// parent directories are resolved this way; the last component of an entry is
// always handled with *at syscalls that do not follow it.
type root struct {
	dir        string
	fd         int // O_PATH directory fd
	useOpenat2 bool
}

func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &root{dir: dir, fd: fd, useOpenat2: true}, nil
}

func (r *root) close() { unix.Close(r.fd) }

// openDir returns an O_PATH fd of the directory rel (clean, relative, no ".."
// components; "" or "." is the root) resolved inside the root.
func (r *root) openDir(rel string) (int, error) {
	if rel == "" || rel == "." {
		return unix.Openat(r.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if r.useOpenat2 {
		how := unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		}
		for range 16 {
			fd, err := unix.Openat2(r.fd, rel, &how)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue // a concurrent rename; the kernel asks to retry
			}
			if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
				r.useOpenat2 = false // old kernel or seccomp filter
				break
			}
			return fd, err
		}
		if r.useOpenat2 {
			return -1, unix.EAGAIN
		}
	}
	p, err := securejoin.SecureJoin(r.dir, rel)
	if err != nil {
		return -1, err
	}
	return unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// mkdirAll is openDir that creates missing directories (mode 0755, owned by the
// caller) on the way.
func (r *root) mkdirAll(rel string) (int, error) {
	fd, err := r.openDir(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, base := splitRel(rel)
	pfd, err := r.mkdirAll(parent)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	} else if err == nil {
		if err := unix.Fchmodat(pfd, base, 0o755, 0); err != nil { // undo the umask
			return -1, err
		}
	}
	// EEXIST here means a dangling symlink: openDir fails with ENOENT again.
	return r.openDir(rel)
}

// splitRel splits a clean relative path into its parent ("" for the root) and
// last component.
func splitRel(rel string) (string, string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// procPath names the entry base of the directory fd dirfd for path-only
// syscalls (lsetxattr) without resolving anything but the final component.
func procPath(dirfd int, base string) string {
	if base == "" {
		return fmt.Sprintf("/proc/self/fd/%d", dirfd)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, base)
}

// removeAllAt removes name in dirfd, recursively if it is a directory, never
// following symlinks.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return err
	}
	for _, n := range names {
		if err := removeAllAt(fd, n); err != nil {
			f.Close()
			return err
		}
	}
	f.Close()
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// cleanEntryName validates a tar entry name and returns it clean and relative
// ("." for the root). Names that escape with ".." are rejected; absolute
// names are rejected unless allowAbs, which strips the leading "/" as GNU tar
// does.
func cleanEntryName(name string, allowAbs bool) (string, error) {
	if name == "" {
		return "", errors.New("empty path")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("path contains NUL")
	}
	p := path.Clean(name)
	if path.IsAbs(p) {
		if !allowAbs {
			return "", errors.New("absolute path")
		}
		p = path.Clean(strings.TrimLeft(p, "/"))
		if p == "" {
			p = "."
		}
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errors.New("path escapes the root with \"..\"")
	}
	return p, nil
}
