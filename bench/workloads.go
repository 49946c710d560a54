package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// phase is one timed row of the results table.
type phase struct {
	id    string // workload/phase
	title string
	// target is the goal for strata/BuildKit (0: none); maxSecs an
	// absolute goal for strata (0: none).
	target  float64
	maxSecs float64
}

// workload is a scenario run once per builder per round: untimed
// preparation, then its timed phases in order.
type workload struct {
	name   string
	title  string
	phases []phase
	large  bool // a 620 MB workload (--large-rounds)
	run    func(ctx context.Context, h *harness, b builder, round int, rec func(phase string, r result))
}

const (
	largeFiles = 20000
	largeDirs  = 100 // ×4 subdirectories ×50 files
	largeSeed  = 0x5EED5EED
)

func workloads() []*workload {
	return []*workload{
		{
			name: "seed", title: "(a) examples/seed",
			phases: []phase{
				{id: "seed/cold", title: "(a) seed: cold", target: 1.0},
				{id: "seed/noop", title: "(a) seed: no-op rebuild", target: 0.5, maxSecs: 0.1},
				{id: "seed/change", title: "(a) seed: one-file change"},
			},
			run: runSeed,
		},
		{
			name: "multiarch", title: "(h) examples/seed cross-compiled for two platforms",
			phases: []phase{
				{id: "multiarch/one", title: "(h) seed for linux/amd64 alone: cold"},
				{id: "multiarch/two", title: "(h) seed for linux/amd64 + linux/arm64: cold", target: 1.0},
			},
			run: runMultiarch,
		},
		{
			name: "emulated", title: "(i) a RUN for linux/arm64 under QEMU",
			phases: []phase{
				{id: "emulated/cold", title: "(i) RUN shell loop for linux/arm64 (QEMU): cold"},
			},
			run: runEmulated,
		},
		{
			name: "parallel", title: "(b) 4 parallel stages",
			phases: []phase{
				{id: "parallel/cold", title: "(b) 4 × sleep 3 stages + unused: cold", target: 1.05},
				{id: "parallel/noop", title: "(b) parallel stages: no-op rebuild", target: 0.5},
			},
			run: simple("parallel"),
		},
		{
			name: "runs40", title: "(c) 40 RUN steps",
			phases: []phase{
				{id: "runs40/cold", title: "(c) 40 × RUN echo: cold", target: 0.7},
				{id: "runs40/noop", title: "(c) 40 × RUN: no-op rebuild", target: 0.5},
			},
			run: simple("runs40"),
		},
		{
			name: "large", title: "(d) COPY of 20,000 files / 620 MB, (g) push", large: true,
			phases: []phase{
				{id: "large/cold", title: "(d) COPY 20k files / 620 MB: cold", target: 0.5},
				{id: "large/noop", title: "(d) large COPY: no-op rebuild", target: 0.5},
				{id: "large/change", title: "(d) large COPY: one-file change"},
				{id: "large/push", title: "(g) push the 620 MB image"},
			},
			run: runLarge,
		},
		{
			name: "imagecopy", title: "(e) COPY --from=golang:1.26 (registry only)",
			phases: []phase{
				{id: "imagecopy/cold", title: "(e) COPY --from=image, empty store: cold", target: 0.3},
				{id: "imagecopy/noop", title: "(e) COPY --from=image: no-op rebuild"},
			},
			run: runImageCopy,
		},
		{
			name: "fleet", title: "(j) a fleet of 8 builders sharing one registry cache",
			phases: []phase{
				{id: "fleet/round1", title: "(j) fleet of 8: round 1, cold, all exporting to one cache"},
				{id: "fleet/round2", title: "(j) fleet of 8: round 2, empty stores, unchanged inputs, the shared cache"},
				{id: "fleet/round3", title: "(j) fleet of 8: round 3, empty stores, two new Dockerfiles"},
			},
			run: runFleet,
		},
		{
			name: "regcache", title: "(f) seed from a registry cache",
			phases: []phase{
				{id: "regcache/cold", title: "(f) seed, fresh store, --cache-from registry"},
			},
			run: runRegCache,
		},
	}
}

func (h *harness) wdir(name string) string { return filepath.Join(h.cfg.work, "w", name) }

func (h *harness) req(b builder, w string, round int, phase string) buildReq {
	return buildReq{
		dir: h.wdir(w),
		tag: "bench/" + w,
		log: filepath.Join(h.cfg.work, "logs", fmt.Sprintf("r%d-%s-%s-%s.log", round, w, phase, b.name())),
	}
}

func (h *harness) prepLog(b builder, w string, round int) string {
	return filepath.Join(h.cfg.work, "logs", fmt.Sprintf("r%d-%s-prep-%s.log", round, w, b.name()))
}

func failAll(rec func(string, result), msg string, phases ...string) {
	for _, p := range phases {
		rec(p, fail(msg))
	}
}

// simple: cold (bases local), then a no-op rebuild.
func simple(w string) func(context.Context, *harness, builder, int, func(string, result)) {
	return func(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
		if err := b.reset(ctx, true, h.prepLog(b, w, round)); err != nil {
			failAll(rec, "reset: "+err.Error(), "cold", "noop")
			return
		}
		h.settle()
		r := b.build(ctx, h.req(b, w, round, "cold"))
		rec("cold", r)
		if !r.ok {
			failAll(rec, "cold build failed", "noop")
			return
		}
		h.settle()
		rec("noop", b.build(ctx, h.req(b, w, round, "noop")))
	}
}

// editFile appends text to path and returns a function that restores it.
func editFile(path, text string) (func(), error) {
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, append(append([]byte{}, orig...), text...), st.Mode().Perm()); err != nil {
		return nil, err
	}
	return func() {
		if err := os.WriteFile(path, orig, st.Mode().Perm()); err != nil {
			logf("restore %s: %v", path, err)
		}
	}, nil
}

func runSeed(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	if err := b.reset(ctx, true, h.prepLog(b, "seed", round)); err != nil {
		failAll(rec, "reset: "+err.Error(), "cold", "noop", "change")
		return
	}
	h.settle()
	r := b.build(ctx, h.req(b, "seed", round, "cold"))
	rec("cold", r)
	if !r.ok {
		failAll(rec, "cold build failed", "noop", "change")
		return
	}
	h.settle()
	rec("noop", b.build(ctx, h.req(b, "seed", round, "noop")))
	restore, err := editFile(filepath.Join(h.wdir("seed"), "server.go"), "\n// bench: one-file change\n")
	if err != nil {
		failAll(rec, err.Error(), "change")
		return
	}
	defer restore()
	h.settle()
	rec("change", b.build(ctx, h.req(b, "seed", round, "change")))
}

// runMultiarch builds examples/seed (which compiles on $BUILDPLATFORM for
// $TARGETARCH) cold for the host's platform, then cold for two platforms
// (nothing emulated): the cost of the second platform.
func runMultiarch(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	for _, p := range []struct{ phase, platforms string }{{"one", "linux/amd64"}, {"two", "linux/amd64,linux/arm64"}} {
		if err := b.reset(ctx, true, h.prepLog(b, "multiarch", round)); err != nil {
			failAll(rec, "reset: "+err.Error(), p.phase)
			continue
		}
		h.settle()
		req := h.req(b, "seed", round, "multiarch-"+p.phase)
		req.tag, req.platforms = "bench/multiarch", p.platforms
		rec(p.phase, b.build(ctx, req))
	}
}

// runEmulated builds, cold, a busybox image for linux/arm64 whose RUN
// (a shell loop) runs under QEMU user mode (both builders use the
// binfmt_misc registration the harness made).
func runEmulated(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	if err := b.reset(ctx, true, h.prepLog(b, "emulated", round)); err != nil {
		failAll(rec, "reset: "+err.Error(), "cold")
		return
	}
	h.settle()
	req := h.req(b, "emulated", round, "cold")
	req.platforms = "linux/arm64"
	rec("cold", b.build(ctx, req))
}

func runLarge(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	if err := b.reset(ctx, true, h.prepLog(b, "large", round)); err != nil {
		failAll(rec, "reset: "+err.Error(), "cold", "noop", "change", "push")
		return
	}
	h.settle()
	r := b.build(ctx, h.req(b, "large", round, "cold"))
	rec("cold", r)
	if !r.ok {
		failAll(rec, "cold build failed", "noop", "change", "push")
		return
	}
	h.settle()
	rec("noop", b.build(ctx, h.req(b, "large", round, "noop")))
	restore, err := editFile(filepath.Join(h.wdir("large"), largeChangeFile), "bench: one-file change\n")
	if err != nil {
		failAll(rec, err.Error(), "change", "push")
		return
	}
	h.settle()
	rec("change", b.build(ctx, h.req(b, "large", round, "change")))
	restore()
	// (g) push: the image just built (620 MB in one layer) to a repository
	// that holds nothing yet, so every byte goes up.
	h.settle()
	dest := fmt.Sprintf("%s/bench/large-%s-r%d", h.reg, b.name(), round)
	rec("push", b.push(ctx, h.req(b, "large", round, "push"), dest))
}

func runImageCopy(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	if err := b.reset(ctx, false, h.prepLog(b, "imagecopy", round)); err != nil {
		failAll(rec, "reset: "+err.Error(), "cold", "noop")
		return
	}
	h.settle()
	r := b.build(ctx, h.req(b, "imagecopy", round, "cold"))
	rec("cold", r)
	if !r.ok {
		failAll(rec, "cold build failed", "noop")
		return
	}
	h.settle()
	rec("noop", b.build(ctx, h.req(b, "imagecopy", round, "noop")))
}

// runRegCache: once per builder, a cold build of seed exports its cache
// (mode=max) to the loopback registry; every round then starts from a fresh
// store with only the bases and builds seed importing that cache.
func runRegCache(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	ref := fmt.Sprintf("%s/cache/seed-%s", h.reg, b.name())
	if !h.cacheExported[b.name()] {
		log := h.prepLog(b, "regcache-export", round)
		if err := b.reset(ctx, true, log); err != nil {
			failAll(rec, "reset: "+err.Error(), "cold")
			return
		}
		req := h.req(b, "seed", round, "cache-export")
		req.cacheTo = ref
		if r := b.build(ctx, req); !r.ok {
			failAll(rec, "cache export build failed: "+r.err, "cold")
			return
		}
		h.cacheExported[b.name()] = true
	}
	if err := b.reset(ctx, true, h.prepLog(b, "regcache", round)); err != nil {
		failAll(rec, "reset: "+err.Error(), "cold")
		return
	}
	h.settle()
	req := h.req(b, "seed", round, "from-cache")
	req.log = filepath.Join(h.cfg.work, "logs", fmt.Sprintf("r%d-regcache-cold-%s.log", round, b.name()))
	req.cacheFrom = ref
	rec("cold", b.build(ctx, req))
}

// ---------------------------------------------------------------- generation

const largeChangeFile = "d050/s2/f025.txt"

// generate writes the workload directories under bench/.work/w/.
func (h *harness) generate() error {
	// (a) seed, copied from examples/seed.
	seed := h.wdir("seed")
	if err := os.RemoveAll(seed); err != nil {
		return err
	}
	src := filepath.Join(h.cfg.repo, "examples", "seed")
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		text := string(b)
		if e.Name() == "Dockerfile" {
			// busybox's time reports how long go build itself ran, which
			// the report subtracts from the wall time (see compileTime).
			if !strings.Contains(text, " go build ") {
				return fmt.Errorf("%s: no RUN … go build … line to time", filepath.Join(src, e.Name()))
			}
			text = strings.Replace(text, " go build ", " time go build ", 1)
		}
		if err := writeFile(filepath.Join(seed, e.Name()), text); err != nil {
			return err
		}
	}

	// (i) a CPU-bound RUN for linux/arm64, emulated.
	if err := h.writeWorkload("emulated", "FROM busybox:multi\nRUN i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; uname -m > /arch; echo $i >> /arch\n"); err != nil {
		return err
	}

	// (b) four independent 3 s stages, an unused 10 s stage, a final stage
	// copying from each.
	var df strings.Builder
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&df, "FROM busybox AS s%d\nRUN sleep 3 && echo %d > /r%d\n\n", i, i, i)
	}
	df.WriteString("FROM busybox AS unused\nRUN sleep 10 && echo unused > /unused\n\n")
	df.WriteString("FROM busybox\n")
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&df, "COPY --from=s%d /r%d /\n", i, i)
	}
	if err := h.writeWorkload("parallel", df.String()); err != nil {
		return err
	}

	// (c) 40 RUN steps in one stage.
	df.Reset()
	df.WriteString("FROM busybox\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&df, "RUN echo %d > /f%d\n", i, i)
	}
	if err := h.writeWorkload("runs40", df.String()); err != nil {
		return err
	}

	// (e) COPY --from an image that is only in the registry.
	if err := h.writeWorkload("imagecopy", "FROM scratch\nCOPY --from=golang:1.26 /usr/local/go/bin/gofmt /\n"); err != nil {
		return err
	}

	// Warm-up builds that make the bases local (pulled and unpacked).
	if err := h.writeWorkload("warm-busybox", "FROM busybox:latest\nRUN true\n"); err != nil {
		return err
	}
	if err := h.writeWorkload("warm-golang", "FROM golang:1.26\nRUN true\n"); err != nil {
		return err
	}

	// (d) the large context.
	return h.generateLarge()
}

func (h *harness) writeWorkload(name, dockerfile string) error {
	dir := h.wdir(name)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "Dockerfile"), dockerfile)
}

// generateLarge writes 20,000 files of text (lines of pseudo-random hex,
// about half compressible by gzip) in 100×4 directories; sizes 1 KiB to
// 61 KiB, about 635 MB (605 MiB) in all. The content depends only on
// largeSeed, so every run builds the same context. A marker beside the
// directory skips the work when it is already there.
func (h *harness) generateLarge() error {
	dir := h.wdir("large")
	marker := dir + ".generated"
	want := fmt.Sprintf("files=%d seed=%x v2\n", largeFiles, largeSeed)
	if b, err := os.ReadFile(marker); err == nil && string(b) == want {
		if _, err := os.Stat(filepath.Join(dir, largeChangeFile)); err == nil {
			return nil
		}
	}
	logf("generating the large context (%d files) in %s", largeFiles, dir)
	_ = os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	rng := splitmix(largeSeed)
	var total int64
	const hexd = "0123456789abcdef"
	line := make([]byte, 65)
	line[64] = '\n'
	for i := 0; i < largeFiles; i++ {
		d, s, f := i/200, (i/50)%4, i%50
		p := filepath.Join(dir, fmt.Sprintf("d%03d/s%d/f%03d.txt", d, s, f))
		if f == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
		}
		size := 1024 + int(rng()%61440)
		fh, err := os.Create(p)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(fh, 64<<10)
		for left := size; left > 0; {
			// Half the lines are random hex, half repeat a short phrase: gzip
			// gets about 2:1, like a mix of sources and binaries.
			x := rng()
			if x&1 == 0 {
				for j := 0; j < 64; j += 16 {
					v := rng()
					for k := 0; k < 16; k++ {
						line[j+k] = hexd[v&15]
						v >>= 4
					}
				}
			} else {
				copy(line, fmt.Sprintf("%-64s", fmt.Sprintf("// line %d of file %d: the quick brown fox", left, i)))
			}
			n := 65
			if left < n {
				n = left
			}
			if _, err := w.Write(line[:n]); err != nil {
				fh.Close()
				return err
			}
			left -= n
		}
		if err := w.Flush(); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
		total += int64(size)
	}
	if err := writeFile(filepath.Join(dir, "Dockerfile"), "FROM scratch\nCOPY . /app\n"); err != nil {
		return err
	}
	logf("large context: %d files, %.1f MB", largeFiles+1, float64(total)/1e6)
	return writeFile(marker, want)
}

// splitmix returns a splitmix64 generator: fast and the same everywhere.
func splitmix(seed uint64) func() uint64 {
	x := seed
	return func() uint64 {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		return z ^ (z >> 31)
	}
}
