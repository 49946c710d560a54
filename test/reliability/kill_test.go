package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// started is a strata process the test will interrupt.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *testenv.SyncBuffer
	done           chan struct{}
	waitErr        error
	start          time.Time
}

// startStrata starts `strata --root store args...` in the background. It is
// killed at the end of the test if still running.
func startStrata(t *testing.T, store string, o runOpts, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := strataCmd(ctx, store, o, args...)
	s := &started{cmd: cmd, stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	s.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { s.waitErr = cmd.Wait(); cancel(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *started) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *started) output() string {
	return fmt.Sprintf("--- stdout ---\n%s\n--- stderr ---\n%s", indent(s.stdout.String()), indent(s.stderr.String()))
}

// waitFor polls cond until it holds (true), the process exits (false) or
// timeout passes (fatal).
func (s *started) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if s.exited() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s:\n%s", what, timeout, s.output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// signal sends sig and waits for the exit; false when it had exited before.
func (s *started) signal(t *testing.T, sig syscall.Signal) bool {
	t.Helper()
	if s.exited() {
		return false
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return false
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("strata did not exit within 30s of %s:\n%s", sig, s.output())
	}
	return true
}

// afterKill checks the store after strata was killed: the next command
// releases what the dead process left (mounts, runc containers, sessions,
// the RUN's processes), the tagged images are whole, and fsck is clean.
func afterKill(t *testing.T, store, marker string) {
	t.Helper()
	left := leftovers(store)
	r := strataRun(t, store, runOpts{}, "images")
	if r.code != 0 {
		t.Fatalf("the first command after the kill failed:\n%s", r)
	}
	// A container the killed build's orphaned `runc run` was still creating
	// may appear after the next command's reclaim (TestBugOrphanedRuncContainer):
	// tolerated here, found and removed by strata fsck below.
	tolerate := []string{"temp"}
	if ids := testenv.RuncContainers(store); len(ids) > 0 {
		time.Sleep(2 * time.Second) // a container that is only being deleted
		if ids = testenv.RuncContainers(store); len(ids) > 0 && onlyDeadSessions(store, ids) {
			t.Logf("BUG: runc containers of the killed process survived the next command: %q", ids)
			tolerate = append(tolerate, "container")
		}
	}
	if tolerate[len(tolerate)-1] != "container" {
		requireNoLeftovers(t, store, fmt.Sprintf("after kill -9 (it left %d things) and `strata images`", len(left)))
	}
	if marker != "" {
		deadline := time.Now().Add(10 * time.Second)
		for len(testenv.ProcessesWithEnv(marker)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if p := testenv.ProcessesWithEnv(marker); len(p) > 0 {
			t.Errorf("the killed build's RUN processes still run after the next command: %q", p)
		}
	}
	imgs := requireWholeImages(t, store)
	for name := range imgs {
		short := strings.TrimPrefix(strings.TrimPrefix(name, "docker.io/library/"), "docker.io/")
		repo, _, _ := strings.Cut(short, ":")
		if i := strings.LastIndex(short, ":"); i > 0 {
			repo = short[:i]
		}
		if !strings.Contains(r.stdout, repo) {
			t.Errorf("strata images does not list the tagged image %s:\n%s", name, r)
		}
	}
	requireFsckClean(t, store, tolerate...)
	requireNoLeftovers(t, store, "after strata fsck --repair")
}

// onlyDeadSessions reports whether every container id is strata's, of a
// session whose process is gone and whose run/ directory is gone too.
func onlyDeadSessions(store string, ids []string) bool {
	for _, id := range ids {
		rest, ok := strings.CutPrefix(id, "strata-")
		parts := strings.SplitN(rest, "-", 3)
		if !ok || len(parts) < 3 {
			return false
		}
		if _, err := os.Stat(filepath.Join(store, "run", parts[0]+"-"+parts[1])); err == nil {
			return false
		}
		if _, err := os.Stat("/proc/" + parts[0]); err == nil {
			if b, _ := os.ReadFile("/proc/" + parts[0] + "/comm"); strings.HasPrefix(string(b), "strata") {
				return false
			}
		}
	}
	return true
}

func killIterations() int { return killsPerRun }

// TestKillDuringRun kills strata build (SIGKILL) at random points: while a
// RUN's container runs, or at a random time from the start (unpacking the
// base, setting up the container, committing).
func TestKillDuringRun(t *testing.T) {
	t.Parallel()
	store := newBusyboxStore(t)
	for i := range killIterations() {
		marker := fmt.Sprintf("RELIABILITY_KILL_RUN=%d-%d-%d", os.Getpid(), time.Now().UnixNano(), i)
		ctxDir := writeFiles(t, map[string]string{
			"Dockerfile": fmt.Sprintf("FROM busybox\nENV %s\nRUN echo one > /one\nRUN echo %d > /two && sleep 30\n", marker, i),
		})
		s := startStrata(t, store, runOpts{}, "build", "--progress", "plain", ctxDir)
		var when string
		if i%2 == 0 {
			if !s.waitFor(t, "the RUN container", time.Minute, func() bool { return len(testenv.ProcessesWithEnv(marker)) > 0 }) {
				t.Fatalf("build exited before its RUN ran:\n%s", s.output())
			}
			d := randDuration(0, 300*time.Millisecond)
			time.Sleep(d)
			when = fmt.Sprintf("%s into the RUN", d)
		} else {
			d := randDuration(0, 900*time.Millisecond)
			time.Sleep(time.Until(s.start.Add(d)))
			when = fmt.Sprintf("%s after the start", d)
		}
		if !s.signal(t, syscall.SIGKILL) {
			t.Fatalf("iteration %d: the build ended before the kill:\n%s", i, s.output())
		}
		t.Logf("iteration %d: killed %s", i, when)
		afterKill(t, store, marker)
		done := writeFiles(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN echo done-%d > /done\n", i)})
		strata(t, store, "build", "-t", "after-kill", done)
		if got := imageFiles(t, store, "docker.io/library/after-kill:latest")["done"].content; got != fmt.Sprintf("done-%d\n", i) {
			t.Errorf("iteration %d: the build after the kill made /done = %q", i, got)
		}
		if t.Failed() {
			return
		}
		killsSurvived.Add(1)
	}
}

// TestKillDuringCommit kills strata while it commits a RUN's big file as a
// layer (compressing it into tmp/, renaming the blob and the layer into place).
func TestKillDuringCommit(t *testing.T) {
	t.Parallel()
	store := newBusyboxStore(t)
	blobTemp := func() bool {
		ents, _ := os.ReadDir(filepath.Join(store, "tmp"))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "blob-") {
				return true
			}
		}
		return false
	}
	// How long a commit takes here (from its temp blob to the end of the
	// build): the kills land at random within it.
	var commit time.Duration
	for i := -1; i < killIterations(); i++ {
		df := fmt.Sprintf("FROM busybox\nRUN head -c 48m /dev/urandom > /big-%d\n", i)
		ctxDir := writeFiles(t, map[string]string{"Dockerfile": df})
		s := startStrata(t, store, runOpts{}, "build", "--progress", "plain", "-t", "big", ctxDir)
		if !s.waitFor(t, "the layer commit (tmp/blob-*)", time.Minute, blobTemp) {
			t.Logf("iteration %d: the build ended before the commit was seen; killing nothing", i)
			continue
		}
		if i < 0 {
			seen := time.Now()
			<-s.done
			commit = time.Since(seen)
			t.Logf("a commit of 48 MB takes %s", commit.Round(time.Millisecond))
			continue
		}
		d := randDuration(0, commit)
		time.Sleep(d)
		killed := s.signal(t, syscall.SIGKILL)
		if !killed {
			t.Logf("iteration %d: the build ended %s into the commit, before the kill", i, d)
		} else {
			t.Logf("iteration %d: killed %s into the commit", i, d)
		}
		afterKill(t, store, "")
		// The same build again: it completes (from the cache when the commit had).
		strata(t, store, "build", "-t", "big", ctxDir)
		files := imageFiles(t, store, "docker.io/library/big:latest")
		if e, ok := files[fmt.Sprintf("big-%d", i)]; !ok || len(e.content) != 1<<20 {
			t.Errorf("iteration %d: /big-%d missing or short in the image after the kill", i, i)
		}
		if t.Failed() {
			return
		}
		if killed {
			killsSurvived.Add(1)
		}
	}
}

// bigImage builds an image with two random 8 MB layers in a scratch store
// and pushes it to addr as big:1.
func pushBigImage(t *testing.T, addr string) {
	t.Helper()
	store := newBusyboxStore(t)
	ctxDir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 8m /dev/urandom > /r1\nRUN head -c 8m /dev/urandom > /r2\n"})
	strata(t, store, "build", "-t", "big", ctxDir)
	strata(t, store, "push", "big", addr+"/big:1")
}

// TestKillDuringPull kills strata build at random points while it pulls its
// base image (16 MB, throttled to about 24 MB/s) from Debian's
// docker-registry (the in-process registry when that is not installed).
func TestKillDuringPull(t *testing.T) {
	t.Parallel()
	requireEnv(t)
	reg := startDockerRegistry(t)
	if reg == "" {
		t.Log("docker-registry is not installed: using the in-process registry")
		reg = startRegistry(t, nil)
	}
	pushBigImage(t, reg)
	px := startProxy(t, reg)
	px.bytesPerSec.Store(24 << 20)
	for i := range killIterations() {
		store := newStore(t, "")
		ctxDir := writeFiles(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM %s/big:1\nRUN echo pulled-%d > /p\n", px.addr, i)})
		s := startStrata(t, store, runOpts{}, "build", "--progress", "plain", "-t", "pulled", ctxDir)
		d := randDuration(50*time.Millisecond, 900*time.Millisecond)
		time.Sleep(time.Until(s.start.Add(d)))
		killed := s.signal(t, syscall.SIGKILL)
		if !killed {
			t.Logf("iteration %d: the build ended before the kill at %s", i, d)
		} else {
			t.Logf("iteration %d: killed %s after the start", i, d)
		}
		afterKill(t, store, "")
		strata(t, store, "build", "-t", "pulled", ctxDir)
		files := imageFiles(t, store, "docker.io/library/pulled:latest")
		if files["p"].content != fmt.Sprintf("pulled-%d\n", i) || len(files["r1"].content) != 1<<20 || len(files["r2"].content) != 1<<20 {
			t.Errorf("iteration %d: the image built after the kill lacks /p, /r1 or /r2", i)
		}
		if t.Failed() {
			return
		}
		if killed {
			killsSurvived.Add(1)
		}
	}
}

// TestKillDuringPush kills strata build --push at random points of the push
// (throttled to about 8 MB/s) to the in-process registry; the next push
// must succeed and the registry must hold the whole image.
func TestKillDuringPush(t *testing.T) {
	t.Parallel()
	store := newBusyboxStore(t)
	reg := startRegistry(t, nil)
	px := startProxy(t, reg)
	px.bytesPerSec.Store(8 << 20)
	var push time.Duration // how long a push takes: the kills land within it
	for i := -1; i < killIterations(); i++ {
		ref := fmt.Sprintf("%s/pushed:%d", px.addr, i)
		ctxDir := writeFiles(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN head -c 6m /dev/urandom > /r-%d\n", i)})
		s := startStrata(t, store, runOpts{}, "build", "--progress", "plain", "-t", ref, "--push", ctxDir)
		pushing := func() bool { return strings.Contains(strings.ToLower(s.stderr.String()+s.stdout.String()), "push") }
		if !s.waitFor(t, "the push", time.Minute, pushing) {
			t.Fatalf("iteration %d: the build ended before it pushed:\n%s", i, s.output())
		}
		if i < 0 {
			seen := time.Now()
			<-s.done
			push = time.Since(seen)
			t.Logf("a push of 7 MB takes %s", push.Round(time.Millisecond))
			continue
		}
		d := randDuration(0, push)
		time.Sleep(d)
		killed := s.signal(t, syscall.SIGKILL)
		if !killed {
			t.Logf("iteration %d: the push ended before the kill (%s)", i, d)
		} else {
			t.Logf("iteration %d: killed %s into the push", i, d)
		}
		afterKill(t, store, "")
		strata(t, store, "build", "-t", ref, "--push", ctxDir)
		verifyRemoteImage(t, reg, "pushed", fmt.Sprint(i), fmt.Sprintf("r-%d", i))
		if t.Failed() {
			return
		}
		if killed {
			killsSurvived.Add(1)
		}
	}
}

// verifyRemoteImage fetches repo:tag from the registry at addr (directly) and
// checks the manifest, config and every layer against their digests, and
// that some layer holds file.
func verifyRemoteImage(t *testing.T, addr, repo, tag, file string) {
	t.Helper()
	get := func(p, accept string) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/"+repo+"/"+p, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("registry GET %s: %s", p, resp.Status)
		}
		return b
	}
	raw := get("manifests/"+tag, "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("registry manifest %s:%s: %v", repo, tag, err)
	}
	if b := get("blobs/"+m.Config.Digest, ""); sha(b) != m.Config.Digest {
		corruptions.Add(1)
		t.Errorf("CORRUPTION: registry config blob does not match its digest")
	}
	found := false
	for _, l := range m.Layers {
		b := get("blobs/"+l.Digest, "")
		if sha(b) != l.Digest {
			corruptions.Add(1)
			t.Errorf("CORRUPTION: registry layer %s does not match its digest", l.Digest)
			continue
		}
		if _, ok := layerFiles(t, b)[file]; ok {
			found = true
		}
	}
	if !found {
		t.Errorf("the pushed image %s:%s has no layer with /%s", repo, tag, file)
	}
}
