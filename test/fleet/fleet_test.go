package fleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/sharedcache"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/test/internal/testenv"
)

const epoch = "SOURCE_DATE_EPOCH=1700000000"

// builder is one member of the fleet: a store of its own and the
// Dockerfile it builds in a round.
type builder struct {
	store, dockerfile string
	res               testenv.Result
}

// TestFleet: round 1, eight cold builders at once, two of them compiling
// the seed's server, exporting mode=max to one ref; round 2, eight fresh
// stores (two of them on Dockerfiles round 1 never built, made of its
// stages plus a final stage of their own) importing that ref.
func TestFleet(t *testing.T) {
	suite.RequireBuild(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain for the golang base image")
	}
	reg := testenv.StartDockerRegistry(t, testenv.RequireTool(t, "docker-registry"), suite.TempDir(t), false)
	pushBases(t, reg.Addr)
	ctxDir := fleetContext(t)
	cacheRef := reg.Addr + "/fleet/cache:main"

	round1 := []string{"seed", "apt", "variant-a", "variant-b", "variant-c", "variant-a", "variant-b", "variant-c"}
	r1 := runRound(t, reg.Addr, ctxDir, cacheRef, round1)
	ran := map[string]bool{} // the steps round 1 built: [stage n/m] INSTRUCTION
	for _, b := range r1 {
		for step := range testenv.StepStatus(b.res.Stderr) {
			ran[b.dockerfile+" "+step] = true
		}
	}
	checkNothingLost(t, reg.Addr, cacheRef, journalsOf(t, r1, cacheRef))

	round2 := []string{"seed", "apt", "variant-a", "variant-b", "variant-c", "variant-a", "seed-busybox", "variant-d"}
	r2 := runRound(t, reg.Addr, ctxDir, cacheRef, round2)
	hits, unchanged := 0, 0
	for _, b := range r2 {
		h, u, missed := hitRate(b, ran)
		hits, unchanged = hits+h, unchanged+u
		t.Logf("round 2 %-12s %2d of %2d unchanged steps hit (%s)", b.dockerfile, h, u, b.res.Elapsed.Round(10*time.Millisecond))
		if os.Getenv("FLEET_LOGS") != "" {
			t.Logf("%s", b.res.Stderr)
		}
		if u > 0 && float64(h) < 0.95*float64(u) {
			t.Errorf("round 2 %s: %d of %d unchanged steps hit; missed: %v\n%s", b.dockerfile, h, u, missed, b.res.Stderr)
		}
	}
	if float64(hits) < 0.95*float64(unchanged) {
		t.Errorf("round 2: %d of %d unchanged steps hit, want at least 95%%", hits, unchanged)
	}
	t.Logf("round 2: %d of %d unchanged steps hit", hits, unchanged)
	for _, b := range r2 {
		if strings.HasPrefix(b.dockerfile, "seed-busybox") || b.dockerfile == "variant-d" {
			continue // new in round 2
		}
		if !sameImage(t, b, r1) {
			t.Errorf("round 2 %s gave an image no round 1 build of it gave", b.dockerfile)
		}
	}
	for _, b := range append(r1, r2...) {
		if r := suite.Run(b.store, testenv.RunOpts{}, "fsck"); r.Code != 0 {
			t.Errorf("strata fsck of %s's store:\n%s", b.dockerfile, r)
		}
	}
}

// runRound builds dockerfiles at once, each in a fresh store, importing
// and exporting the shared cache, and fails the test if one fails.
func runRound(t *testing.T, regAddr, ctxDir, cacheRef string, dockerfiles []string) []*builder {
	t.Helper()
	bs := make([]*builder, len(dockerfiles))
	var wg sync.WaitGroup
	start := time.Now()
	for i, df := range dockerfiles {
		bs[i] = &builder{store: suite.NewStore(t), dockerfile: df}
		wg.Add(1)
		go func(b *builder, n int) {
			defer wg.Done()
			b.res = suite.Run(b.store, testenv.RunOpts{
				Env:     []string{epoch, "STRATA_REGISTRY_MIRRORS=docker.io=http://" + regAddr},
				Timeout: 8 * time.Minute,
			}, "build", "--progress", "plain",
				"-f", filepath.Join(ctxDir, df+".Dockerfile"),
				"--iidfile", filepath.Join(suite.TempDir(t), "iid"),
				"--cache-from", "type=registry,ref="+cacheRef,
				"--cache-to", "type=registry,ref="+cacheRef+",mode=max",
				"-t", fmt.Sprintf("fleet/%s:%d", df, n), ctxDir)
		}(bs[i], i)
	}
	wg.Wait()
	t.Logf("round of %d builders took %s", len(bs), time.Since(start).Round(100*time.Millisecond))
	for _, b := range bs {
		if b.res.Code != 0 {
			t.Fatalf("builder of %s failed:\n%s", b.dockerfile, b.res)
		}
	}
	return bs
}

// hitRate counts the steps of b that round 1 built too (ran) and how
// many of them hit, and lists the ones that did not. FROM lines are not
// steps the cache answers.
func hitRate(b *builder, ran map[string]bool) (hits, unchanged int, missed []string) {
	for step, status := range testenv.StepStatus(b.res.Stderr) {
		if strings.Contains(step, "] FROM ") {
			continue
		}
		if !ran[b.dockerfile+" "+step] && !ranElsewhere(ran, step) {
			continue
		}
		unchanged++
		if status == "CACHED" {
			hits++
		} else {
			missed = append(missed, step)
		}
	}
	return hits, unchanged, missed
}

// ranElsewhere reports whether round 1 built step in any Dockerfile: a
// stage round 2's new Dockerfiles share with the old ones.
func ranElsewhere(ran map[string]bool, step string) bool {
	for k := range ran {
		if _, s, _ := strings.Cut(k, " "); s == step {
			return true
		}
	}
	return false
}

// sameImage reports whether b built the image a round 1 build of the
// same Dockerfile built.
func sameImage(t *testing.T, b *builder, r1 []*builder) bool {
	id := imageID(t, b)
	for _, o := range r1 {
		if o.dockerfile == b.dockerfile && imageID(t, o) == id {
			return true
		}
	}
	return false
}

func imageID(t *testing.T, b *builder) string {
	t.Helper()
	for _, l := range strings.Split(b.res.Stderr, "\n") {
		if _, rest, ok := strings.Cut(l, "writing image "); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no image ID in the log of %s", b.dockerfile)
	return ""
}

// journalsOf returns the journal tag each builder's log names for its
// export to ref ("exported cache to REF as TAG: ...").
func journalsOf(t *testing.T, bs []*builder, ref string) map[string]bool {
	t.Helper()
	tags := map[string]bool{}
	for _, b := range bs {
		_, rest, ok := strings.Cut(b.res.Stderr, "exported cache to "+ref+" as ")
		if !ok {
			t.Errorf("%s: no cache export in its log:\n%s", b.dockerfile, b.res.Stderr)
			continue
		}
		tag, _, _ := strings.Cut(rest, ":")
		tags[tag] = true
	}
	return tags
}

// checkNothingLost reads the journal of each export (the builder's own
// records) and checks that an import of the ref sees every record.
func checkNothingLost(t *testing.T, regAddr, ref string, journals map[string]bool) {
	t.Helper()
	ctx := context.Background()
	rc := registry.New(registry.Config{Registries: map[string]registry.Host{regAddr: {Insecure: true}}})
	imported := map[cache.Key]bool{}
	imgs, err := sharedcache.Read(ctx, rc, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		for _, r := range records(t, img) {
			imported[r.Key] = true
		}
	}
	repo := strings.TrimSuffix(ref, ":main")
	exported := map[cache.Key]bool{}
	for tag := range journals {
		d, err := rc.Get(ctx, repo+":"+tag)
		if err != nil {
			t.Fatalf("journal %s: %v", tag, err)
		}
		img, err := d.Image()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range records(t, img) {
			exported[r.Key] = true
			if !imported[r.Key] {
				t.Errorf("record %s of journal %s is missing from the shared cache", r.Key, tag)
			}
		}
	}
	d, err := rc.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := d.Image()
	t.Logf("round 1: %d distinct exports, %d distinct records; an import reads %d images; the ref alone holds %d records",
		len(journals), len(exported), len(imgs), len(records(t, img)))
}

func records(t *testing.T, img v1.Image) []cache.Exported {
	t.Helper()
	exp, err := sharedcache.ExportOf(img)
	if err != nil {
		t.Fatal(err)
	}
	return exp.Records
}

// pushBases makes busybox and golang:1.26 (scripts/make-bases.sh) and
// pushes them to the registry as docker.io's library images, which the
// builders reach through STRATA_REGISTRY_MIRRORS, as a fleet pulls its
// bases from one registry.
func pushBases(t *testing.T, regAddr string) {
	t.Helper()
	store := suite.NewStore(t)
	cmd := exec.Command(filepath.Join(suite.RepoRoot, "scripts", "make-bases.sh"), suite.Bin)
	cmd.Env = suite.Environ("STRATA_ROOT="+store, "TMPDIR="+suite.TempDir(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make-bases.sh: %v\n%s", err, out)
	}
	for _, img := range []string{"busybox:latest", "golang:1.26"} {
		suite.MustRun(t, store, testenv.RunOpts{}, "push", img, regAddr+"/library/"+img)
	}
}

// fleetContext is the build context: the seed example, the Dockerfiles of
// testdata, and testdata/src.
func fleetContext(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(suite.TempDir(t), "ctx")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(suite.RepoRoot, "examples", "seed"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "Dockerfile"), filepath.Join(dir, "seed.Dockerfile")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS("testdata")); err != nil {
		t.Fatal(err)
	}
	return dir
}
