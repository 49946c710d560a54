// Package container runs an image like `docker run --rm`: a throwaway
// overlay snapshot of its layers, the config's entrypoint, cmd, env,
// working directory and user, in runc.
package container

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/snapshot/overlay"
	"github.com/strata-build/strata/internal/store"
)

// Options override the image config for one run.
type Options struct {
	Args       []string // replace Cmd (or, with Entrypoint set, follow it)
	Entrypoint *[]string
	Env        []string // extra KEY=VALUE
	User       string
	Workdir    string
	Network    string
	Stdout     io.Writer
	Stderr     io.Writer
}

// Run runs img with layer dirs (bottom first) and returns the exit code.
func Run(ctx context.Context, runner *runc.Runner, se *store.Session, img *image.Image, dirs []string, o Options) (int, error) {
	cfg := img.Config.Config
	ep := cfg.Entrypoint
	if o.Entrypoint != nil {
		ep = *o.Entrypoint
	}
	cmd := cfg.Cmd
	if o.Entrypoint != nil {
		cmd = nil
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	argv := append(append([]string{}, ep...), cmd...)
	if len(argv) == 0 {
		return -1, fmt.Errorf("no command specified: the image has no ENTRYPOINT or CMD")
	}
	dir, err := os.MkdirTemp(se.Dir, "ctr-")
	if err != nil {
		return -1, err
	}
	defer os.RemoveAll(dir)
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return -1, err
		}
	}
	if err := overlay.Mount(ctx, overlay.Lowers(dirs), upper, work, merged); err != nil {
		return -1, fmt.Errorf("mount container rootfs: %w", err)
	}
	defer overlay.Unmount(merged)
	user := cfg.User
	if o.User != "" {
		user = o.User
	}
	wd := cfg.WorkingDir
	if o.Workdir != "" {
		wd = o.Workdir
	}
	return runner.Run(ctx, runc.Process{
		ID:      fmt.Sprintf("strata-%s-run", se.Name),
		Rootfs:  merged,
		Args:    argv,
		Env:     append(append([]string{}, cfg.Env...), o.Env...),
		Cwd:     wd,
		User:    user,
		Network: o.Network,
		Stdout:  o.Stdout,
		Stderr:  o.Stderr,
	})
}
