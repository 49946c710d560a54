package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// stepStatus maps "[stage n/m] INSTRUCTION" to DONE or CACHED from plain progress.
func stepStatus(t *testing.T, stderr string) map[string]string {
	t.Helper()
	return testenv.StepStatus(stderr)
}

func countStatus(st map[string]string, want string) int {
	n := 0
	for _, s := range st {
		if s == want {
			n++
		}
	}
	return n
}

// TestCache: a no-op rebuild hits every step and gives the same image; one
// changed file reruns exactly the steps that read it; a change to a file
// only another stage reads does not rebuild a stage; --no-cache and
// --no-cache-filter rerun; the miss explanation names the file.
func TestCache(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox AS a\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a.out\n" +
			"FROM busybox AS b\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b.out\n" +
			"FROM busybox\nCOPY --from=a /a.out /\nCOPY --from=b /b.out /\nCOPY c.txt /\n",
		"a.txt": "a1\n", "b.txt": "b1\n", "c.txt": "c1\n",
	})
	build := func(args ...string) (map[string]string, string) {
		r := strata(t, store, append([]string{"build", "--progress", "plain", "--iidfile", filepath.Join(ctx, "iid")}, append(args, ctx)...)...)
		id, _ := os.ReadFile(filepath.Join(ctx, "iid"))
		return stepStatus(t, r.Stderr), string(id)
	}
	first, id1 := build()
	if n := countStatus(first, "CACHED"); n != 0 {
		t.Fatalf("first build: %d steps cached, want 0: %v", n, first)
	}
	again, id2 := build()
	if n := countStatus(again, "DONE"); n != 3 { // the three FROM lines
		t.Errorf("no-op rebuild ran %d steps (want only the 3 FROMs): %v", n, again)
	}
	if id1 != id2 {
		t.Errorf("no-op rebuild changed the image id: %s -> %s", id1, id2)
	}

	os.WriteFile(filepath.Join(ctx, "b.txt"), []byte("b2\n"), 0o644)
	r := strata(t, store, "build", "--progress", "plain", "--debug-cache", ctx)
	st := stepStatus(t, r.Stderr)
	for name, want := range map[string]string{
		"[a 2/3] COPY a.txt /a.txt":            "CACHED",
		"[a 3/3] RUN cat /a.txt > /a.out":      "CACHED",
		"[b 2/3] COPY b.txt /b.txt":            "DONE",
		"[b 3/3] RUN cat /b.txt > /b.out":      "DONE",
		"[stage-2 2/4] COPY --from=a /a.out /": "CACHED",
		"[stage-2 3/4] COPY --from=b /b.out /": "DONE",
		"[stage-2 4/4] COPY c.txt /":           "DONE", // after a changed step
	} {
		if st[name] != want {
			t.Errorf("after changing b.txt, %q was %q, want %s\n%s", name, st[name], want, r.Stderr)
		}
	}
	if !strings.Contains(r.Stderr, "b.txt") || !strings.Contains(r.Stderr, "cache miss [b 2/3]") {
		t.Errorf("--debug-cache does not say that b.txt changed:\n%s", r.Stderr)
	}

	nc, _ := build("--no-cache")
	if n := countStatus(nc, "CACHED"); n != 0 {
		t.Errorf("--no-cache: %d steps cached", n)
	}
	f, _ := build("--no-cache-filter", "a")
	if f["[a 3/3] RUN cat /a.txt > /a.out"] != "DONE" || f["[b 3/3] RUN cat /b.txt > /b.out"] != "CACHED" {
		t.Errorf("--no-cache-filter a: %v", f)
	}
}

// TestReproducible: two cold builds with the same SOURCE_DATE_EPOCH on
// separate stores give the same image digest.
func TestReproducible(t *testing.T) {
	ctx := suite.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox AS b\nRUN mkdir /out && echo built > /out/f && touch /out/g\nFROM scratch\nCOPY --from=b /out /out\nCOPY x.txt /\nENV A=1\n",
		"x.txt":      "x\n",
	})
	var ids []string
	for i := 0; i < 2; i++ {
		store := suite.NewBusyboxStore(t)
		iid := filepath.Join(ctx, "iid")
		suite.MustRun(t, store, runOpts{Env: []string{"SOURCE_DATE_EPOCH=1700000000"}}, "build", "-q", "--iidfile", iid, "-o", "type=oci,dest="+filepath.Join(ctx, "out.tar"), ctx)
		b, _ := os.ReadFile(iid)
		ids = append(ids, string(b))
	}
	if ids[0] != ids[1] || ids[0] == "" {
		t.Fatalf("two cold builds with the same epoch: %q and %q", ids[0], ids[1])
	}
}

// TestRemoteCache: --cache-to a real registry (Debian's docker-registry),
// then a fresh store with --cache-from reruns nothing and gives the same
// image; type=local works the same way.
func TestRemoteCache(t *testing.T) {
	reg := startRegistry(t)
	ctx := suite.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox AS b\nRUN echo slow > /s\nFROM busybox\nCOPY --from=b /s /s\nRUN cat /s > /t\n",
	})
	ref := reg.Addr + "/cache/app:1"
	local := filepath.Join(suite.TempDir(t), "cache")
	s1 := newSameBusyboxStore(t)
	strata(t, s1, "build", "-q", "--iidfile", filepath.Join(ctx, "id1"),
		"--cache-to", "type=registry,ref="+ref+",mode=max", "--cache-to", "type=local,dest="+local+",mode=max", ctx)
	want, _ := os.ReadFile(filepath.Join(ctx, "id1"))
	runTool(t, suite.Timeout, "skopeo", "inspect", "--tls-verify=false", "--raw", "docker://"+ref)

	for _, from := range []string{"type=registry,ref=" + ref, "type=local,src=" + local} {
		s2 := newSameBusyboxStore(t)
		r := strata(t, s2, "build", "--progress", "plain", "--iidfile", filepath.Join(ctx, "id2"), "--cache-from", from, ctx)
		st := stepStatus(t, r.Stderr)
		if n := countStatus(st, "DONE"); n != 2 { // the two FROMs
			t.Errorf("--cache-from %s: %d steps ran, want none besides FROM: %v", from, n, st)
		}
		got, _ := os.ReadFile(filepath.Join(ctx, "id2"))
		if string(got) != string(want) {
			t.Errorf("--cache-from %s: image %s, want %s", from, got, want)
		}
	}
}

// TestPrune: prune removes build cache but never a tagged image.
func TestPrune(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox AS b\nRUN echo x > /x\nFROM busybox\nCOPY --from=b /x /\n"})
	strata(t, store, "build", "-q", "-t", "keep:1", ctx)
	strata(t, store, "prune", "--all")
	strata(t, store, "run", "keep:1", "cat", "/x")
	if r := strata(t, store, "du"); !strings.Contains(r.Stdout, "Build cache records") {
		t.Errorf("du output:\n%s", r.Stdout)
	}
}

// TestCheckErrorBeforeBuild: with "# check=error=true" a finding fails the
// build before any step runs, as in BuildKit.
func TestCheckErrorBeforeBuild(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "# check=error=true\nFROM busybox as base\nRUN echo STEP-RAN\n"})
	r := strataRun(t, store, runOpts{}, "build", "--progress", "plain", ctx)
	if r.Code != 1 || !strings.Contains(r.Stderr, "FromAsCasing") || strings.Contains(r.Stderr, "STEP-RAN") {
		t.Fatalf("want exit 1 with the FromAsCasing finding and no step run:\n%s", r)
	}
	ok := suite.WriteFiles(t, map[string]string{"Dockerfile": "# check=error=true\nFROM busybox AS base\nRUN echo STEP-RAN\n"})
	if r := strata(t, store, "build", "--progress", "plain", ok); !strings.Contains(r.Stderr, "STEP-RAN") {
		t.Fatalf("a clean Dockerfile with check=error=true did not build:\n%s", r)
	}
}

// TestCacheCopyBeforeKey: a COPY from the context whose step has no record
// copies first, hashing the files as it reads them, and looks its key up
// afterwards. Touched files (new stat data, same content) on a store whose
// records have no prefix marks (as a store from an older strata) take that
// path and still hit, with the same image; with the marks back they take
// the ordinary path and hit; a changed file misses; the context is hashed
// identically either way (a --no-cache build, which always copies first,
// gives the layer the cached build recorded).
func TestCacheCopyBeforeKey(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	files := map[string]string{"Dockerfile": "FROM busybox\nCOPY . /app\nRUN ls /app/d | wc -l > /n\n"}
	for i := 0; i < 40; i++ {
		files[fmt.Sprintf("d/f%02d", i)] = strings.Repeat(fmt.Sprintf("%d\n", i), 1000*i)
	}
	ctx := suite.WriteFiles(t, files)
	iid := filepath.Join(t.TempDir(), "iid") // not in the context, which COPY . reads whole
	var env []string
	build := func(args ...string) (map[string]string, string, string) {
		r := suite.MustRun(t, store, runOpts{Env: env}, append([]string{"build", "--progress", "plain", "--debug-cache", "--iidfile", iid}, append(args, ctx)...)...)
		id, _ := os.ReadFile(iid)
		return stepStatus(t, r.Stderr), string(id), r.Stderr
	}
	const copyStep, runStep = "[stage-0 2/3] COPY . /app", "[stage-0 3/3] RUN ls /app/d | wc -l > /n"
	const early = "hashing the files while copying them"
	touchAll := func(when time.Time) {
		for name := range files {
			if err := os.Chtimes(filepath.Join(ctx, name), when, when); err != nil {
				t.Fatal(err)
			}
		}
	}

	st, id1, out := build()
	if st[copyStep] != "DONE" || !strings.Contains(out, early) {
		t.Fatalf("cold build: COPY %q, copied before its key: %v\n%s", st[copyStep], strings.Contains(out, early), out)
	}

	touchAll(time.Now().Add(-time.Hour))
	if err := os.RemoveAll(filepath.Join(store, "cache", "prefixes")); err != nil {
		t.Fatal(err)
	}
	st, id2, out := build()
	if !strings.Contains(out, early) {
		t.Fatalf("without prefix marks the COPY did not copy first:\n%s", out)
	}
	if st[copyStep] != "CACHED" || st[runStep] != "CACHED" || id2 != id1 {
		t.Fatalf("touched context, copied first: COPY %s, RUN %s, image %s (first %s)\n%s", st[copyStep], st[runStep], id2, id1, out)
	}

	touchAll(time.Now().Add(-30 * time.Minute))
	st, id3, out := build()
	if strings.Contains(out, early) || st[copyStep] != "CACHED" || id3 != id1 {
		t.Fatalf("with the mark back: copied first %v, COPY %s, image %s (first %s)\n%s", strings.Contains(out, early), st[copyStep], id3, id1, out)
	}

	if err := os.WriteFile(filepath.Join(ctx, "d", "f07"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, id4, out := build()
	if st[copyStep] != "DONE" || st[runStep] != "DONE" || id4 == id1 {
		t.Fatalf("changed file: COPY %s, RUN %s, image %s\n%s", st[copyStep], st[runStep], id4, out)
	}

	// Both paths must make the same layer from the same files. COPY gives
	// the /app it creates the build's time (as BuildKit does), so this part
	// builds with SOURCE_DATE_EPOCH, which clamps it: a first build with the
	// epoch (a new prefix: copies first), a changed file (the prefix is
	// known: hashes first, misses, copies), then --no-cache (copies first).
	env = []string{"SOURCE_DATE_EPOCH=1700000000"}
	build()
	if err := os.WriteFile(filepath.Join(ctx, "d", "f08"), []byte("changed too\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _, out = build("-t", "copyfirst:cached")
	if st[copyStep] != "DONE" || strings.Contains(out, early) {
		t.Fatalf("with the epoch, after a change: COPY %s, copied first %v\n%s", st[copyStep], strings.Contains(out, early), out)
	}
	layersOf := func(ref string) []string {
		r := strata(t, store, "inspect", "--format", "{{json .RootFS.Layers}}", ref)
		return strings.Fields(r.Stdout)
	}
	time.Sleep(1100 * time.Millisecond) // a later second than the cached build, always
	_, _, out = build("--no-cache", "-t", "copyfirst:nocache")
	if !strings.Contains(out, early) {
		t.Errorf("--no-cache did not copy first:\n%s", out)
	}
	if a, b := layersOf("copyfirst:cached"), layersOf("copyfirst:nocache"); len(a) == 0 || strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("--no-cache layers %v, cached build's %v", b, a)
	}
}
