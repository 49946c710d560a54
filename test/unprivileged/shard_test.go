package unprivileged

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestShardScript runs examples/kubernetes/shard.sh as the pods of
// release-job.yaml run it, with every strata it calls in the unprivileged
// container: two shards at once (linux/amd64 and linux/arm64 of the
// cross-compiling seed), one registry cache between them on Debian's
// docker-registry, each image pushed by digest and its NAME@DIGEST
// written where Kubernetes takes the termination message. Then the join
// of release-join-job.yaml makes the index, and a shard run again on a
// fresh store takes its compile from the shared cache.
func TestShardScript(t *testing.T) {
	requireContainer(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain for the golang base image")
	}
	reg := testenv.StartDockerRegistry(t, testenv.RequireTool(t, "docker-registry"), suite.TempDir(t), false)
	bases := filepath.Join(suite.TempDir(t), "bases")
	mb := exec.Command(filepath.Join(suite.RepoRoot, "scripts", "make-bases.sh"), suite.Bin)
	mb.Env = append(os.Environ(), "STRATA_ROOT="+bases, "TMPDIR="+suite.TempDir(t), epoch)
	if out, err := mb.CombinedOutput(); err != nil {
		t.Fatalf("make-bases.sh: %v\n%s", err, out)
	}
	for _, img := range []string{"busybox:latest", "golang:1.26"} {
		suite.MustRun(t, bases, testenv.RunOpts{AsRoot: true}, "push", img, reg.Addr+"/library/"+img)
	}
	if err := testenv.ReleaseStore(bases); err != nil {
		t.Error(err)
	}
	seed := filepath.Join(suite.TempDir(t), "seed")
	if err := os.CopyFS(seed, os.DirFS(filepath.Join(suite.RepoRoot, "examples", "seed"))); err != nil {
		t.Fatal(err)
	}
	repo := reg.Addr + "/team/seed"
	shard := func(index string) (ref, log string) {
		dir := suite.TempDir(t)
		store := filepath.Join(dir, "store")
		bin := filepath.Join(dir, "bin")
		if err := os.Mkdir(bin, 0o755); err != nil {
			t.Error(err)
			return "", ""
		}
		wrapper := suite.Container.Wrapper(t, suite, store, "STRATA_REGISTRY_MIRRORS=docker.io=http://"+reg.Addr, epoch)
		if err := os.Symlink(wrapper, filepath.Join(bin, "strata")); err != nil {
			t.Error(err)
			return "", ""
		}
		termLog := filepath.Join(dir, "termination-log")
		cmd := exec.Command("sh", filepath.Join(suite.RepoRoot, "examples", "kubernetes", "shard.sh"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "TMPDIR="+dir,
			"JOB_COMPLETION_INDEX="+index, "PLATFORMS=linux/amd64 linux/arm64",
			"IMAGE_REPO="+repo, "CACHE_REF="+repo+":buildcache", "CONTEXT="+seed, "TERMINATION_LOG="+termLog)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("shard %s: %v\n%s", index, err, out)
			return "", string(out)
		}
		b, err := os.ReadFile(termLog)
		if err != nil {
			t.Errorf("shard %s wrote no termination message: %v\n%s", index, err, out)
		}
		if err := testenv.ReleaseStore(store); err != nil {
			t.Error(err)
		}
		return strings.TrimSpace(string(b)), string(out)
	}

	refs := make([]string, 2)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refs[i], _ = shard([]string{"0", "1"}[i])
		}()
	}
	wg.Wait()
	t.Logf("two shards at once took %s: %q", time.Since(start).Round(time.Second), refs)
	if t.Failed() {
		return
	}
	for _, ref := range refs {
		if !strings.HasPrefix(ref, repo+"@sha256:") {
			t.Fatalf("termination message %q, want %s@sha256:...", ref, repo)
		}
	}

	// the join, as release-join-job.yaml runs it
	release := repo + ":1.0"
	suite.MustRun(t, suite.NewStore(t), testenv.RunOpts{}, append([]string{"manifest", "create", "--push", "-t", release}, refs...)...)
	r, err := name.ParseReference(release, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("the joined index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range im.Manifests {
		if d.Platform != nil {
			got[d.Platform.Architecture] = repo + "@" + d.Digest.String()
		}
	}
	if got["amd64"] != refs[0] || got["arm64"] != refs[1] || len(im.Manifests) != 2 {
		t.Errorf("the index names %v, want amd64 %s and arm64 %s", got, refs[0], refs[1])
	}

	// a retried shard on a fresh pod: the compile comes from the shared cache
	again, log := shard("1")
	if again != refs[1] {
		t.Errorf("shard 1 again pushed %s, first %s", again, refs[1])
	}
	compiled := false
	for step, status := range testenv.StepStatus(log) {
		if strings.Contains(step, "go build") {
			compiled = true
			if status != "CACHED" {
				t.Errorf("shard 1 on a fresh store: %s ended %s, want CACHED from the shared cache:\n%s", step, status, log)
			}
		}
	}
	if !compiled {
		t.Errorf("no go build step in the log of shard 1:\n%s", log)
	}
}
