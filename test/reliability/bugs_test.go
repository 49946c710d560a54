package reliability

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestBugOrphanedRuncContainer: strata runs `runc run` in its own process
// group and without a parent-death signal, so kill -9 of strata while runc is
// creating a RUN's container leaves runc to finish creating it. The next
// strata command's Reclaim only deletes the containers of the dead sessions
// it finds in run/ at that moment, and then removes run/SESSION: a container
// created a moment later (or missed by `runc list` while being created) is
// never deleted by any later command. This test makes that state directly: a
// running container named for a dead session whose run/ directory is gone.
func TestBugOrphanedRuncContainer(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	startContainer(t, store, "strata-999999-1-1") // the session of a process that is gone
	strata(t, store, "images")
	if ids := testenv.RuncContainers(store); len(ids) > 0 {
		t.Errorf("the next strata command left the dead session's container running: %q", ids)
	}
}

// TestBugReclaimGivesUpWhenRuncListFails: `runc list` fails when a container
// goes away while it lists (another build's RUN ending: "load container X:
// container does not exist"). Reclaim's deleteContainers (internal/cli/root.go)
// then returns without deleting anything and Reclaim removes the dead
// session's directory anyway, so no later command deletes its containers.
// Made deterministic with a runc wrapper whose first `list` fails.
func TestBugReclaimGivesUpWhenRuncListFails(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	dead := "999999-1"
	os.MkdirAll(filepath.Join(store, "run", dead), 0o700)
	startContainer(t, store, "strata-"+dead+"-1")
	real, _ := exec.LookPath("runc")
	bin := suite.TempDir(t)
	flag := filepath.Join(bin, "failed-once")
	script := "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = list ] && [ ! -e " + flag + " ]; then touch " + flag +
		"; echo 'load container x: container does not exist' >&2; exit 1; fi; done\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "runc"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	for range 2 {
		if r := strataRun(t, store, runOpts{Env: env}, "images"); r.Code != 0 {
			t.Fatalf("%s", r)
		}
	}
	if ids := testenv.RuncContainers(store); len(ids) > 0 {
		t.Errorf("after one failed runc list, two strata commands left the dead session's container: %q", ids)
	}
}

// startContainer runs a detached runc container (sleep 60) named id in
// store's runc state directory, deleted at the end of the test.
func startContainer(t *testing.T, store, id string) {
	t.Helper()
	bundle := suite.TempDir(t)
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": 0, "gid": 0},
			"args": []string{"/bin/sleep", "60"}, "cwd": "/", "env": []string{testenv.ImagePATH},
		},
		"root":     map[string]any{"path": suite.BusyboxRoot, "readonly": true},
		"hostname": "orphan",
		"mounts":   []map[string]any{{"destination": "/proc", "type": "proc", "source": "proc"}},
		"linux": map[string]any{
			"namespaces": []map[string]any{{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}},
		},
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(store, "runc")
	// The container inherits runc's stdio: a file, not a pipe that would
	// keep the test waiting for the container.
	out, err := os.Create(filepath.Join(bundle, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("runc", "--root", state, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("runc run: %v\n%s", err, b)
	}
	t.Cleanup(func() { exec.Command("runc", "--root", state, "delete", "--force", id).Run() })
}

// TestBugTempFilesOfKilledProcess: temp files of a strata process that was
// killed (a half-written layer blob in tmp/) stay for StaleTempAge (24 h):
// Reclaim cannot tell them from a running process's, as tmp/ names carry no
// owner. A killed commit of a 1 GB layer leaves 1 GB for a day. (strata fsck
// --repair removes them when the store is idle.)
func TestBugTempFilesOfKilledProcess(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 32m /dev/urandom > /big\n"})
	s := suite.Start(t, store, runOpts{}, "build", ctxDir)
	if !s.WaitFor(t, "the layer commit", time.Minute, func() bool {
		ents, _ := os.ReadDir(filepath.Join(store, "tmp"))
		for _, e := range ents {
			if strings.Contains(e.Name(), "blob-") {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the build ended before its commit:\n%s", s.Output())
	}
	s.Signal(t, syscall.SIGKILL, 30*time.Second)
	strata(t, store, "images")
	if tmp := tempFiles(store); len(tmp) > 0 {
		t.Errorf("the next strata command left the killed process's temp files: %q", tmp)
	}
}

// TestBugTruncatedBodyNotRetried: a registry response whose body is cut off
// (the connection drops after half the blob) fails the pull at once with
// "unexpected EOF": go-containerregistry's retrying transport retries
// requests, not the reading of bodies, and strata's Import does not retry
// the blob either. One dropped connection fails a pull that a second
// request would complete.
func TestBugTruncatedBodyNotRetried(t *testing.T) {
	reg := testenv.StartRegistry(t, nil)
	src := suite.NewBusyboxStore(t)
	strata(t, src, "push", "busybox", reg+"/base:1")
	px := startProxy(t, reg)
	px.setPlan(onFirst(truncate, blobGET))
	store := suite.NewStore(t)
	r := strataRun(t, store, runOpts{}, "pull", px.addr+"/base:1")
	if r.Code != 0 {
		t.Errorf("one truncated body per blob failed the pull:\n%s\nproxy log:\n%s", r, testenv.Indent(px.Log()))
	}
}

// TestBugDockerfileSymlinkOutsideContext: a build context whose Dockerfile
// is a symlink to a file outside the context makes strata read that file
// (COPY refuses such symlinks; docker build says "the Dockerfile must be
// within the build context"), and the parse error prints its first line:
// a context from someone else (a cloned repository built as root) can make
// strata show e.g. a line of /etc/shadow in the build log.
func TestBugDockerfileSymlinkOutsideContext(t *testing.T) {
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	ctx := g.ctxDir(t, nil)
	if err := os.Symlink(filepath.Join(g.outside, "canary.txt"), filepath.Join(ctx, "Dockerfile")); err != nil {
		t.Fatal(err)
	}
	r := strataRun(t, g.store, runOpts{}, "build", ctx)
	if strings.Contains(r.Stdout+r.Stderr, g.marker) {
		t.Errorf("strata read a Dockerfile symlinked to outside the context and printed it:\n%s", r)
	}
	if r.Code == 0 {
		t.Errorf("the build succeeded")
	}
}

// TestBugCopyThroughAbsoluteSymlink: COPY x /out/x where the image's /out is
// a symlink to an absolute path whose directories do not exist in the image
// fails ("create /out: mkdir ROOTFS/abs/path: no such file or directory"):
// strata resolves the link inside the rootfs (safe) but then makes only the
// last directory, not its parents; BuildKit creates them (the same COPY
// through a relative symlink to the same place works).
func TestBugCopyThroughAbsoluteSymlink(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	bbBlob, _ := busyboxLayer(t, store)
	links := tarBytes(t, []tent{tsymlink("out", "/a/b/c")})
	arch := dockerArchive(t, "links:1", [][]byte{gunzip(t, bbBlob), links}, nil, nil)
	p := filepath.Join(suite.TempDir(t), "links.tar")
	os.WriteFile(p, arch, 0o644)
	strata(t, store, "load", "-i", p)
	ctx := suite.WriteFiles(t, map[string]string{"x": "x\n", "Dockerfile": "FROM links:1\nCOPY x /out/x\n"})
	r := strataRun(t, store, runOpts{}, "build", "-t", "copied", ctx)
	if r.Code != 0 {
		t.Fatalf("COPY through the symlink failed:\n%s", r)
	}
	if got := imageFiles(t, store, "docker.io/library/copied:latest")["a/b/c/x"].content; got != "x\n" {
		t.Errorf("/a/b/c/x = %q", got)
	}
}
