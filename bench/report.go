package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cell summarises one builder's samples of one phase.
type cell struct {
	n, fails int
	median   float64
	medianAt sample // the sample nearest the median (for its log)
	ownKB    int64  // max over rounds
	treeKB   int64
}

func (h *harness) cell(phase, builder string) cell {
	var c cell
	var ok []sample
	for _, s := range h.samples {
		if s.phase != phase || s.builder != builder {
			continue
		}
		c.n++
		if !s.res.ok {
			c.fails++
			continue
		}
		ok = append(ok, s)
		c.ownKB = max(c.ownKB, s.res.ownKB)
		c.treeKB = max(c.treeKB, s.res.treeKB)
	}
	if len(ok) == 0 {
		return c
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].res.secs < ok[j].res.secs })
	secs := make([]float64, len(ok))
	for i, s := range ok {
		secs[i] = s.res.secs
	}
	c.median = median(secs)
	c.medianAt = ok[len(ok)/2]
	return c
}

// cpuMedians returns the medians, over a builder's good samples of a phase,
// of the machine's busy CPU seconds and of busy CPUs per wall second.
func (h *harness) cpuMedians(phase, builder string) (busy, perWall float64) {
	var bs, ps []float64
	for _, s := range h.samples {
		if s.phase == phase && s.builder == builder && s.res.ok && s.res.secs > 0 {
			bs = append(bs, s.res.cpu.busy)
			ps = append(ps, s.res.cpu.busy/s.res.secs)
		}
	}
	return median(bs), median(ps)
}

// builderRow appends to rows a table row of first and one cell per builder
// (— where cell has none), unless no builder has one.
func (h *harness) builderRow(rows []string, first string, cell func(builder string) (string, bool)) []string {
	row := []string{first}
	found := false
	for _, bl := range h.builders {
		c, ok := cell(bl.name())
		if !ok {
			c = "—"
		}
		found = found || ok
		row = append(row, c)
	}
	if !found {
		return rows
	}
	return append(rows, "| "+strings.Join(row, " | ")+" |")
}

// builderTable writes a section with a table of one column per builder
// (rows already formatted), unless there are no rows.
func (h *harness) builderTable(b *strings.Builder, title, intro, first string, rows []string) {
	if len(rows) == 0 {
		return
	}
	head := []string{first}
	for _, bl := range h.builders {
		head = append(head, bl.name())
	}
	fmt.Fprintf(b, "## %s\n\n%s\n\n| %s |\n|%s\n%s\n\n", title, intro, strings.Join(head, " | "), strings.Repeat("---|", len(head)), strings.Join(rows, "\n"))
}

// compileSplit returns the medians of go build's run time (compileTime of
// the build log) and of the rest of the timed command, over the phase's
// successful samples of builder that printed one; zeros when none did.
func (h *harness) compileSplit(phase, builder string) (compile, rest float64) {
	var cs, rs []float64
	for _, s := range h.samples {
		if s.phase != phase || s.builder != builder || !s.res.ok {
			continue
		}
		if c, ok := compileTime(s.res.log); ok {
			cs = append(cs, c)
			rs = append(rs, s.res.secs-c)
		}
	}
	return median(cs), median(rs)
}

var timeReal = regexp.MustCompile(`real\s+(\d+)m\s*([0-9.]+)s`)

// compileTime reads the "real 0m 29.75s" line that busybox's time printed
// into a build log (the last one: a log is appended to).
func compileTime(log string) (float64, bool) {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0, false
	}
	m := timeReal.FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		return 0, false
	}
	last := m[len(m)-1]
	mins, _ := strconv.ParseFloat(last[1], 64)
	sec, _ := strconv.ParseFloat(last[2], 64)
	return mins*60 + sec, true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

func secs(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.3f", v)
	}
	if v < 100 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func (c cell) String() string {
	switch {
	case c.n == 0:
		return "—"
	case c.fails == c.n:
		return "FAIL"
	case c.fails > 0:
		return fmt.Sprintf("%s (%d FAIL)", secs(c.median), c.fails)
	}
	return secs(c.median)
}

func (c cell) good() bool { return c.n > c.fails && c.median > 0 }

func (h *harness) writeReport(final bool) {
	var b strings.Builder
	others := []string{}
	for _, bl := range h.builders {
		if bl.name() != "strata" {
			others = append(others, bl.name())
		}
	}
	h.writeTitle(&b, final)
	h.writeTable(&b, others)
	h.writeSteps(&b)
	h.writeSeedSplit(&b)
	h.writeCPU(&b)
	h.writeFleet(&b)
	h.writeFailures(&b)
	h.writeNoise(&b)
	h.writeEnv(&b)

	out := b.String()
	if err := os.WriteFile(h.cfg.out, []byte(out), 0o644); err != nil {
		logf("write %s: %v", h.cfg.out, err)
	}
	if final {
		fmt.Println(out)
		logf("results written to %s; logs in %s", h.cfg.out, h.cfg.work+"/logs")
	}
}

// writeTitle writes the title and what the run was.
func (h *harness) writeTitle(b *strings.Builder, final bool) {
	fmt.Fprintf(b, "# strata benchmark results\n\n")
	status := "complete"
	if !final {
		status = "in progress"
	}
	fmt.Fprintf(b, "Run of %s (%s), `bench/run.sh --rounds %d --large-rounds %d`",
		h.started.Format("2006-01-02 15:04 MST"), status, h.cfg.rounds, h.cfg.largeRounds)
	if h.cfg.only != nil {
		fmt.Fprintf(b, " `--only %s`", h.cfg.only.String())
	}
	fmt.Fprintf(b, ", %s wall time. Medians in seconds over the rounds; ratio = strata / other (below 1: strata is faster).\n\n", time.Since(h.started).Round(time.Second))
}

// writeTable writes the main table: medians, ratios, peak RSS, targets.
func (h *harness) writeTable(b *strings.Builder, others []string) {
	head := []string{"workload", "strata"}
	for _, o := range others {
		head = append(head, o, "strata/"+o)
	}
	head = append(head, "strata peak RSS own / tree (MB)", "target vs BuildKit")
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, w := range workloads() {
		for _, p := range w.phases {
			st := h.cell(p.id, "strata")
			row := []string{p.title, st.String()}
			seen := st.n > 0
			var bkRatio float64
			for _, o := range others {
				oc := h.cell(p.id, o)
				seen = seen || oc.n > 0
				ratio := "—"
				if st.good() && oc.good() {
					r := st.median / oc.median
					ratio = fmt.Sprintf("%.2f", r)
					if o == "buildkit" {
						bkRatio = r
					}
				}
				row = append(row, oc.String(), ratio)
			}
			if !seen {
				continue
			}
			rss := "—"
			if st.good() {
				rss = fmt.Sprintf("%d / %d", st.ownKB/1024, st.treeKB/1024)
			}
			row = append(row, rss, target(p, st, bkRatio))
			fmt.Fprintf(b, "| %s |\n", strings.Join(row, " | "))
		}
	}
	b.WriteString("\n")
}

// writeSteps writes where strata's time goes: the steps of its median run
// of each phase.
func (h *harness) writeSteps(b *strings.Builder) {
	b.WriteString("## strata: steps of the median run (from `--progress=plain`)\n\n")
	for _, w := range workloads() {
		for _, p := range w.phases {
			st := h.cell(p.id, "strata")
			if !st.good() {
				continue
			}
			steps := parseSteps(st.medianAt.res.log)
			if steps == "" {
				continue
			}
			fmt.Fprintf(b, "- %s — %s s (round %d): %s\n", p.id, secs(st.median), st.medianAt.round, steps)
		}
	}
	b.WriteString("\n")
}

// writeSeedSplit writes the seed phases without the compile: go build's
// own run time varies by several percent between identical runs under any
// builder, which hides the builder's part in the medians.
func (h *harness) writeSeedSplit(b *strings.Builder) {
	var ownRows []string
	for _, id := range []string{"seed/cold", "seed/change"} {
		ownRows = h.builderRow(ownRows, id, func(builder string) (string, bool) {
			compile, rest := h.compileSplit(id, builder)
			return fmt.Sprintf("%.2f + %.3f", compile, rest), compile > 0
		})
	}
	h.builderTable(b, "seed: the compile and the rest",
		"Medians of `go build`'s own run time inside the RUN step (busybox `time`, printed in the build log) + the rest of the timed build (its wall time minus that: starting, the other steps, the container's start and end, committing, writing the image).",
		"phase", ownRows)
}

// writeCPU writes CPU time: a long phase's wall time is only comparable
// between builders when the machine ran at the same speed; the CPU seconds
// show whether a builder did more work or the machine was slower then.
func (h *harness) writeCPU(b *strings.Builder) {
	var cpuRows []string
	for _, w := range workloads() {
		for _, p := range w.phases {
			long := false
			row := h.builderRow(nil, p.title, func(builder string) (string, bool) {
				c := h.cell(p.id, builder)
				if !c.good() {
					return "", false
				}
				long = long || c.median >= 2
				busy, perWall := h.cpuMedians(p.id, builder)
				return fmt.Sprintf("%.1f (%.2f)", busy, perWall), true
			})
			if long {
				cpuRows = append(cpuRows, row...)
			}
		}
	}
	h.builderTable(b, "Machine CPU time of the longer phases",
		"Median CPU seconds the whole machine was busy (user, system, irq) while the timed command ran — every process, daemons and containers included — and in brackets the median CPUs kept busy (CPU seconds / wall seconds).",
		"workload", cpuRows)
}

// writeFailures lists the failed runs with their logs.
func (h *harness) writeFailures(b *strings.Builder) {
	var fails []string
	for _, s := range h.samples {
		if !s.res.ok {
			fails = append(fails, fmt.Sprintf("- %s, %s, round %d: %s (log `%s`)", s.phase, s.builder, s.round, s.res.err, relWork(h, s.res.log)))
		}
	}
	if len(fails) > 0 {
		b.WriteString("## Failures\n\n" + strings.Join(fails, "\n") + "\n\n")
	}
}

// writeNoise writes how many timed commands started while other
// processes kept the machine busy.
func (h *harness) writeNoise(b *strings.Builder) {
	busyN, total := map[string]int{}, map[string]int{}
	for _, s := range h.samples {
		if s.res.ok || s.res.secs > 0 {
			total[s.builder]++
			if s.res.busy >= quietBusy {
				busyN[s.builder]++
			}
		}
	}
	var noise []string
	for _, bl := range h.builders {
		if total[bl.name()] > 0 {
			noise = append(noise, fmt.Sprintf("%s %d of %d", bl.name(), busyN[bl.name()], total[bl.name()]))
		}
	}
	if len(noise) > 0 {
		fmt.Fprintf(b, "Timed commands that started while other processes kept the machine ≥ %.0f%% busy (after waiting up to %s for quiet): %s.\n\n",
			quietBusy*100, h.cfg.quietWait, strings.Join(noise, ", "))
	}
}

// writeEnv lists the versions of everything.
func (h *harness) writeEnv(b *strings.Builder) {
	b.WriteString("## Environment\n\n")
	for _, e := range h.env {
		fmt.Fprintf(b, "- %s\n", e)
	}
	b.WriteString("\nSee bench/README.md for what each workload is, how \"cold\" is defined and what is measured.\n")
}

func relWork(h *harness, p string) string {
	return strings.TrimPrefix(p, h.cfg.repo+"/")
}

func target(p phase, st cell, bkRatio float64) string {
	var parts []string
	if p.target > 0 {
		mark := "?"
		if bkRatio > 0 {
			mark = "✗"
			if bkRatio <= p.target {
				mark = "✓"
			}
		}
		parts = append(parts, fmt.Sprintf("≤ %.2f %s", p.target, mark))
	}
	if p.maxSecs > 0 {
		mark := "?"
		if st.good() {
			mark = "✗"
			if st.median <= p.maxSecs {
				mark = "✓"
			}
		}
		parts = append(parts, fmt.Sprintf("≤ %.0f ms %s", p.maxSecs*1000, mark))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ")
}

var (
	stepHead = regexp.MustCompile(`^#(\d+) (.+)$`)
	stepDone = regexp.MustCompile(`^#(\d+) DONE ([0-9.]+)s$`)
	stepCach = regexp.MustCompile(`^#(\d+) CACHED$`)
)

// parseSteps reads a strata --progress=plain log and lists its slowest steps.
func parseSteps(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	names := map[string]string{}
	type st struct {
		name string
		d    float64
	}
	var done []st
	cached := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := stepDone.FindStringSubmatch(line); m != nil {
			d, _ := strconv.ParseFloat(m[2], 64)
			done = append(done, st{names[m[1]], d})
			continue
		}
		if m := stepCach.FindStringSubmatch(line); m != nil {
			cached++
			continue
		}
		if m := stepHead.FindStringSubmatch(line); m != nil {
			if _, ok := names[m[1]]; !ok {
				names[m[1]] = m[2]
			}
		}
	}
	if len(done) == 0 && cached == 0 {
		return ""
	}
	sort.SliceStable(done, func(i, j int) bool { return done[i].d > done[j].d })
	sum := 0.0
	for _, s := range done {
		sum += s.d
	}
	out := fmt.Sprintf("%d step(s) run, their DONE times add up to %.2fs", len(done), sum)
	if cached > 0 {
		out += fmt.Sprintf(", %d CACHED", cached)
	}
	var parts []string
	for i, s := range done {
		if i >= 4 || s.d < 0.05 {
			break
		}
		name := s.name
		if len(name) > 60 {
			name = name[:57] + "..."
		}
		parts = append(parts, fmt.Sprintf("`%s` %.1fs", name, s.d))
	}
	if len(parts) > 0 {
		out += "; slowest: " + strings.Join(parts, ", ")
	}
	return out
}
