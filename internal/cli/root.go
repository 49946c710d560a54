// Package cli maps strata's command line onto the library packages: one file
// per command, flags named as docker's.
package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/executor/netns"
	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/httpx"
	"github.com/strata-build/strata/internal/isolation"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
	"github.com/strata-build/strata/internal/userns"
)

// Version is strata's version, set at link time with -X.
var Version = "0.1.0-dev"

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// usageError marks errors in how strata was called.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// app holds the global flags and lazily opened store of one invocation.
type app struct {
	root       string
	configPath string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	args       []string // the command line, for the rootless re-execution

	isolationFlag string         // --isolation
	mode          isolation.Mode // the mode this command runs in (set before it runs)
	inside        bool           // this is the inner strata of the rootless mode
	stopProfile   func()         // ends STRATA_CPUPROFILE's profile, when one runs

	store   *store.Store
	session *store.Session
	builder *builder.Builder
	runner  *runc.Runner     // runc (the builder's executor but in chroot mode); app.close waits for its background deletes
	lock    *store.BuildLock // shared build lock: keeps prune from collecting under us
}

func (a *app) releaseBuildLock() {
	a.lock.Unlock()
	a.lock = nil
}

// DefaultRoot is the store root: $STRATA_ROOT, else /var/lib/strata for root,
// else $XDG_DATA_HOME/strata (~/.local/share/strata).
func DefaultRoot() string {
	if r := os.Getenv("STRATA_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/var/lib/strata"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "strata")
	}
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".local", "share", "strata")
}

// open opens the store, reclaims what dead strata processes left behind, and
// sets up the builder.
func (a *app) open(ctx context.Context) (*builder.Builder, error) {
	if a.builder != nil {
		return a.builder, nil
	}
	s, err := store.Open(a.root)
	if err != nil {
		return nil, err
	}
	a.store = s // closed by a.close on every path
	if err := s.CheckFlavour(a.xattrFlavour()); err != nil {
		return nil, err
	}
	runner := &runc.Runner{StateDir: s.Path("runc"), BundleDir: "", Deletes: &sync.WaitGroup{}}
	runner.ReclaimDead(ctx, deadContainer(s))
	// Again for each dead session, before its directory goes: a container
	// its process was starting may have appeared since.
	if err := s.Reclaim(ctx, func(ctx context.Context, _ string) { runner.ReclaimDead(ctx, deadContainer(s)) }); err != nil {
		return nil, err
	}
	lock, err := s.LockShared()
	if err != nil {
		return nil, err
	}
	a.lock = lock
	se, err := s.NewSession()
	if err != nil {
		return nil, err
	}
	runner.BundleDir = filepath.Join(se.Dir, "bundles")
	runner.Networks = &netns.Pool{Dir: filepath.Join(se.Dir, "netns")}
	cfg, err := registry.LoadConfig(a.configPath, os.Getenv(registry.MirrorsEnv))
	if err != nil {
		se.Close()
		return nil, err
	}
	if cfg.Timeout, err = registry.ParseTimeout(os.Getenv(registry.TimeoutEnv)); err != nil {
		se.Close()
		return nil, usagef("%v", err)
	}
	a.store, a.session = s, se
	a.runner = runner
	a.builder = &builder.Builder{Store: s, Registry: registry.New(cfg), Runner: a.executor(runner), Session: se}
	if v := os.Getenv("STRATA_MAX_LAYER_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			se.Close()
			return nil, usagef("STRATA_MAX_LAYER_ENTRIES=%q: must be a positive number", v)
		}
		a.builder.MaxLayerEntries = n
	}
	if v := os.Getenv(builder.MaxLayerBytesEnv); v != "" {
		n, err := units.RAMInBytes(v) // 1048576, 100MB, 2GiB (binary units, as docker --memory)
		if err != nil || n < 1 {
			se.Close()
			return nil, usagef("%s=%q: must be a positive number of bytes (100MB, 2GiB)", builder.MaxLayerBytesEnv, v)
		}
		a.builder.MaxLayerBytes = n
	}
	if a.builder.HTTPTimeout, err = httpx.ParseTimeout(builder.HTTPTimeoutEnv, os.Getenv(builder.HTTPTimeoutEnv), builder.DefaultHTTPTimeout); err != nil {
		se.Close()
		return nil, usagef("%v", err)
	}
	if a.builder.Snapshots, err = a.snapshotter(ctx, se.Dir); err != nil {
		se.Close()
		return nil, usagef("%v", err)
	}
	return a.builder, nil
}

// deadContainer returns a test of whether id is a container of a strata
// process that no longer runs, by its session in s.
func deadContainer(s *store.Store) func(id string) bool {
	return func(id string) bool {
		session, ok := store.ContainerSession(id)
		return ok && !s.SessionAlive(session)
	}
}

// beforeCommand runs before every command: it picks the isolation mode
// (and in rootless mode may run the command in its namespace instead), then
// starts the CPU profile. Only the process that runs the command profiles,
// not the outer strata of rootless mode, which would write the same file.
func (a *app) beforeCommand(ctx context.Context, cmd *cobra.Command) error {
	if err := a.isolate(ctx, cmd); err != nil {
		return err
	}
	if p := os.Getenv("STRATA_CPUPROFILE"); p != "" {
		stop, err := startCPUProfile(p)
		if err != nil {
			return usagef("STRATA_CPUPROFILE: %v", err)
		}
		a.stopProfile = stop
	}
	return nil
}

func (a *app) close() {
	if a.stopProfile != nil {
		a.stopProfile()
	}
	if a.runner != nil && a.runner.Deletes != nil {
		a.runner.Deletes.Wait() // containers deleted in the background
	}
	if a.runner != nil && a.runner.Networks != nil {
		if err := a.runner.Networks.Close(); err != nil {
			fmt.Fprintf(a.stderr, "warning: %v\n", err)
		}
	}
	if a.session != nil {
		a.session.Close()
	}
	a.lock.Unlock()
	if a.store != nil {
		a.store.Close()
	}
}

// Main runs strata with args and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	inside, err := userns.Init()
	if err != nil {
		fmt.Fprintf(stderr, "strata: %v\n", err)
		return ExitFail
	}
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, args: args, inside: inside}
	defer a.close()
	root := &cobra.Command{
		Use:           "strata",
		Short:         "Build OCI images from Dockerfiles, without a daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&a.root, "root", DefaultRoot(), "store directory (env STRATA_ROOT)")
	root.PersistentFlags().StringVar(&a.configPath, "config", registry.DefaultConfigPath(), "registry configuration file (env STRATA_CONFIG)")
	root.PersistentFlags().StringVar(&a.isolationFlag, "isolation", "", "auto, rootful, rootless or chroot (env "+isolation.Env+"; auto: rootful as root, rootless as a user, chroot where nothing can be mounted)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	// Cobra's other errors (unknown command, argument counts) come before any
	// command runs: an error after this hook ran is the command's own, and is
	// a usage error only when it says so by type, whatever its text.
	started := false
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		started = true
		return a.beforeCommand(ctx, cmd)
	}
	root.AddCommand(a.describe(
		a.buildCmd(), a.imagesCmd(), a.tagCmd(), a.rmiCmd(), a.inspectCmd(), a.historyCmd(),
		a.saveCmd(), a.loadCmd(), a.pullCmd(), a.pushCmd(), a.manifestCmd(), a.runCmd(), a.importCmd(), a.versionCmd(), a.infoCmd(), a.unshareCmd(), a.duCmd(), a.pruneCmd(),
		a.fsckCmd(),
		a.layersCmd(), a.graphCmd(), a.completionCmd(), a.docsCmd(),
	)...)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var pe passedExit
	if errors.As(err, &pe) {
		return pe.code
	}
	var re reportedError
	if errors.As(err, &re) {
		return re.code
	}
	msg := err.Error()
	var ue usageError
	var de *dockerfile.Error
	if errors.As(err, &ue) || !started {
		fmt.Fprintf(stderr, "strata: %s\nSee 'strata --help'.\n", msg)
		return ExitUsage
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "strata: interrupted: %s\n", msg)
		return ExitFail
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.As(err, &de) {
		if x := de.Excerpt(); x != "" {
			fmt.Fprintln(stderr, x)
		}
	}
	fmt.Fprintf(stderr, "ERROR: %s\n", msg)
	return ExitFail
}

// reportedError is an error the command has shown already (as a
// --progress=json event); Main only returns its exit code.
type reportedError struct {
	err  error
	code int
}

func (e reportedError) Error() string { return e.err.Error() }
func (e reportedError) Unwrap() error { return e.err }

// stderrf prints a line to stderr.
func (a *app) stderrf(format string, v ...any) { fmt.Fprintf(a.stderr, format+"\n", v...) }

// exitError passes a container's exit code through `strata run`.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the strata version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var b bytes.Buffer
			fmt.Fprintf(&b, "strata %s\n", Version)
			fmt.Fprintf(&b, "isolation: %s\n", a.describeIsolation())
			if out, err := exec.Command("runc", "--version").Output(); err == nil {
				fmt.Fprintf(&b, "runtime: %s\n", strings.SplitN(string(out), "\n", 2)[0])
			}
			_, err := a.stdout.Write(b.Bytes())
			return err
		},
	}
}
