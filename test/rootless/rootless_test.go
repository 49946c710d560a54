package rootless

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/user"

	"github.com/strata-build/strata/test/internal/testenv"
)

const epoch = "SOURCE_DATE_EPOCH=1577836800"

func requireUser(t *testing.T) {
	t.Helper()
	suite.RequireBuild(t)
	if suite.User == nil {
		t.Skip("no test user")
	}
}

func TestVersionSaysRootless(t *testing.T) {
	requireUser(t)
	r := suite.MustRun(t, "", testenv.RunOpts{}, "version")
	want := fmt.Sprintf("isolation: rootless (user namespace, uids 0→%d, 1…", suite.User.UID)
	if !strings.Contains(r.Stdout, want) {
		t.Errorf("strata version as %s does not say %q:\n%s", suite.User.Name, want, r)
	}
	r = suite.MustRun(t, "", testenv.RunOpts{AsRoot: true}, "version")
	if !strings.Contains(r.Stdout, "isolation: rootful") {
		t.Errorf("strata version as root does not say rootful:\n%s", r)
	}
}

// featuresDockerfile uses what rootless mode must get right: owners set by
// chown in RUN, USER 1000, a WORKDIR made for that user, a cache mount,
// hard links, a whiteout and an opaque directory.
const featuresDockerfile = `FROM busybox
RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count
RUN mkdir -p /data/sub /data/gone/deep && echo hi > /data/sub/f && chown -R 1000:1000 /data && chown 1234:5678 /data/sub/f && ln /data/sub/f /data/hard && chmod 4755 /data/sub/f
RUN rm -rf /data/gone && mkdir /data/gone && echo new > /data/gone/x && rm /bin/vi
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group
USER 1000
WORKDIR /home/app/work
RUN id -u > mine && touch /tmp/app-file
USER 0:0
`

// rootfulStore is a store of root's holding busybox:latest imported as in
// the rootless stores (same tree, same time).
func rootfulStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "busybox-rootfs") // the name is in the import's history
	if err := testenv.MakeBasesRoot(root, suite.Busybox); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	suite.MustRun(t, store, testenv.RunOpts{AsRoot: true, Env: []string{epoch}}, testenv.ImportArgs(root, "busybox:latest", testenv.ImagePATH)...)
	t.Cleanup(func() {
		if err := testenv.ReleaseStore(store); err != nil {
			t.Errorf("rootful store: %v", err)
		}
	})
	return store
}

// buildOCI builds ctx in store (as the user, or as root) into an OCI
// archive and reads it back.
func buildOCI(t *testing.T, store, ctx string, asRoot bool, extra ...string) (testenv.Image, string) {
	t.Helper()
	out := filepath.Join(suite.TempDir(t), "out.tar")
	args := append([]string{"build", "--output", "type=oci,dest=" + out}, extra...)
	suite.MustRun(t, store, testenv.RunOpts{AsRoot: asRoot, Env: []string{epoch}}, append(args, ctx)...)
	img := testenv.ReadOCIArchive(t, out)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return img, d.String()
}

func TestSameImagesAsRootful(t *testing.T) {
	requireUser(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": featuresDockerfile})
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store, epoch)
	rootImg, rootDigest := buildOCI(t, rootfulStore(t), ctx, true)
	img, digest := buildOCI(t, store, ctx, false)
	if digest != rootDigest {
		t.Errorf("rootless image %s differs from the rootful one %s", digest, rootDigest)
		compareLayers(t, rootImg, img)
	}
	want := map[string][2]int{ // owners as the Dockerfile set them, never the user's uid
		"data/sub/f":             {1234, 5678},
		"data/hard":              {1234, 5678},
		"data/":                  {1000, 1000},
		"home/app/work/mine":     {1000, 1000},
		"tmp/app-file":           {1000, 1000},
		"home/app/work/":         {1000, 1000},
		"data/gone/.wh..wh..opq": {0, 0},
	}
	seen := map[string]bool{}
	for _, layer := range img.Layers {
		for _, h := range layer {
			if w, ok := want[h.Name]; ok {
				seen[h.Name] = true
				if h.Uid != w[0] || h.Gid != w[1] {
					t.Errorf("%s: owner %d:%d, want %d:%d", h.Name, h.Uid, h.Gid, w[0], w[1])
				}
			}
			if h.Uid == suite.User.UID && h.Uid != 0 {
				t.Errorf("%s belongs to the building user's uid %d", h.Name, h.Uid)
			}
			if h.Name == "data/sub/f" && h.Mode&0o4000 == 0 {
				t.Errorf("data/sub/f lost its setuid bit: %o", h.Mode)
			}
		}
	}
	for n := range want {
		if !seen[n] {
			t.Errorf("no %s in the image's layers", n)
		}
	}
	// The cache mount keeps its contents across builds (rootless too).
	suite.MustRun(t, store, testenv.RunOpts{Env: []string{epoch}}, "build", "--no-cache", "-t", "features", ctx)
	r := suite.MustRun(t, store, testenv.RunOpts{}, "run", "features", "cat", "/cache-count")
	if strings.TrimSpace(r.Stdout) != "2" {
		t.Errorf("cache mount: second build counted %q runs, want 2:\n%s", r.Stdout, r)
	}
	checkStoreOwners(t, store)
	r = suite.MustRun(t, store, testenv.RunOpts{}, "fsck", "--deep")
	if !strings.Contains(r.Stdout, ": 0 problems") {
		t.Errorf("fsck --deep of a rootless store with an opaque directory:\n%s", r)
	}
}

// compareLayers reports which layers of two images differ, and how.
func compareLayers(t *testing.T, want, got testenv.Image) {
	t.Helper()
	wd, _ := want.Image.ConfigFile()
	gd, _ := got.Image.ConfigFile()
	if wd != nil && gd != nil {
		for i := range min(len(wd.RootFS.DiffIDs), len(gd.RootFS.DiffIDs)) {
			if wd.RootFS.DiffIDs[i] != gd.RootFS.DiffIDs[i] {
				t.Errorf("layer %d: diffID %s, rootful %s", i+1, gd.RootFS.DiffIDs[i], wd.RootFS.DiffIDs[i])
			}
		}
		if fmt.Sprint(wd.History) != fmt.Sprint(gd.History) || fmt.Sprint(wd.Config) != fmt.Sprint(gd.Config) {
			t.Errorf("configs differ:\nrootful  %+v %+v\nrootless %+v %+v", wd.Config, wd.History, gd.Config, gd.History)
		}
	}
	if len(want.Layers) != len(got.Layers) {
		t.Errorf("%d layers, want %d", len(got.Layers), len(want.Layers))
		return
	}
	for i := range want.Layers {
		a, b := headerLines(want.Layers[i]), headerLines(got.Layers[i])
		if a != b {
			t.Errorf("layer %d differs:\nrootful:\n%s\nrootless:\n%s", i+1, a, b)
		}
	}
}

func headerLines(hs []tar.Header) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "  %s %c %o %d:%d %d %s\n", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size, h.Linkname)
	}
	return b.String()
}

// checkStoreOwners fails when a file in store belongs to a uid or gid the
// user does not own: its own, or one of its subordinate ranges.
func checkStoreOwners(t *testing.T, store string) {
	t.Helper()
	u := suite.User
	subU, _ := user.ParseSubIDFileFilter("/etc/subuid", func(s user.SubID) bool { return s.Name == u.Name })
	subG, _ := user.ParseSubIDFileFilter("/etc/subgid", func(s user.SubID) bool { return s.Name == u.Name })
	owned := func(id uint32, own int, subs []user.SubID) bool {
		if int(id) == own {
			return true
		}
		for _, s := range subs {
			if int64(id) >= s.SubID && int64(id) < s.SubID+s.Count {
				return true
			}
		}
		return false
	}
	bad := 0
	filepath.Walk(store, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !owned(st.Uid, u.UID, subU) || !owned(st.Gid, u.GID, subG) {
			if bad++; bad <= 10 {
				t.Errorf("%s belongs to %d:%d, not to %s or its subordinate ids", p, st.Uid, st.Gid, u.Name)
			}
		}
		return nil
	})
}

// TestKillLeavesNothing SIGKILLs a rootless build while its RUN runs: the
// RUN's processes die with it, nothing stays mounted anywhere, and the next
// build and fsck find a clean store.
func TestKillLeavesNothing(t *testing.T) {
	requireUser(t)
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store)
	mark := "STRATA_KILL_MARK=" + strconv.Itoa(os.Getpid())
	cmd := startRun(t, store, mark, "sleep 600 & sleep 600", 2)
	cmd.Process.Kill() // the outer strata, as a user's kill -9 would
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := testenv.ProcessesWithEnv(mark)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RUN processes outlived the killed build: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := mountsAnywhere(store); len(m) > 0 {
		t.Errorf("mounts of the store left in some mount namespace: %v", m)
	}
	ok := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo fine > /ok\n"})
	suite.MustRun(t, store, testenv.RunOpts{}, "build", ok)
	r := suite.MustRun(t, store, testenv.RunOpts{}, "fsck")
	if !strings.Contains(r.Stdout, ": 0 problems") {
		t.Errorf("fsck after the killed build:\n%s", r)
	}
}

// mountsAnywhere lists mount points below dir in the mount namespace of
// any process on the machine.
func mountsAnywhere(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	seen := map[string]bool{}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt"))
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		f, err := os.Open(filepath.Join("/proc", e.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
				out = append(out, fmt.Sprintf("%s (pid %s)", fields[4], e.Name()))
			}
		}
		f.Close()
	}
	return out
}

// TestNoSubordinateRange: a user without /etc/subuid range gets one line
// that says so and how to fix it, exit code 1, and no store.
func TestNoSubordinateRange(t *testing.T) {
	suite.RequireBuild(t)
	home := filepath.Join(suite.TempDir(t), "home")
	u, err := testenv.NewTestUser(fmt.Sprintf("%snosub-%d", testenv.UserPrefix, os.Getpid()), home, "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Remove()
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"})
	cmd := u.Command(suite.Bin, "build", ctx)
	cmd.Env = append(cmd.Env, "STRATA_ROOT=")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("strata build as %s: %v (want exit code 1):\n%s", u.Name, err, out)
	}
	msg := strings.TrimSpace(string(out))
	for _, want := range []string{"user " + u.Name + " has no range in /etc/subuid", "usermod --add-subuids"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n"); n > 0 {
		t.Errorf("error takes %d lines, want one:\n%s", n+1, msg)
	}
	if _, err := os.Stat(filepath.Join(home, ".local", "share", "strata")); !os.IsNotExist(err) {
		t.Errorf("a store was made for a user who cannot build: %v", err)
	}
}

// TestSeedSameAsRootful: the README's main job (scripts/make-bases.sh,
// then the seed example) gives the same image as an ordinary user as it
// gives as root.
func TestSeedSameAsRootful(t *testing.T) {
	requireUser(t)
	if _, err := exec.LookPath("go"); err != nil {
		if _, err := os.Stat("/usr/local/go/bin/go"); err != nil {
			t.Skip("no Go toolchain for the golang base image")
		}
	}
	seed := filepath.Join(suite.RepoRoot, "examples", "seed")
	bases := filepath.Join(suite.RepoRoot, "scripts", "make-bases.sh")
	digests := map[bool]string{}
	for _, asRoot := range []bool{true, false} {
		store := filepath.Join(suite.TempDir(t), "store")
		var cmd *exec.Cmd
		if asRoot {
			cmd = exec.Command(bases, suite.Bin)
			cmd.Env = os.Environ()
		} else {
			cmd = suite.User.Command(bases, suite.Bin)
		}
		cmd.Env = append(cmd.Env, "STRATA_ROOT="+store, epoch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make-bases.sh (root %v): %v\n%s", asRoot, err, out)
		}
		_, digests[asRoot] = buildOCI(t, store, seed, asRoot)
		if !asRoot {
			r := suite.MustRun(t, store, testenv.RunOpts{Env: []string{epoch}}, "build", "-t", "seed", seed)
			if r = suite.MustRun(t, store, testenv.RunOpts{}, "run", "seed", "version"); !strings.HasPrefix(r.Stdout, "server ") {
				t.Errorf("strata run seed version as %s:\n%s", suite.User.Name, r)
			}
			checkStoreOwners(t, store)
		}
		testenv.ReleaseStore(store)
	}
	if digests[true] != digests[false] {
		t.Errorf("seed image: rootless %s, rootful %s", digests[false], digests[true])
	}
}

// TestUnshareRemovesStore: a rootless store holds files of the user's
// subordinate uids, which the user cannot remove; strata unshare can.
func TestUnshareRemovesStore(t *testing.T) {
	requireUser(t)
	store := filepath.Join(suite.TempDir(t), "store")
	suite.ImportBusybox(t, store)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN mkdir -p /d && chown 1000:1000 /d && touch /d/f\n"})
	suite.MustRun(t, store, testenv.RunOpts{}, "build", ctx)
	if out, err := suite.User.Command("rm", "-rf", store).CombinedOutput(); err == nil {
		t.Logf("plain rm -rf of the store worked (no subordinate-uid files?): %s", out)
	}
	suite.MustRun(t, "", testenv.RunOpts{}, "unshare", "rm", "-rf", store)
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("store still there after strata unshare rm -rf: %v", err)
	}
	r := suite.Run("", testenv.RunOpts{}, "unshare", "sh", "-c", "exit 7")
	if r.Code != 7 {
		t.Errorf("strata unshare sh -c 'exit 7': exit code %d, want 7:\n%s", r.Code, r)
	}
}

// TestSignalStopsBuild: SIGTERM to the strata the user started (the outer
// one) reaches the inner strata once; the build stops as a rootful one
// does (exit 143) and leaves nothing behind.
func TestSignalStopsBuild(t *testing.T) {
	requireUser(t)
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store)
	mark := "STRATA_TERM_MARK=" + strconv.Itoa(os.Getpid())
	cmd := startRun(t, store, mark, "sleep 600", 1)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 143 {
		t.Errorf("strata build after SIGTERM: %v, want exit code 143", err)
	}
	if left := testenv.ProcessesWithEnv(mark); len(left) > 0 {
		t.Errorf("RUN processes left: %v", left)
	}
	if left := testenv.Leftovers(store); len(left) > 0 {
		t.Errorf("left in the store: %v", left)
	}
}

// TestStoreKeepsItsMode: a rootless store's layers mark opaque directories
// with user.* xattrs, which a rootful overlay does not read: root using it
// gets an error that says so, not wrong files.
func TestStoreKeepsItsMode(t *testing.T) {
	requireUser(t)
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store)
	r := suite.Run(store, testenv.RunOpts{AsRoot: true}, "images")
	if r.Code != 1 || !strings.Contains(r.Stderr, "was made by strata in rootless or chroot isolation") {
		t.Errorf("root using a rootless store: want exit 1 and the mode named:\n%s", r)
	}
}

// startRun starts a rootless build in store whose RUN is script, with
// mark (KEY=VALUE) in its environment, and returns once n processes with
// the mark run. The build is killed when the test ends.
func startRun(t *testing.T, store, mark, script string, n int) *exec.Cmd {
	t.Helper()
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nENV " + mark + "\nRUN " + script + "\n"})
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := suite.Command(cctx, store, testenv.RunOpts{}, "build", ctx)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(testenv.ProcessesWithEnv(mark)) < n {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the RUN's %d processes never started", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd
}
