package chroot

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// errNotFound is lookPath's error for a command name not on PATH (the
// words of Go's exec.ErrNotFound, which runc reports).
var errNotFound = errors.New("executable file not found in $PATH")

// lookPath returns the path, as the process sees it after chroot, of the
// executable argv0 names: argv0 itself when it has a slash (it must exist:
// relative to cwd when relative), else the first executable regular file
// named argv0 in the directories of env's PATH inside rootfs (symlinks
// resolved inside rootfs). PATH entries that are not absolute are skipped
// (runc refuses what they find, as Go's exec.ErrDot). The host's PATH and
// files are never looked at.
func lookPath(rootfs, cwd, argv0 string, env []string) (string, error) {
	if strings.Contains(argv0, "/") {
		p := argv0
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		host, err := securejoin.SecureJoin(rootfs, p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(host); err != nil {
			return "", &fs.PathError{Op: "stat", Path: argv0, Err: underlying(err)}
		}
		return argv0, nil
	}
	for _, dir := range strings.Split(pathOf(env), ":") {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, argv0)
		host, err := securejoin.SecureJoin(rootfs, p)
		if err != nil {
			continue
		}
		if st, err := os.Stat(host); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errNotFound
}

// pathOf returns the value of env's last PATH entry.
func pathOf(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return ""
}

// underlying returns the errno inside a *fs.PathError (whose path is the
// host's), else err.
func underlying(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
