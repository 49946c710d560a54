package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-build/strata/internal/binfmt"
)

// sample is one timed phase of one builder in one round.
type sample struct {
	phase   string // workload/phase
	builder string
	round   int
	res     result
}

type harness struct {
	cfg           config
	reg           string // 127.0.0.1:PORT of the loopback registry
	regd          *daemon
	strata        string // the strata binary under test
	builders      []builder
	unavailable   map[string]string
	cacheExported map[string]bool
	fleet         map[string][]*fleetStats // (j), by builder
	samples       []sample
	started       time.Time
	env           []string // environment notes for the report
	busy          float64  // CPU busy share measured by the last settle
	noisy         int      // timed commands started on a busy machine
	fsRoot        string   // with --fs loop: the mounted state filesystem
}

func (h *harness) main(ctx context.Context) error {
	h.started = time.Now()
	h.unavailable = map[string]string{}
	h.cacheExported = map[string]bool{}
	h.fleet = map[string][]*fleetStats{}
	logs := filepath.Join(h.cfg.work, "logs")
	if err := os.RemoveAll(logs); err != nil {
		return err
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}

	// 1. strata itself, from the work tree as it is now.
	h.strata = filepath.Join(h.cfg.work, "strata")
	rev := output("git", "-C", h.cfg.repo, "rev-parse", "--short", "HEAD")
	if output("git", "-C", h.cfg.repo, "status", "--porcelain", "--untracked-files=no") != "" {
		rev += " with uncommitted changes"
	}
	h.env = append(h.env, fmt.Sprintf("strata built at %s from the work tree at commit %s", time.Now().Format("15:04:05"), rev))
	logf("building strata")
	if err := must(ctx, cmdSpec{argv: []string{"go", "build", "-o", h.strata, "./cmd/strata"}, dir: h.cfg.repo, log: filepath.Join(logs, "go-build.log")}); err != nil {
		return err
	}

	// The builders' state on a fresh filesystem of its own (--fs loop).
	if h.cfg.fs == "loop" {
		if err := h.mountStateFS(ctx); err != nil {
			return err
		}
	}

	// 2. the loopback registry.
	if err := h.startRegistry(); err != nil {
		return err
	}

	// 3. base images: imported into a strata store by scripts/make-bases.sh,
	// pushed to the registry as docker.io's library images.
	if err := h.makeBases(ctx); err != nil {
		return err
	}

	// 4. workloads.
	if err := h.generateFleet(); err != nil {
		return err
	}
	if err := h.generate(); err != nil {
		return fmt.Errorf("generate workloads: %w", err)
	}

	// 5. builders, with QEMU registered first for the emulated workload
	// (BuildKit looks for emulators when it starts).
	if h.wants("emulated") {
		undo, err := binfmt.Register("aarch64")
		if err != nil {
			logf("emulated workload: %v", err)
		} else {
			defer func() {
				if err := undo(); err != nil {
					logf("undo the QEMU registration: %v", err)
				}
			}()
		}
	}
	if err := h.startBuilders(ctx); err != nil {
		return err
	}
	h.collectEnv()

	// 6. rounds: every workload, builders alternating (the order rotates
	// every round).
	for round := 1; round <= h.cfg.rounds; round++ {
		if err := h.round(ctx, round); err != nil {
			return err
		}
	}
	h.writeReport(true)
	return nil
}

// startBuilders starts the builders asked for; one that is not available
// is noted and left out.
func (h *harness) startBuilders(ctx context.Context) error {
	for _, name := range h.cfg.builders {
		var b builder
		switch name {
		case "strata":
			b = &strataBuilder{h: h, bin: h.strata}
		case "strata-rootless":
			b = &strataBuilder{h: h, bin: h.strata, mode: "rootless"}
		case "strata-chroot":
			b = &strataBuilder{h: h, bin: h.strata, mode: "chroot"}
		case "buildkit", "buildctl":
			b = &buildkitBuilder{h: h}
		case "buildkit-rootless":
			b = &buildkitBuilder{h: h, rootless: true}
		case "buildah":
			b = &buildahBuilder{h: h}
		case "docker":
			b = &dockerBuilder{h: h}
		default:
			return fmt.Errorf("unknown builder %q", name)
		}
		if err := b.start(ctx); err != nil {
			logf("%s: not available: %v", name, err)
			h.unavailable[name] = err.Error()
			b.stop()
			continue
		}
		h.builders = append(h.builders, b)
		logf("%s: %s", name, b.version())
	}
	return nil
}

// round runs every workload once with every builder.
func (h *harness) round(ctx context.Context, round int) error {
	ws := workloads()
	for _, w := range ws {
		if h.cfg.only != nil && !h.cfg.only.MatchString(w.name) {
			continue
		}
		if w.large && round > h.cfg.largeRounds {
			continue
		}
		for i := range h.builders {
			b := h.builders[(i+round-1)%len(h.builders)]
			if why := b.supports(w.name); why != "" {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			logf("round %d: %s with %s", round, w.name, b.name())
			w.run(ctx, h, b, round, func(ph string, r result) {
				h.record(w.name+"/"+ph, b, round, r)
			})
		}
		// Keep partial results on disk as the run goes.
		h.writeReport(false)
	}
	return nil
}

// record keeps the result r of phase id run with b and logs it.
func (h *harness) record(id string, b builder, round int, r result) {
	r.busy = h.busy
	h.samples = append(h.samples, sample{phase: id, builder: b.name(), round: round, res: r})
	if r.ok {
		extra := ""
		if r.ownKB > 0 {
			extra = fmt.Sprintf("  (RSS own %d MB, tree %d MB)", r.ownKB/1024, r.treeKB/1024)
		}
		extra += fmt.Sprintf("  [machine CPU %s]", r.cpu)
		logf("  %-16s %-8s %8.3fs%s", id, b.name(), r.secs, extra)
	} else {
		where := ""
		if r.log != "" {
			where = " (log " + r.log + ")"
		}
		logf("  %-16s %-8s FAIL: %s%s", id, b.name(), r.err, where)
	}
}

// settle flushes dirty pages before a timed phase, so the writeback of the
// previous phase (or of a reset) is not charged to the next one, then waits
// (up to --quiet-wait) until the machine is quiet: other processes on a shared
// machine (a test suite, say) would otherwise be timed with the builder. The
// busy share measured last is recorded with the sample.
func (h *harness) settle() {
	syscall.Sync()
	deadline := time.Now().Add(h.cfg.quietWait)
	for {
		h.busy = cpuBusy(500 * time.Millisecond)
		if h.busy < quietBusy || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if h.busy >= quietBusy {
		h.noisy++
		logf("  machine still %.0f%% busy after %s: timing anyway", h.busy*100, h.cfg.quietWait)
	}
}

// quietBusy is the busy share of all CPUs under which the machine counts as quiet.
const quietBusy = 0.15

// cpuBusy returns the share of all CPUs' time that was not idle (nor
// waiting for I/O) over d.
func cpuBusy(d time.Duration) float64 {
	c0 := readCPUTimes()
	time.Sleep(d)
	c := readCPUTimes().sub(c0)
	if total := c.busy + c.steal + c.idle + c.iowait; total > 0 {
		return (c.busy + c.steal) / total
	}
	return 0
}

func (h *harness) startRegistry() error {
	dir := filepath.Join(h.cfg.work, "registry")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if _, err := exec.LookPath("docker-registry"); err != nil {
		return fmt.Errorf("docker-registry not installed (apt-get install docker-registry)")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		conf := filepath.Join(dir, "config.yml")
		if err := writeFile(conf, fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)); err != nil {
			return err
		}
		d, err := startDaemon("docker-registry", filepath.Join(h.cfg.work, "logs", "registry.log"), nil, nil, "docker-registry", "serve", conf)
		if err != nil {
			return err
		}
		if err := waitFor(d, 15*time.Second, func() bool { return httpOK("http://" + addr + "/v2/") }); err != nil {
			d.stop(10 * time.Second)
			lastErr = err
			continue
		}
		h.reg, h.regd = addr, d
		logf("registry on %s", addr)
		return nil
	}
	return fmt.Errorf("start docker-registry: %v", lastErr)
}

func (h *harness) makeBases(ctx context.Context) error {
	store := filepath.Join(h.cfg.work, "bases-store")
	if err := removeTree(store); err != nil {
		return err
	}
	log := filepath.Join(h.cfg.work, "logs", "bases.log")
	env := []string{"STRATA_ROOT=" + store, "STRATA=" + h.strata}
	logf("making the base images (scripts/make-bases.sh) and pushing them to %s", h.reg)
	if err := must(ctx, cmdSpec{argv: []string{"bash", filepath.Join(h.cfg.repo, "scripts", "make-bases.sh"), h.strata}, env: env, log: log, dir: h.cfg.repo}); err != nil {
		return err
	}
	for _, p := range [][2]string{{"busybox:latest", "library/busybox:latest"}, {"golang:1.26", "library/golang:1.26"}} {
		if err := must(ctx, cmdSpec{argv: []string{h.strata, "--root", store, "push", p[0], h.reg + "/" + p[1]}, env: env, log: log}); err != nil {
			return err
		}
	}
	if h.wants("emulated") {
		if err := h.pushMultiBusybox(ctx, store, env, log); err != nil {
			logf("emulated workload: no busybox for linux/arm64: %v", err)
		}
	}
	if !h.cfg.keep {
		return removeTree(store)
	}
	return nil
}

// arm64Busybox is Debian's busybox-static for arm64 as
// scripts/install-deps.sh unpacks it (STRATA_ARM64_BUSYBOX_DIR moves it).
func arm64Busybox() string {
	dir := os.Getenv("STRATA_ARM64_BUSYBOX_DIR")
	if dir == "" {
		dir = "/var/cache/strata-test/busybox-arm64"
	}
	return filepath.Join(dir, "bin", "busybox")
}

// pushMultiBusybox pushes busybox:multi, the bases' busybox and the same
// tree with Debian's arm64 busybox, as one index (strata manifest create).
func (h *harness) pushMultiBusybox(ctx context.Context, store string, env []string, log string) error {
	bin, err := os.ReadFile(arm64Busybox())
	if err != nil {
		return err
	}
	root := filepath.Join(h.cfg.work, "busybox-arm64")
	if err := removeTree(root); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bin, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			_ = os.Symlink("busybox", filepath.Join(root, "bin", a))
		}
	}
	for _, argv := range [][]string{
		{h.strata, "--root", store, "import", "--platform", "linux/arm64", "--change", "ENV PATH=/bin", root, "busybox:arm64"},
		{h.strata, "--root", store, "manifest", "create", "--push", "-t", h.reg + "/library/busybox:multi", "busybox:latest", "busybox:arm64"},
	} {
		if err := must(ctx, cmdSpec{argv: argv, env: env, log: log}); err != nil {
			return err
		}
	}
	return removeTree(root)
}

// wants reports whether workload name runs in this run (--only).
func (h *harness) wants(name string) bool { return h.cfg.only == nil || h.cfg.only.MatchString(name) }

func (h *harness) collectEnv() {
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	cs := func(a [65]int8) string {
		var b []byte
		for _, c := range a {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	ncpu := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		ncpu = strings.Count(string(b), "processor\t:")
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB"
	}
	h.env = append(h.env,
		fmt.Sprintf("kernel %s %s; %d × %s; memory %s", cs(uts.Sysname), cs(uts.Release), ncpu, cpu, mem),
		"runc: "+strings.SplitN(output("runc", "--version"), "\n", 2)[0],
		"go: "+output("go", "version"),
		"registry: Debian docker-registry on "+h.reg+" (filesystem storage under bench/.work/registry)",
	)
	for _, b := range h.builders {
		h.env = append(h.env, b.name()+": "+b.version())
	}
	for name, why := range h.unavailable {
		h.env = append(h.env, name+": not available: "+why)
	}
}

func (h *harness) teardown() {
	for i := len(h.builders) - 1; i >= 0; i-- {
		h.builders[i].stop()
	}
	if h.regd != nil {
		h.regd.stop(10 * time.Second)
		if !h.cfg.keep {
			_ = os.RemoveAll(filepath.Join(h.cfg.work, "registry"))
		}
	}
	h.unmountStateFS()
	if mps := mountsUnder(h.cfg.work); len(mps) > 0 {
		logf("WARNING: mounts left under %s: %v", h.cfg.work, mps)
	}
}
