// Command bench is strata's benchmark harness: it builds strata, starts a
// loopback docker-registry holding the base images, generates the workloads
// under bench/.work/, and times strata against every other Dockerfile builder
// it finds (BuildKit's buildctl+buildkitd, buildah, Docker's BuildKit),
// alternating builders over several rounds. It prints a markdown table of
// medians and strata/other ratios and writes it to bench/results.md.
//
// Run it through bench/run.sh (as root):
//
//	sudo bench/run.sh [--rounds N] [--only REGEX] [--builders strata,buildkit,buildah,docker]
//
// Only the standard library is used, so the harness adds nothing to go.mod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// config is what the command line sets.
type config struct {
	repo        string // the strata repository (module root)
	work        string // bench/.work
	rounds      int
	largeRounds int
	only        *regexp.Regexp
	builders    []string
	bkBin       string
	keep        bool
	timeout     time.Duration
	out         string // results file
	quietWait   time.Duration
	fs          string // "loop": builders' state on a fresh journaled ext4; "host": where it is
}

func main() {
	os.Exit(run())
}

func run() int {
	var cfg config
	var only, builders string
	flag.StringVar(&cfg.repo, "repo", "", "strata repository root (default: the parent of the directory holding this program's sources, found from the working directory)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds per workload")
	flag.IntVar(&cfg.largeRounds, "large-rounds", 0, "rounds for the 620 MB workloads (large COPY and push); default --rounds")
	flag.StringVar(&only, "only", "", "run only the workloads whose name matches this regular expression (names: seed multiarch emulated parallel runs40 large imagecopy fleet regcache)")
	flag.StringVar(&builders, "builders", "strata,buildkit,buildah,docker", "builders to try (those that are not available are skipped; also strata-rootless, strata-chroot: see isolation.go)")
	flag.StringVar(&cfg.bkBin, "buildkit-bin", "/opt/buildkit/bin", "directory holding buildkitd and buildctl (else they are looked up on PATH)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the builders' stores and the registry data after the run")
	flag.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "timeout of one timed command")
	flag.DurationVar(&cfg.quietWait, "quiet-wait", 30*time.Second, "before a timed command, wait up to this long for the machine to be quiet (under 15% CPU busy)")
	flag.StringVar(&cfg.out, "out", "", "results file (default bench/results.md)")
	flag.StringVar(&cfg.fs, "fs", "loop", "where the builders keep their state: loop (a fresh journaled ext4 image, loop-mounted at bench/.work/fs) or host (/var/lib/..., bench/.work/state)")
	flag.Parse()
	if cfg.fs != "loop" && cfg.fs != "host" {
		fmt.Fprintf(os.Stderr, "bench: --fs %q: want loop or host\n", cfg.fs)
		return 2
	}
	if cfg.largeRounds <= 0 {
		cfg.largeRounds = cfg.rounds
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: --only: %v\n", err)
			return 2
		}
		cfg.only = re
	}
	for _, b := range strings.Split(builders, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.builders = append(cfg.builders, b)
		}
	}
	if cfg.repo == "" {
		wd, _ := os.Getwd()
		cfg.repo = findRepo(wd)
	}
	if cfg.repo == "" {
		fmt.Fprintln(os.Stderr, "bench: cannot find the strata repository (run from it, or pass --repo)")
		return 2
	}
	cfg.work = filepath.Join(cfg.repo, "bench", ".work")
	if cfg.out == "" {
		cfg.out = filepath.Join(cfg.repo, "bench", "results.md")
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root (runc, overlayfs, daemons)")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{cfg: cfg}
	err := h.main(ctx)
	h.teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	return 0
}

// findRepo walks up from dir to the directory whose go.mod declares strata.
func findRepo(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/strata-build/strata\n") {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
