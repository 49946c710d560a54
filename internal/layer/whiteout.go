package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// whiteout converts an OCI whiteout entry to overlayfs form.
func (x *extractor) whiteout(parent, base string) error {
	pfd, err := x.root.mkdirAll(parent)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer unix.Close(pfd)
	switch {
	case base == whiteoutOpaque:
		if err := SetOpaque(procPath(pfd, "")); err != nil {
			return fmt.Errorf("mark opaque: %w", err)
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil // aufs metadata (.wh..wh.plnk, .wh..wh.aufs)
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("invalid whiteout name %q", base)
	}
	if err := removeAllAt(pfd, name); err != nil {
		return fmt.Errorf("replace existing entry: %w", err)
	}
	x.forgetDirs(joinRel(parent, name))
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout: %w", err)
	}
	return nil
}

// flatWhiteout applies a whiteout in ApplyFlat: the path (or, for an opaque
// marker, what lower layers put in the directory) is removed.
func (x *extractor) flatWhiteout(parent, base string) error {
	if strings.HasPrefix(base, whiteoutMeta) && base != whiteoutOpaque {
		return nil
	}
	pfd, err := x.root.openDir(parent)
	if err != nil {
		return nil // nothing extracted there
	}
	defer unix.Close(pfd)
	if base == whiteoutOpaque {
		names, err := readDirNames(pfd)
		if err != nil {
			return err
		}
		for _, n := range names {
			if x.written[joinRel(parent, n)] {
				continue
			}
			if err := removeAllAt(pfd, n); err != nil {
				return err
			}
			x.forgetDirs(joinRel(parent, n))
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("invalid whiteout name %q", base)
	}
	x.forgetDirs(joinRel(parent, name))
	return removeAllAt(pfd, name)
}

func joinRel(parent, base string) string {
	if parent == "" {
		return base
	}
	return parent + "/" + base
}

// SetOpaque marks the directory p (followed if a symlink, as a
// /proc/self/fd path is) opaque for overlayfs: trusted.overlay.opaque as
// root; where that is not permitted (a user namespace, where rootless
// strata mounts with userxattr, or no CAP_SYS_ADMIN, in chroot isolation,
// whose native snapshots read either), user.overlay.opaque.
func SetOpaque(p string) error {
	err := unix.Setxattr(p, "trusted."+xattrOpaque, []byte("y"), 0)
	if errors.Is(err, unix.EPERM) {
		err = unix.Setxattr(p, "user."+xattrOpaque, []byte("y"), 0)
	}
	if err != nil {
		return &fs.PathError{Op: "set opaque xattr", Path: p, Err: err}
	}
	return nil
}
