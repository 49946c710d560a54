package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// stateFSSize is the apparent size of the sparse ext4 image behind --fs loop;
// only what the builders write takes disk space.
const stateFSSize = 48 << 30

// statePath is where builder name keeps its state: below the state
// filesystem with --fs loop, else hostDefault.
func (h *harness) statePath(name, hostDefault string) string {
	if h.fsRoot == "" {
		return hostDefault
	}
	return filepath.Join(h.fsRoot, name)
}

// mountStateFS makes a fresh journaled ext4 filesystem in a sparse image
// file and loop-mounts it at bench/.work/fs for the builders' stores.
//
// Why: a cold phase starts right after the previous store was deleted.
// On an ext4 without a journal (this project's VM root), the kernel avoids
// reusing inodes deleted in the last 60 to 300 seconds (ialloc.c,
// recently_deleted) by scanning past each of them on every file creation,
// which made creating the large workload's 20,000 files take 10 to 25 s
// instead of 1 s depending on what the previous round had just deleted —
// noise for every builder, and not what a journaled filesystem (the common
// case for /var/lib/docker) does. A journaled ext4 has no such check.
func (h *harness) mountStateFS(ctx context.Context) error {
	img := filepath.Join(h.cfg.work, "state-fs.img")
	mnt := filepath.Join(h.cfg.work, "fs")
	_ = syscall.Unmount(mnt, syscall.MNT_DETACH) // left by an interrupted run
	if err := os.Remove(img); err != nil && !os.IsNotExist(err) {
		return err
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	err = f.Truncate(stateFSSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state filesystem image: %w", err)
	}
	log := filepath.Join(h.cfg.work, "logs", "state-fs.log")
	if err := must(ctx, cmdSpec{argv: []string{"mkfs.ext4", "-q", "-F", "-L", "strata-bench", img}, log: log}); err != nil {
		return fmt.Errorf("mkfs.ext4 (log %s): %w", log, err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := must(ctx, cmdSpec{argv: []string{"mount", "-o", "loop", img, mnt}, log: log}); err != nil {
		return fmt.Errorf("loop-mount the state filesystem (log %s): %w", log, err)
	}
	h.fsRoot = mnt
	h.env = append(h.env, "builders' state: a fresh journaled ext4 ("+fmt.Sprint(stateFSSize>>30)+" GiB sparse image, loop-mounted at bench/.work/fs; --fs host keeps it on the root filesystem)")
	return nil
}

// unmountStateFS unmounts the state filesystem (whatever the builders left
// mounted in it first) and removes its image unless --keep.
func (h *harness) unmountStateFS() {
	if h.fsRoot == "" {
		return
	}
	unmountUnder(h.fsRoot)
	if left := mountsUnder(h.fsRoot); len(left) > 0 {
		logf("WARNING: still mounted: %v", left)
	}
	if !h.cfg.keep {
		_ = os.Remove(filepath.Join(h.cfg.work, "state-fs.img"))
	}
	h.fsRoot = ""
}
