package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fleet workload (j): fleetSize builders of one kind, each with a store
// of its own, build Dockerfiles that share stages (test/fleet/testdata and
// the seed) at the same moment, exporting to one registry cache ref with
// mode=max. Round 1 is cold; round 2 builds the same on empty stores
// (unchanged inputs: everything should come from the cache); round 3, on
// empty stores again, gives two members Dockerfiles no round built (new
// final stages on the shared stages).
// Each member reaches the registry through a proxy of its own that counts
// the blob bytes it downloads. strata's members are strata processes;
// BuildKit's are buildkitd daemons of their own.
const fleetSize = 8

var (
	fleetRound1 = []string{"seed", "apt", "variant-a", "variant-b", "variant-c", "variant-a", "variant-b", "variant-c"}
	fleetRound3 = []string{"seed", "apt", "variant-a", "variant-b", "variant-c", "variant-a", "seed-busybox", "variant-d"}
)

// fleetMember is one builder of a fleet.
type fleetMember interface {
	// build builds dockerfile (a name in the fleet context) importing and
	// exporting the cache ref, its output to log.
	build(ctx context.Context, dockerfile, cacheRef, log string) result
	// fresh empties the member's store.
	fresh(ctx context.Context) error
	stop()
}

// fleetStats are the rounds of one run of one builder kind.
type fleetStats struct {
	round1, round2, round3 float64 // wall seconds
	// hits of round 2 and 3 among their steps that round 1 built
	hits2, unchanged2, hits3, unchanged3 int
	pulled2, pulled3                     []float64 // MB of blobs per member
}

func runFleet(ctx context.Context, h *harness, b builder, round int, rec func(string, result)) {
	st := &fleetStats{}
	defer func() { h.fleet[b.name()] = append(h.fleet[b.name()], st) }()
	members, proxies, err := h.startFleet(ctx, b, round)
	defer func() {
		for _, m := range members {
			m.stop()
		}
		for _, p := range proxies {
			p.close()
		}
	}()
	if err != nil {
		failAll(rec, "fleet: "+err.Error(), "round1", "round2")
		return
	}
	cacheRef := fmt.Sprintf("%%s/fleet/%s-r%d:main", b.name(), round) // %s: the member's proxy
	logName := func(n int) string { return fmt.Sprintf("r%d-fleet-round%d-%s", round, n, b.name()) }
	h.settle()
	r1, logs1 := fleetRound(ctx, h, members, proxies, fleetRound1, cacheRef, logName(1))
	rec("round1", r1)
	if !r1.ok {
		failAll(rec, "round 1 failed", "round2", "round3")
		return
	}
	st.round1 = r1.secs
	ran := map[string]bool{} // the steps round 1 built
	for _, l := range logs1 {
		for step := range fleetSteps(l) {
			ran[step] = true
		}
	}
	for n, dockerfiles := range [][]string{2: fleetRound1, 3: fleetRound3} {
		if dockerfiles == nil {
			continue
		}
		r, secs, hits, unchanged, pulled := fleetAgain(ctx, h, members, proxies, dockerfiles, cacheRef, logName(n), ran)
		rec(fmt.Sprintf("round%d", n), r)
		if n == 2 {
			st.round2, st.hits2, st.unchanged2, st.pulled2 = secs, hits, unchanged, pulled
		} else {
			st.round3, st.hits3, st.unchanged3, st.pulled3 = secs, hits, unchanged, pulled
		}
	}
}

// fleetAgain runs a round on empty stores: its result, wall seconds (0 if
// it failed), how many of its steps round 1 built (ran) and how many of
// those hit, and the MB each member downloaded.
func fleetAgain(ctx context.Context, h *harness, members []fleetMember, proxies []*countingProxy, dockerfiles []string, cacheRef, logPrefix string, ran map[string]bool) (r result, secs float64, hits, unchanged int, pulled []float64) {
	for _, m := range members {
		if err := m.fresh(ctx); err != nil {
			return fail("empty stores: " + err.Error()), 0, 0, 0, nil
		}
	}
	for _, p := range proxies {
		p.bytes.Store(0)
	}
	h.settle()
	r, logs := fleetRound(ctx, h, members, proxies, dockerfiles, cacheRef, logPrefix)
	if !r.ok {
		return r, 0, 0, 0, nil
	}
	for _, l := range logs {
		for step, status := range fleetSteps(l) {
			if ran[step] {
				unchanged++
				if status == "CACHED" {
					hits++
				}
			}
		}
	}
	var each []string
	for i, p := range proxies {
		mb := float64(p.bytes.Load()) / 1e6
		pulled = append(pulled, mb)
		each = append(each, fmt.Sprintf("%s %.1f", dockerfiles[i], mb))
	}
	logf("  %s: MB downloaded per member: %s", logPrefix, strings.Join(each, ", "))
	return r, r.secs, hits, unchanged, pulled
}

// fleetRound builds dockerfiles[i] with members[i], all at once, and
// returns the wall time of the whole round and each member's log.
func fleetRound(ctx context.Context, h *harness, members []fleetMember, proxies []*countingProxy, dockerfiles []string, cacheRef, logPrefix string) (result, []string) {
	logs := make([]string, len(members))
	results := make([]result, len(members))
	before := readCPUTimes()
	start := time.Now()
	var wg sync.WaitGroup
	for i, m := range members {
		logs[i] = filepath.Join(h.cfg.work, "logs", fmt.Sprintf("%s-%d-%s.log", logPrefix, i, dockerfiles[i]))
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = m.build(ctx, dockerfiles[i], fmt.Sprintf(cacheRef, proxies[i].addr), logs[i])
		}()
	}
	wg.Wait()
	res := result{ok: true, secs: time.Since(start).Seconds(), log: logs[0], cpu: readCPUTimes().sub(before)}
	for i, r := range results {
		if !r.ok {
			res.ok, res.err, res.log = false, fmt.Sprintf("member %d (%s): %s", i, dockerfiles[i], r.err), r.log
			break
		}
	}
	texts := make([]string, len(logs))
	for i, l := range logs {
		b, _ := os.ReadFile(l)
		texts[i] = string(b)
	}
	return res, texts
}

var (
	fleetStepStart = regexp.MustCompile(`^#(\d+) (\[[^\]]* \d+/\d+\] .*)$`)
	fleetStepEnd   = regexp.MustCompile(`^#(\d+) (DONE|CACHED)`)
)

// fleetSteps maps each Dockerfile step of a plain progress log ("[stage
// n/m] INSTRUCTION", FROM lines left out) to DONE or CACHED. strata and
// BuildKit print the same form.
func fleetSteps(log string) map[string]string {
	names := map[string]string{}
	out := map[string]string{}
	for _, l := range strings.Split(log, "\n") {
		if m := fleetStepStart.FindStringSubmatch(l); m != nil {
			if !strings.Contains(m[2], "] FROM ") {
				names[m[1]] = m[2]
			}
		} else if m := fleetStepEnd.FindStringSubmatch(l); m != nil && names[m[1]] != "" {
			out[names[m[1]]] = m[2]
		}
	}
	return out
}

// startFleet starts the members of b's kind, each behind its own proxy.
func (h *harness) startFleet(ctx context.Context, b builder, round int) ([]fleetMember, []*countingProxy, error) {
	var members []fleetMember
	var proxies []*countingProxy
	for i := 0; i < fleetSize; i++ {
		p, err := newCountingProxy(h.reg)
		if err != nil {
			return members, proxies, err
		}
		proxies = append(proxies, p)
		dir := h.statePath(fmt.Sprintf("fleet-%s-%d", b.name(), i), filepath.Join(h.cfg.work, "state", fmt.Sprintf("fleet-%s-%d", b.name(), i)))
		var m fleetMember
		switch b.name() {
		case "strata":
			m = &strataMember{h: h, root: dir, proxy: p.addr}
		case "buildkit":
			bk, ok := b.(*buildkitBuilder)
			if !ok {
				return members, proxies, fmt.Errorf("not a BuildKit builder")
			}
			m, err = startBuildkitMember(ctx, h, bk.bin, dir, p.addr, fmt.Sprintf("r%d-%d", round, i))
		default:
			return members, proxies, fmt.Errorf("no fleet of %s", b.name())
		}
		if err != nil {
			return members, proxies, err
		}
		members = append(members, m)
		if err := m.fresh(ctx); err != nil {
			return members, proxies, err
		}
	}
	return members, proxies, nil
}

// strataMember is a strata process with a store of its own.
type strataMember struct {
	h     *harness
	root  string
	proxy string
}

func (m *strataMember) build(ctx context.Context, dockerfile, cacheRef, log string) result {
	dir := m.h.wdir("fleet")
	return runCmd(ctx, cmdSpec{argv: []string{m.h.strata, "--root", m.root, "build", "--progress", "plain",
		"-f", filepath.Join(dir, dockerfile+".Dockerfile"), "-t", "bench/fleet",
		"--cache-from", "type=registry,ref=" + cacheRef, "--cache-to", "type=registry,ref=" + cacheRef + ",mode=max", dir},
		env: []string{"STRATA_REGISTRY_MIRRORS=docker.io=http://" + m.proxy}, log: log, timeout: m.h.cfg.timeout})
}

func (m *strataMember) fresh(context.Context) error { return removeTree(m.root) }
func (m *strataMember) stop() {
	if !m.h.cfg.keep {
		removeTree(m.root)
	}
}

// buildkitMember is a buildkitd of its own, its docker.io mirror and the
// cache registry reached through the member's proxy.
type buildkitMember struct {
	h     *harness
	bin   string
	root  string
	addr  string
	d     *daemon
	proxy string
}

func startBuildkitMember(ctx context.Context, h *harness, bin, root, proxy, id string) (*buildkitMember, error) {
	m := &buildkitMember{h: h, bin: bin, root: root, proxy: proxy}
	run := filepath.Join(h.cfg.work, "run-fleet-"+id)
	m.addr = "unix://" + run + "/buildkitd.sock"
	if err := removeTree(root); err != nil {
		return nil, err
	}
	conf := filepath.Join(run, "buildkitd.toml")
	if err := writeFile(conf, fmt.Sprintf("[worker.oci]\n  gc = false\n[registry.\"docker.io\"]\n  mirrors = [%q]\n[registry.%q]\n  http = true\n  insecure = true\n", proxy, proxy)); err != nil {
		return nil, err
	}
	d, err := startDaemon("buildkitd-fleet-"+id, filepath.Join(h.cfg.work, "logs", "buildkitd-fleet-"+id+".log"), nil, nil,
		filepath.Join(bin, "buildkitd"), "--config", conf, "--oci-worker=true", "--containerd-worker=false",
		"--oci-worker-snapshotter=overlayfs", "--oci-worker-net=host", "--root", root, "--addr", m.addr)
	if err != nil {
		return nil, err
	}
	m.d = d
	ctl := m.ctl("debug", "workers")
	return m, waitFor(d, 60*time.Second, func() bool { return exec.Command(ctl[0], ctl[1:]...).Run() == nil })
}

func (m *buildkitMember) ctl(args ...string) []string {
	return append([]string{filepath.Join(m.bin, "buildctl"), "--addr", m.addr}, args...)
}

func (m *buildkitMember) build(ctx context.Context, dockerfile, cacheRef, log string) result {
	dir := m.h.wdir("fleet")
	return runCmd(ctx, cmdSpec{argv: m.ctl("build", "--progress=plain", "--frontend", "dockerfile.v0",
		"--local", "context="+dir, "--local", "dockerfile="+dir, "--opt", "filename="+dockerfile+".Dockerfile",
		"--output", "type=image,name=docker.io/bench/fleet",
		"--export-cache", "type=registry,ref="+cacheRef+",mode=max", "--import-cache", "type=registry,ref="+cacheRef),
		log: log, timeout: m.h.cfg.timeout})
}

func (m *buildkitMember) fresh(ctx context.Context) error {
	return must(ctx, cmdSpec{argv: m.ctl("prune", "--all"), log: filepath.Join(m.h.cfg.work, "logs", "fleet-prune.log")})
}

func (m *buildkitMember) stop() {
	m.d.stop(10 * time.Second)
	if !m.h.cfg.keep {
		removeTree(m.root)
	}
}

// countingProxy forwards to the registry and counts the bytes of the
// blobs it serves (what its member downloads).
type countingProxy struct {
	addr  string
	srv   *http.Server
	bytes atomic.Int64
}

func newCountingProxy(registry string) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: l.Addr().String()}
	target, _ := url.Parse("http://" + registry)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/blobs/") {
			resp.Body = &countingBody{ReadCloser: resp.Body, n: &p.bytes}
		}
		return nil
	}
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: time.Minute}
	go p.srv.Serve(l)
	return p, nil
}

func (p *countingProxy) close() { p.srv.Close() }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// generateFleet writes the fleet's build context: the seed example (its
// Dockerfile as seed.Dockerfile) and test/fleet/testdata.
func (h *harness) generateFleet() error {
	dir := h.wdir("fleet")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(h.cfg.repo, "examples", "seed"))); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "Dockerfile"), filepath.Join(dir, "seed.Dockerfile")); err != nil {
		return err
	}
	return os.CopyFS(dir, os.DirFS(filepath.Join(h.cfg.repo, "test", "fleet", "testdata")))
}

// writeFleet writes the fleet's rounds against round 1, hit rates and
// downloads, per builder (medians over runs).
func (h *harness) writeFleet(b *strings.Builder) {
	if len(h.fleet) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## (j) Fleet: %d builders, one registry cache\n\n", fleetSize)
	fmt.Fprintf(b, "Round 1: %d cold builders at once (%s), each exporting `mode=max` to one cache ref. "+
		"Round 2: the same builds on empty stores (unchanged inputs). Round 3: empty stores again, two of them on Dockerfiles no round built (%s). "+
		"Hits: each round's steps that round 1 built, and how many hit. "+
		"Downloaded: blob MB per builder (median, max), counted by a proxy in front of each. Medians over runs.\n\n",
		fleetSize, strings.Join(fleetRound1, ", "), strings.Join(fleetRound3, ", "))
	fmt.Fprintf(b, "| builder | round 1 (s) | round 2 (s) | round 2 / round 1 | round 2 hits | round 2 downloaded (MB) | round 3 (s) | round 3 hits | round 3 downloaded (MB) |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, name := range sortedKeys(h.fleet) {
		var r1, r2, r3, ratio, p2, t2, p3, t3 []float64
		var h2, u2, h3, u3 int
		for _, s := range h.fleet[name] {
			if s.round1 == 0 || s.round2 == 0 || s.round3 == 0 {
				continue
			}
			r1, r2, r3, ratio = append(r1, s.round1), append(r2, s.round2), append(r3, s.round3), append(ratio, s.round2/s.round1)
			h2, u2, h3, u3 = h2+s.hits2, u2+s.unchanged2, h3+s.hits3, u3+s.unchanged3
			p2, t2 = append(p2, median(s.pulled2)), append(t2, maxOf(s.pulled2))
			p3, t3 = append(p3, median(s.pulled3)), append(t3, maxOf(s.pulled3))
		}
		if len(r1) == 0 {
			fmt.Fprintf(b, "| %s | failed | | | | | | | |\n", name)
			continue
		}
		fmt.Fprintf(b, "| %s | %.2f | %.2f | %.3f | %s | %.1f (max %.1f) | %.2f | %s | %.1f (max %.1f) |\n", name,
			median(r1), median(r2), median(ratio), percent(h2, u2), median(p2), median(t2), median(r3), percent(h3, u3), median(p3), median(t3))
	}
}

func percent(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%% (%d of %d)", 100*float64(n)/float64(of), n, of)
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
