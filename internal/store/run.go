package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Session is one process's work area under ROOT/run: mounts, upperdirs and
// runc bundles of the builds it runs. Close removes it; a session left behind
// by a process that died is reclaimed by Reclaim.
type Session struct {
	Dir  string // ROOT/run/NAME
	Name string // PID-STARTTIME, also the prefix of its runc container ids (see ContainerID)

	claim claim // holds Name while the session is open
	run   string
	seq   sessionSeq
	token string // random, in its container ids (see NextContainerID)
}

// NewSession creates a work area of this process, under a name of its own.
func (s *Store) NewSession() (*Session, error) {
	c, err := claimName(s.Path("run"))
	if err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}
	dir := s.Path("run", c.name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		c.release(s.Path("run"))
		return nil, fmt.Errorf("new session: %w", err)
	}
	var tok [4]byte
	if _, err := rand.Read(tok[:]); err != nil {
		c.release(s.Path("run"))
		return nil, fmt.Errorf("new session: %w", err)
	}
	return &Session{Dir: dir, Name: c.name, claim: c, run: s.Path("run"), token: hex.EncodeToString(tok[:])}, nil
}

// Close unmounts whatever is still mounted below the session and removes it.
func (se *Session) Close() error {
	unmountUnder(se.Dir)
	err := os.RemoveAll(se.Dir)
	if err == nil {
		// A session dir that could not go keeps its claim until the
		// process ends; then the next Reclaim takes both.
		se.claim.release(se.run)
		se.claim = claim{}
		return nil
	}
	return fmt.Errorf("remove session %s: %w", se.Dir, err)
}

// Reclaim cleans up the sessions of processes that no longer run: release(name)
// is called first (to delete their runc containers), then their mounts are
// unmounted and their directories removed. Stale temp files go too.
func (s *Store) Reclaim(ctx context.Context, release func(ctx context.Context, session string)) error {
	ents, err := os.ReadDir(s.Path("run"))
	if err != nil {
		return fmt.Errorf("reclaim: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || !validSessionName(name) {
			continue
		}
		// Held while the session goes: no other process takes the name
		// or judges it meanwhile.
		unclaim, dead := takeDead(s.Path("run"), name)
		if !dead {
			continue // still running, or another process reclaims it
		}
		dir := s.Path("run", name)
		err := removeDeadSession(ctx, dir, func() {
			if release != nil {
				release(ctx, name)
			}
		})
		unclaim()
		if err != nil {
			return fmt.Errorf("reclaim %s: %w", dir, err)
		}
	}
	removeDeadClaims(s.Path("run"))
	if err := s.removeStaleTemp(time.Now().Add(-StaleTempAge)); err != nil {
		return err
	}
	s.removeCacheTemp(time.Now().Add(-10 * time.Minute))
	return nil
}

// removeDeadSession releases a dead session's containers, unmounts what
// it mounted and removes its directory. A container the process was
// starting when it died can still appear and write below the directory for
// a moment (its mount namespace keeps the snapshot mounted after the
// unmount here), so a removal that finds new entries releases again and
// retries, for up to about 3 s, before it gives up.
func removeDeadSession(ctx context.Context, dir string, release func()) error {
	var err error
	for attempt := 0; attempt < 15; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		release()
		unmountUnder(dir)
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
	}
	return err
}

// removeCacheTemp removes the temp files of the build cache (".tmp-",
// ".stat-", ".new-" names: written and renamed within milliseconds) that a
// killed process left, once they are old enough not to be in use.
func (s *Store) removeCacheTemp(before time.Time) {
	filepath.WalkDir(s.Path("cache"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		n := d.Name()
		if !strings.HasPrefix(n, ".tmp-") && !strings.HasPrefix(n, ".stat-") && !strings.HasPrefix(n, ".new-") {
			if d.IsDir() && filepath.Base(filepath.Dir(p)) == "mounts" {
				return filepath.SkipDir // inside a cache mount: the user's files
			}
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(before) {
			os.RemoveAll(p)
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}

// StaleTempAge is how long an untouched file under ROOT/tmp may stay: temp
// files are renamed into place within one operation, so older ones were left
// by a process that died.
const StaleTempAge = 24 * time.Hour

func (s *Store) removeStaleTemp(before time.Time) error {
	ents, err := os.ReadDir(s.Path("tmp"))
	if err != nil {
		return fmt.Errorf("reclaim temp files: %w", err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		// A temp name owned by a process that is gone goes at once; others
		// (and old unowned names) when untouched for StaleTempAge.
		owner, _, owned := strings.Cut(e.Name(), ".")
		if owned && s.SessionAlive(owner) {
			continue
		}
		if !owned || !validSessionName(owner) {
			if fi.ModTime().After(before) {
				continue
			}
		}
		if err := os.RemoveAll(s.Path("tmp", e.Name())); err != nil {
			return fmt.Errorf("reclaim temp files: %w", err)
		}
	}
	return nil
}

// procStartTime returns the start time (clock ticks since boot) of pid, 0 if
// it does not run.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// unmountUnder unmounts every mount point at or below dir, deepest first.
func unmountUnder(dir string) {
	mps := MountsUnder(dir)
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, m := range mps {
		if err := unix.Unmount(m, 0); err != nil {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
}

// MountsUnder lists the mount points at or below dir, from /proc/self/mountinfo
// (parsed and unescaped by moby/sys/mountinfo, as runc and containerd do). It
// returns nil when mountinfo cannot be read.
func MountsUnder(dir string) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(dir)))
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}
