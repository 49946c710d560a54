package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Config says how a suite is set up.
type Config struct {
	Name    string        // the suite ("e2e"), for messages and its work folder's name
	Timeout time.Duration // a strata run's timeout when RunOpts gives none (default 3 min)
	Busybox string        // the busybox-static binary (default: busybox in PATH)
	// BinEnv names an environment variable that may name a strata binary
	// built elsewhere, tested instead of building one.
	BinEnv string
	Env    []string // more environment for every strata run (KEY=VALUE)
	// Rootless runs strata as an ordinary user the suite creates (User),
	// also set by STRATA_TEST_ROOTLESS=1.
	Rootless bool
	// InContainer runs strata in an unprivileged container (Container),
	// also set by STRATA_TEST_IN_CONTAINER=1.
	InContainer bool
}

// Suite is what a suite's TestMain sets up once and its tests share.
type Suite struct {
	Config
	RepoRoot    string // the strata module root
	WorkDir     string // everything the suite writes lives below it (symlinks resolved: mountinfo holds resolved paths)
	Bin         string // the strata binary under test
	BusyboxRoot string // a busybox root as scripts/make-bases.sh makes it ("" when Skip is set)
	// Skip is why strata cannot build here (not root, no runc, no
	// busybox); tests that build skip with it (RequireBuild).
	Skip string
	// User is the ordinary user strata runs as in a rootless suite (nil:
	// strata runs as root). It owns WorkDir.
	User *TestUser
	// Container is where strata runs in an InContainer suite (nil: on the
	// host).
	Container *Container
}

// Setup makes the suite's work folder, builds the strata binary into it
// (once per test binary) and, when strata can build here, a busybox root.
// The caller runs the tests and then Close.
func Setup(cfg Config) (*Suite, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Minute
	}
	if cfg.Busybox == "" {
		cfg.Busybox, _ = exec.LookPath("busybox")
	}
	s := &Suite{Config: cfg}
	var err error
	if s.RepoRoot, err = ModuleRoot(); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "strata-"+cfg.Name+"-")
	if err != nil {
		return nil, err
	}
	if s.WorkDir, err = filepath.EvalSymlinks(work); err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	if err := s.setUp(); err != nil {
		os.RemoveAll(s.WorkDir)
		return nil, err
	}
	if os.Getenv(RootlessEnv) == "1" {
		s.Rootless = true
	}
	if s.Rootless && s.Skip == "" {
		if err := s.setUpUser(); err != nil {
			if s.User != nil {
				s.User.Remove()
			}
			os.RemoveAll(s.WorkDir)
			return nil, err
		}
	}
	if os.Getenv(ContainerEnv) == "1" {
		s.InContainer = true
	}
	if s.InContainer && s.Skip == "" {
		if err := s.setUpContainer(); err != nil {
			if s.User != nil {
				s.User.Remove()
			}
			os.RemoveAll(s.WorkDir)
			return nil, err
		}
	}
	return s, nil
}

// setUpUser creates the suite's ordinary user and hands it the work folder.
func (s *Suite) setUpUser() error {
	if _, err := exec.LookPath("newuidmap"); err != nil {
		return fmt.Errorf("rootless suite needs newuidmap (apt-get install uidmap): %w", err)
	}
	u, err := NewTestUser(userName(s.Name), filepath.Join(s.WorkDir, "home"))
	if err != nil {
		return err
	}
	s.User = u
	if err := os.Chmod(s.WorkDir, 0o755); err != nil {
		return err
	}
	// the base image's tree keeps its owners as the namespace shows them
	if err := u.Shift(s.BusyboxRoot); err != nil {
		return err
	}
	return os.Chown(s.WorkDir, u.UID, u.GID)
}

// Own makes the suite's user (if any) own path and what is below it.
func (s *Suite) Own(path string) error {
	if s.User == nil {
		return nil
	}
	return s.User.Own(path)
}

func (s *Suite) setUp() error {
	s.Bin = filepath.Join(s.WorkDir, "strata")
	if bin := os.Getenv(s.BinEnv); s.BinEnv != "" && bin != "" {
		s.Bin = bin
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := BuildStrata(ctx, s.RepoRoot, s.Bin); err != nil {
			return err
		}
	}
	if s.Skip = prerequisites(s.Name, s.Busybox); s.Skip != "" {
		fmt.Fprintf(os.Stderr, "%s: tests that build skip: %s\n", s.Name, s.Skip)
		return nil
	}
	root := filepath.Join(s.WorkDir, "busybox-rootfs")
	if err := MakeBasesRoot(root, s.Busybox); err != nil {
		return fmt.Errorf("busybox root: %w", err)
	}
	s.BusyboxRoot = root
	return nil
}

// prerequisites says why strata cannot build here, or "".
func prerequisites(name, busybox string) string {
	if os.Geteuid() != 0 {
		return name + " builds need root (overlayfs mounts, runc, chown); run go test as root"
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return name + " builds need runc in PATH (apt-get install runc)"
	}
	if busybox == "" {
		return name + " builds need busybox (apt-get install busybox-static) for the base image"
	}
	if out, err := exec.Command(busybox, "--list").Output(); err != nil || len(out) == 0 {
		return name + " builds need a static busybox at " + busybox + " (apt-get install busybox-static) for the base image"
	}
	return ""
}

// Main is a suite's TestMain: Setup with cfg (into *s), the tests, Close
// (keeping the work folder when the environment variable keepEnv is set),
// and the exit code: 2 when the set-up failed, 1 when Close did.
func Main(m *testing.M, cfg Config, keepEnv string, s **Suite) int {
	var err error
	if *s, err = Setup(cfg); err != nil {
		fmt.Fprintln(os.Stderr, cfg.Name+": set-up failed:", err)
		return 2
	}
	code := m.Run()
	if err := (*s).Close(keepEnv != "" && os.Getenv(keepEnv) != ""); err != nil {
		fmt.Fprintln(os.Stderr, cfg.Name+":", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Close checks that nothing is mounted below the work folder any more
// (unmounting what is, so that removing it cannot go through a mount) and
// removes the folder, unless keep is set.
func (s *Suite) Close(keep bool) error {
	var err error
	if s.User != nil {
		defer func() { s.User.Remove() }()
	}
	defer func() {
		if cerr := s.Container.close(); cerr != nil {
			fmt.Fprintln(os.Stderr, s.Name+": container store:", cerr)
		}
	}()
	if m := MountsUnder(s.WorkDir); len(m) > 0 {
		err = fmt.Errorf("mounts left under %s: %v", s.WorkDir, m)
		UnmountAll(s.WorkDir)
	}
	if keep {
		fmt.Fprintln(os.Stderr, s.Name+": work folder kept:", s.WorkDir)
		return err
	}
	if m := MountsUnder(s.WorkDir); len(m) > 0 {
		return errors.Join(err, fmt.Errorf("not removing %s: still mounted: %v", s.WorkDir, m))
	}
	return errors.Join(err, os.RemoveAll(s.WorkDir))
}

// RequireBuild skips t when strata cannot build here.
func (s *Suite) RequireBuild(t testing.TB) {
	t.Helper()
	if s.Skip != "" {
		t.Skip(s.Skip)
	}
}

// RequireTool skips t when a third-party tool is missing and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

// TempDir is a fresh folder below the work folder, removed when t ends.
func (s *Suite) TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(s.WorkDir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Own(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// WriteFiles makes a fresh folder (TempDir) holding files (path → content).
func (s *Suite) WriteFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	return WriteFiles(t, s.TempDir(t), files)
}

// WriteFiles writes files (path → content, parents made as needed) into
// the existing directory dir and returns dir.
func WriteFiles(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Environ is the environment strata runs with: ours without what would
// change what it does or where it connects (STRATA_*, DOCKER_CONFIG, the
// proxy variables), no registry or docker configuration, then the suite's
// Config.Env and extra. STRATA_SNAPSHOTTER is kept, so that every suite can
// run on either snapshotter.
func (s *Suite) Environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "DOCKER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		if strings.HasPrefix(k, "STRATA_") && k != "STRATA_SNAPSHOTTER" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"STRATA_CONFIG="+filepath.Join(s.WorkDir, "no-such-config.json"),
		"DOCKER_CONFIG="+filepath.Join(s.WorkDir, "no-docker-config"))
	env = append(env, s.Env...)
	return append(env, extra...)
}
