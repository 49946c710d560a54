// What every executor does the same way: the default PATH, exit codes,
// the working directory.

package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// DefaultPath is the PATH a process gets when its environment has none (Docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// WithDefaultPath returns env with PATH=DefaultPath added when it has no
// PATH entry (env itself when it has one).
func WithDefaultPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	out := make([]string, 0, len(env)+1)
	out = append(out, env...)
	return append(out, "PATH="+DefaultPath)
}

// ExitCode maps a process's wait status to its exit code as a shell reports
// it: its exit status, or 128+N when signal N killed it. It is false for a
// status that is not an end (stopped, continued).
func ExitCode(ws syscall.WaitStatus) (int, bool) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), true
	case ws.Signaled():
		return 128 + int(ws.Signal()), true
	}
	return -1, false
}

// MkdirAllOwned creates dir (absolute, inside rootfs, symlinks resolved
// inside rootfs) and any missing parents with mode 0755, each created
// directory owned by uid:gid, as the working directory of a process is
// made. Existing directories are left alone. It returns the host paths of
// the directories it created, parents first.
func MkdirAllOwned(rootfs, dir string, uid, gid int) (created []string, err error) {
	p, err := securejoin.SecureJoin(rootfs, dir)
	if err != nil {
		return nil, err
	}
	var missing []string
	for q := p; q != rootfs && strings.HasPrefix(q, rootfs+"/"); q = filepath.Dir(q) {
		st, err := os.Stat(q)
		if err == nil {
			if !st.IsDir() {
				return nil, fmt.Errorf("%s is not a directory", strings.TrimPrefix(q, rootfs))
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, q)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		switch err := os.Mkdir(missing[i], 0o755); {
		case err == nil:
			created = append(created, missing[i])
		case !errors.Is(err, os.ErrExist):
			return created, err
		}
		if err := os.Chmod(missing[i], 0o755); err != nil { // no umask
			return created, err
		}
		if err := os.Lchown(missing[i], uid, gid); err != nil {
			return created, err
		}
	}
	return created, nil
}
