package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ContainerEnv, set to 1, makes every suite run strata inside an
// unprivileged container, as Config.InContainer does.
const ContainerEnv = "STRATA_TEST_IN_CONTAINER"

// Container is the unprivileged container a suite runs strata in: what a
// Kubernetes pod at Pod Security Baseline gets. It is started for each
// strata command by the strata under test itself, as root (`strata run`:
// runc with Docker's default capabilities, no CAP_SYS_ADMIN, Docker's
// default seccomp profile, masked /proc paths, no_new_privs, no user
// namespace), from a busybox image, with the host's network, the strata
// binary bound in read-only and the suite's work folder bound at its own
// path, so that every path in a command means the same inside. strata
// inside finds it may not mount and works in chroot isolation, its store
// on that volume.
type Container struct {
	store  string // the outer strata's store, holding the container's image
	binDir string // holds a static build of the strata under test (the image has no C library)
	bin    string // that binary inside
}

// setUpContainer imports the container's image into a store of its own.
func (s *Suite) setUpContainer() error {
	// The outer store lives outside the work folder, which the container
	// binds: the container's own mounts stay out of its view.
	store, err := os.MkdirTemp("", "strata-container-store-")
	if err != nil {
		return err
	}
	c := &Container{store: store, binDir: filepath.Join(s.WorkDir, ".static"), bin: "/opt/strata/strata"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := BuildStrata(ctx, s.RepoRoot, filepath.Join(c.binDir, "strata"), "CGO_ENABLED=0"); err != nil {
		os.RemoveAll(store)
		return err
	}
	args := append([]string{"--root", c.store}, ImportArgs(s.BusyboxRoot, "strata-test-builder:latest", ImagePATH)...)
	out, err := exec.Command(s.Bin, args...).CombinedOutput()
	if err != nil {
		os.RemoveAll(store)
		return fmt.Errorf("import the container's image: %w: %s", err, out)
	}
	s.Container = c
	return nil
}

// wrap turns cmd (strata with its arguments and environment) into the
// same command run in the container.
func (c *Container) wrap(s *Suite, cmd *exec.Cmd) {
	inner := append([]string{c.bin}, cmd.Args[1:]...)
	args := []string{s.Bin, "--root", c.store, "run", "--network", "host",
		"-v", c.binDir + ":" + filepath.Dir(c.bin) + ":ro",
		"-v", s.WorkDir + ":" + s.WorkDir,
		"-w", cmd.Dir,
	}
	if cmd.Stdin != nil {
		args = append(args, "-i")
	}
	for _, kv := range cmd.Env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || strings.HasPrefix(k, "GO") {
			continue // the container's own
		}
		args = append(args, "-e", kv)
	}
	args = append(args, "strata-test-builder:latest")
	cmd.Path, cmd.Args = s.Bin, append(args, inner...)
	cmd.Env = s.Environ() // the outer strata's: only the suite's settings
}

// close releases and removes the container's store.
func (c *Container) close() error {
	if c == nil {
		return nil
	}
	return ReleaseStore(c.store)
}

// Wrapper writes a script that runs strata, with its arguments, in the
// container (store is where the script's callers keep their store, for
// make-bases.sh and its like; env is more environment for it inside) and
// returns its path.
func (c *Container) Wrapper(t testing.TB, s *Suite, store string, env ...string) string {
	t.Helper()
	cmd := exec.Command(s.Bin)
	cmd.Env = s.Environ(append([]string{"STRATA_ROOT=" + store}, env...)...)
	cmd.Dir = "$PWD"
	c.wrap(s, cmd)
	var b strings.Builder
	b.WriteString("#!/bin/sh\nexec")
	for _, a := range cmd.Args {
		if a == "$PWD" {
			b.WriteString(` "$PWD"`)
			continue
		}
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString(` "$@"` + "\n")
	p := filepath.Join(s.WorkDir, fmt.Sprintf("strata-in-container-%d", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
