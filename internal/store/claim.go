package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Liveness of session and temp names, written and read only here.
//
// A process claims a name for each Store it opens (the prefix of its temp
// names) and for each Session (its work area and container ids) by holding
// an exclusive flock on ROOT/run/NAME.lock; the name is alive exactly as
// long as that lock is held, which the kernel ends with the process, however
// it ends. Unlike a check of /proc/PID, this holds across PID namespaces:
// rootless strata runs as init of its own, so every rootless process is PID 1
// and cannot see the others (see package userns).
//
// Names keep the form PID-STARTTIME (STARTTIME in clock ticks since boot);
// when that name is taken (another claim of the same process, or two PID 1s
// started in the same tick) the next free STARTTIME+1, +2, … is used.

// lockSuffix ends the name of a claim's lock file in ROOT/run.
const lockSuffix = ".lock"

// maxClaimTries bounds the search for a free name.
const maxClaimTries = 1000

// claim is a name held by this process.
type claim struct {
	name string
	lock *os.File // flock'ed; closing it ends the claim
}

// claimName claims a free name in runDir. The lock file is made and locked
// under a temporary name and then linked into place, so no other process
// ever sees it unlocked.
func claimName(runDir string) (claim, error) {
	pid := os.Getpid()
	start := procStartTime(pid)
	tmp, err := os.CreateTemp(runDir, ".claim-")
	if err != nil {
		return claim{}, fmt.Errorf("claim a session name: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		tmp.Close()
		return claim{}, fmt.Errorf("claim a session name: lock: %w", err)
	}
	for i := uint64(0); i < maxClaimTries; i++ {
		name := sessionName(pid, start+i)
		err := os.Link(tmp.Name(), filepath.Join(runDir, name+lockSuffix))
		if err == nil {
			return claim{name: name, lock: tmp}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			tmp.Close()
			return claim{}, fmt.Errorf("claim a session name: %w", err)
		}
		// Taken: a live claim, or a dead one not yet reclaimed, whose
		// leftovers must not be mistaken for ours.
	}
	tmp.Close()
	return claim{}, fmt.Errorf("claim a session name: no free name after %d tries", maxClaimTries)
}

// release ends the claim and removes its lock file.
func (c claim) release(runDir string) {
	if c.lock == nil {
		return
	}
	os.Remove(filepath.Join(runDir, c.name+lockSuffix))
	c.lock.Close()
}

// nameAlive reports whether name is a session name held by a running
// process: its lock file is locked (by its owner, or by a reclaimer that
// is removing it: either way not free to take). Only a missing lock file or
// a lock this call could take means dead; any other error counts as alive,
// so that a failing check never removes a live session's files. A name
// without a lock file is judged as strata before claims did: by whether
// process PID started at STARTTIME still runs (for PID 1, the init of a
// PID namespace, that says nothing, so it is dead).
func nameAlive(runDir, name string) (valid, alive bool) {
	pid, start, ok := parseSessionName(name)
	if !ok {
		return false, false
	}
	for try := 0; try < 3; try++ {
		f, err := openLock(runDir, name)
		if errors.Is(err, fs.ErrNotExist) {
			return true, pid != 1 && procStartTime(pid) == start
		}
		if err != nil {
			return true, true
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		same := sameFile(f, filepath.Join(runDir, name+lockSuffix))
		f.Close()
		switch {
		case err != nil:
			return true, true // EWOULDBLOCK: held; anything else: unsure
		case same:
			return true, false
		}
		// replaced between open and flock: look again
	}
	return true, true
}

// openLock opens name's lock file.
func openLock(runDir, name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(runDir, name+lockSuffix), os.O_RDONLY|unix.O_CLOEXEC, 0)
}

// sameFile reports whether the open f is still the file at p.
func sameFile(f *os.File, p string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(p)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// takeDead takes the claim of name when its process is gone: it locks the
// lock file exclusively (and checks it is still the one at its name), so
// that no other process judges the name dead or takes it meanwhile, and
// returns the function that removes the lock file and lets go. ok is false
// when the claim is held (alive, or being taken by another reclaimer). A
// name without a lock file (strata before claims) is taken when nameAlive
// says it is dead; release then only returns.
func takeDead(runDir, name string) (release func(), ok bool) {
	f, err := openLock(runDir, name)
	if errors.Is(err, fs.ErrNotExist) {
		if _, alive := nameAlive(runDir, name); alive {
			return nil, false
		}
		return func() {}, true
	}
	if err != nil {
		return nil, false
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil || !sameFile(f, filepath.Join(runDir, name+lockSuffix)) {
		f.Close()
		return nil, false
	}
	return func() {
		os.Remove(filepath.Join(runDir, name+lockSuffix))
		f.Close()
	}, true
}

// lockFileName returns the name of the claim a file in ROOT/run locks, if
// it is a lock file.
func lockFileName(entry string) (name string, ok bool) {
	name, ok = strings.CutSuffix(entry, lockSuffix)
	return name, ok && validSessionName(name)
}

// removeDeadClaims removes the lock files of claims that ended without
// releasing them (their process was killed) and whose session is gone.
func removeDeadClaims(runDir string) {
	ents, err := os.ReadDir(runDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".claim-") {
			// a claim being made, or one whose maker died making it
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.Remove(filepath.Join(runDir, e.Name()))
			}
			continue
		}
		name, ok := lockFileName(e.Name())
		if !ok {
			continue
		}
		if _, err := os.Lstat(filepath.Join(runDir, name)); err == nil {
			continue // a session: Reclaim removes it and its lock together
		}
		if release, ok := takeDead(runDir, name); ok {
			release()
		}
	}
}

// isClaimFile reports whether an entry of ROOT/run belongs to the claims
// (a lock file, or one being made).
func isClaimFile(entry string) bool {
	_, ok := lockFileName(entry)
	return ok || strings.HasPrefix(entry, ".claim-")
}
