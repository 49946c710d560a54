package runc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// mountStubs records the paths in a rootfs that the runtime is going to create
// as mount points, so that they can be removed after the run and do not end up
// in the layer (BuildKit's executor.MountStubsCleaner does the same).
type mountStubs struct {
	rootfs string
	paths  []string // host paths inside rootfs, deepest first
}

// recordMountStubs returns, for every destination, the destination itself and
// each missing parent up to the top-most path that does not exist in rootfs yet.
// Destinations are resolved like runc resolves them (symlinks inside rootfs), so
// a /etc/resolv.conf symlink to ../run/resolv.conf records /run/resolv.conf.
func recordMountStubs(rootfs string, dests []string) *mountStubs {
	seen := map[string]bool{}
	s := &mountStubs{rootfs: rootfs}
	for _, d := range dests {
		d = filepath.Join("/", d)
		if d == "/" {
			continue
		}
		p, err := securejoin.SecureJoin(rootfs, d)
		if err != nil {
			continue
		}
		for p != rootfs && strings.HasPrefix(p, rootfs+"/") {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
				break
			}
			if !seen[p] {
				seen[p] = true
				s.paths = append(s.paths, p)
			}
			p = filepath.Dir(p)
		}
	}
	// Deepest first, so a parent is looked at after all its children.
	sort.SliceStable(s.paths, func(i, j int) bool {
		di, dj := strings.Count(s.paths[i], "/"), strings.Count(s.paths[j], "/")
		if di != dj {
			return di > dj
		}
		return s.paths[i] < s.paths[j]
	})
	return s
}

// clean removes the recorded paths that are still empty (an empty regular file
// or an empty directory), keeping the times of their parent directories as they
// were. It returns the first error other than "does not exist"; it always tries
// every path.
func (s *mountStubs) clean() error {
	var first error
	for _, p := range s.paths {
		// Re-resolve: the command may have replaced a parent with a symlink.
		rel := strings.TrimPrefix(p, s.rootfs)
		real, err := securejoin.SecureJoin(s.rootfs, rel)
		if err != nil || real != p {
			continue
		}
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		switch {
		case st.IsDir():
			ents, err := os.ReadDir(p)
			if err != nil || len(ents) != 0 {
				continue
			}
		case st.Mode().IsRegular():
			if st.Size() != 0 {
				continue
			}
		default:
			continue
		}
		parent := filepath.Dir(p)
		var pst unix.Stat_t
		haveTimes := unix.Lstat(parent, &pst) == nil
		if err := os.Remove(p); err != nil {
			if first == nil && !errors.Is(err, os.ErrNotExist) {
				first = fmt.Errorf("remove mount stub %s: %w", rel, err)
			}
			continue
		}
		if haveTimes {
			atime := time.Unix(pst.Atim.Unix())
			mtime := time.Unix(pst.Mtim.Unix())
			if err := os.Chtimes(parent, atime, mtime); err != nil && first == nil {
				first = fmt.Errorf("restore times of %s: %w", strings.TrimPrefix(parent, s.rootfs), err)
			}
		}
	}
	return first
}
