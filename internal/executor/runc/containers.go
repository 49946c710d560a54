package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// runtimeBin is the runc binary the Runner runs.
func (r *Runner) runtimeBin() string {
	if r.Runtime == "" {
		return "runc"
	}
	return r.Runtime
}

// Containers lists the ids of the containers in the state directory (runc
// list). Without a runc binary there are none. runc list fails when a
// container goes while it lists (another build's RUN ending), so it is
// tried up to ten times.
func (r *Runner) Containers(ctx context.Context) ([]string, error) {
	bin := r.runtimeBin()
	if _, err := exec.LookPath(bin); err != nil {
		return nil, nil
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		var out []byte
		out, err = exec.CommandContext(ctx, bin, "--root", r.StateDir, "list", "-q").Output()
		if err == nil {
			return strings.Fields(string(out)), nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("runc list: %w", err)
}

// DeleteContainer force-deletes the container id (runc delete --force).
func (r *Runner) DeleteContainer(ctx context.Context, id string) error {
	out, err := exec.CommandContext(ctx, r.runtimeBin(), "--root", r.StateDir, "delete", "--force", id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc delete: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ReclaimDead force-deletes the containers whose owner is gone (dead
// reports that of a container id; see store.ContainerSession), whether or
// not their session directory still exists: a killed strata's runc may have
// created its container after the session was reclaimed. The state
// directory is read directly, so a container runc cannot load still goes.
func (r *Runner) ReclaimDead(ctx context.Context, dead func(id string) bool) {
	ents, err := os.ReadDir(r.StateDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !dead(e.Name()) {
			continue
		}
		if err := exec.CommandContext(ctx, r.runtimeBin(), "--root", r.StateDir, "delete", "--force", e.Name()).Run(); err != nil {
			// runc cannot load it (half created): its process is gone with
			// the session's pid namespace; drop the state.
			os.RemoveAll(filepath.Join(r.StateDir, e.Name()))
		}
	}
}
