package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

func (f *fsck) runtime(ctx context.Context) error {
	f.liveSessions = map[string]bool{}
	ents, err := os.ReadDir(f.s.Path("run"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsck: %w", err)
	}
	var containers []string
	if f.opts.Containers != nil {
		containers, err = f.opts.Containers(ctx)
		if err != nil {
			f.report(Problem{Kind: "container", Subject: f.rel(f.s.Path("runc")), Detail: "cannot list runc containers: " + err.Error()})
		}
	}
	for _, e := range ents {
		if _, alive := f.s.sessionAlive(e.Name()); alive {
			f.liveSessions[e.Name()] = true
		}
	}
	// Containers first: a dead session's container may still hold its mounts.
	f.deadContainers(ctx, containers)
	f.deadSessions(ents)
	f.strayMounts()
	return nil
}

// deadContainers deletes the runc containers of processes that no longer run.
func (f *fsck) deadContainers(ctx context.Context, containers []string) {
	type dead struct{ id, detail string }
	var found []dead
	for _, id := range containers {
		// Judged by its process, not by run/ as listed above: a build
		// that started since then has a container too.
		session, ok := ContainerSession(id)
		if ok && f.s.SessionAlive(session) {
			continue
		}
		detail := "runc container of a strata process that no longer runs"
		if !ok {
			detail = "runc container strata did not name"
		}
		found = append(found, dead{id, detail})
	}
	if len(found) == 0 {
		return
	}
	// A build that deleted its container and ended between the listing and
	// the check above looks dead: only containers still there count.
	still := map[string]bool{}
	if again, err := f.opts.Containers(ctx); err == nil {
		for _, id := range again {
			still[id] = true
		}
	}
	for _, d := range found {
		if !still[d.id] {
			continue
		}
		f.fix(Problem{Kind: "container", Subject: d.id, Detail: d.detail}, "deleted", func() error {
			if f.opts.DeleteContainer == nil {
				return errors.New("no way to delete containers")
			}
			return f.opts.DeleteContainer(ctx, d.id)
		})
	}
}

// deadSessions unmounts and removes the work areas (run/NAME) of processes
// that no longer run.
func (f *fsck) deadSessions(ents []os.DirEntry) {
	for _, e := range ents {
		name := e.Name()
		if f.liveSessions[name] || isClaimFile(name) {
			continue // lock files: Reclaim removes those of dead claims
		}
		valid, _ := f.s.sessionAlive(name)
		dir := f.s.Path("run", name)
		if _, err := os.Lstat(dir); err != nil {
			continue // its process removed it as it ended
		}
		detail := "work area of a strata process that no longer runs"
		if !valid {
			detail = "not a strata session"
		}
		if m := MountsUnder(dir); len(m) > 0 {
			detail += fmt.Sprintf(", %d mounts", len(m))
		}
		f.fix(Problem{Kind: "session", Subject: f.rel(dir), Detail: detail}, "unmounted and removed", func() error {
			unmountUnder(dir)
			if m := MountsUnder(dir); len(m) > 0 {
				return fmt.Errorf("still mounted: %s", strings.Join(m, " "))
			}
			return os.RemoveAll(dir)
		})
	}
}

// strayMounts unmounts mounts below the store that no running process owns.
func (f *fsck) strayMounts() {
	// Mounts anywhere else below the root (not the root itself, which may be
	// a mount point) belong to nobody.
	for _, m := range MountsUnder(f.s.root) {
		if m == f.s.root {
			continue
		}
		r := f.rel(m)
		first, rest, _ := strings.Cut(r, string(filepath.Separator))
		if first == "runc" {
			// runc's own short-lived mounts in a container's state
			// directory (runc.XXXX, its cloned binary) while it starts it
			id, _, _ := strings.Cut(rest, string(filepath.Separator))
			if session, ok := ContainerSession(id); ok && f.s.SessionAlive(session) {
				continue
			}
		}
		if first == "run" {
			session, _, _ := strings.Cut(rest, string(filepath.Separator))
			if _, alive := f.s.sessionAlive(session); alive {
				continue
			}
			if _, err := os.Stat(f.s.Path("run", session)); err == nil {
				continue // counted (and handled) with its session above
			}
		}
		f.fix(Problem{Kind: "mount", Subject: m, Detail: "mount below the store that no running strata process owns"}, "unmounted", func() error {
			if !mounted(m) {
				return nil
			}
			if err := unix.Unmount(m, 0); err != nil {
				return unix.Unmount(m, unix.MNT_DETACH)
			}
			return nil
		})
	}
}

func mounted(p string) bool {
	for _, m := range MountsUnder(p) {
		if m == p {
			return true
		}
	}
	return false
}
