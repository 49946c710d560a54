package unprivileged

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

const epoch = "SOURCE_DATE_EPOCH=1577836800"

func requireContainer(t *testing.T) {
	t.Helper()
	suite.RequireBuild(t)
	if suite.Container == nil {
		t.Skip("no container")
	}
}

func TestInfoSaysChroot(t *testing.T) {
	requireContainer(t)
	r := suite.MustRun(t, "", testenv.RunOpts{}, "info")
	for _, want := range []string{"isolation: chroot", "snapshotter: native", "RUN network: host"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("strata info in the container does not say %q:\n%s", want, r)
		}
	}
}

// TestSeed: the README's main job, scripts/make-bases.sh and the seed
// example, in the container, gives the image a rootful build gives, and
// runs there. The go command finds its GOROOT through /proc/self/exe,
// which a chroot has only through procview (the official golang images do
// not set GOROOT).
func TestSeed(t *testing.T) {
	requireContainer(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain for the golang base image")
	}
	// the container sees the work folder only
	seed := filepath.Join(suite.TempDir(t), "seed")
	if err := os.CopyFS(seed, os.DirFS(filepath.Join(suite.RepoRoot, "examples", "seed"))); err != nil {
		t.Fatal(err)
	}
	bases := filepath.Join(suite.RepoRoot, "scripts", "make-bases.sh")
	digests := map[bool]string{}
	for _, inside := range []bool{false, true} {
		dir := suite.TempDir(t)
		store := filepath.Join(dir, "store")
		strata := suite.Bin
		if inside {
			// make-bases.sh runs on the host (it needs bash) but every
			// strata it calls runs in the container
			strata = suite.Container.Wrapper(t, suite, store)
		}
		cmd := exec.Command(bases, strata)
		cmd.Env = append(os.Environ(), "STRATA_ROOT="+store, "TMPDIR="+dir, epoch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make-bases.sh (in the container: %v): %v\n%s", inside, err, out)
		}
		out := filepath.Join(dir, "seed.tar")
		suite.MustRun(t, store, testenv.RunOpts{AsRoot: !inside, Env: []string{epoch}}, "build", "-t", "seed", "--output", "type=oci,dest="+out, seed)
		img := testenv.ReadOCIArchive(t, out)
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests[inside] = d.String()
		if inside {
			r := suite.MustRun(t, store, testenv.RunOpts{}, "run", "seed", "version")
			if !strings.HasPrefix(r.Stdout, "server ") {
				t.Errorf("strata run seed version in the container:\n%s", r)
			}
		}
		if err := testenv.ReleaseStore(store); err != nil {
			t.Error(err)
		}
	}
	if digests[true] != digests[false] {
		t.Errorf("seed image: in the container %s, rootful on the host %s", digests[true], digests[false])
	}
}

// TestProc: under the container's seccomp profile, a RUN finds itself in
// /proc, lists the container's processes (ps), reads /sys and opens
// /dev/stdout, as root and as a user, and the layer holds only what the
// RUN wrote.
func TestProc(t *testing.T) {
	requireContainer(t)
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store)
	df := "FROM busybox\n" +
		"RUN readlink /proc/self/exe >/root.txt && ps -o comm | grep -c '^ps$' >>/root.txt && test -d /sys/kernel && echo hi >/dev/stdout\n" +
		"USER 65534\n" +
		"RUN readlink /proc/self/exe >/tmp/user.txt && echo hi >/dev/fd/1\n" +
		"FROM scratch\nCOPY --from=0 /root.txt /tmp/user.txt /\n"
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": df})
	dest := filepath.Join(suite.TempDir(t), "out")
	suite.MustRun(t, store, testenv.RunOpts{}, "build", "--output", "type=local,dest="+dest, ctx)
	for name, want := range map[string]string{"root.txt": "/bin/busybox\n1\n", "user.txt": "/bin/busybox\n"} {
		b, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	r := suite.MustRun(t, store, testenv.RunOpts{}, "build", "--progress", "plain", "--no-cache", "-f", filepath.Join(ctx, "Dockerfile"), ctx)
	if strings.Contains(r.Stderr, "no /proc") {
		t.Errorf("strata warns of no /proc in the container:\n%s", r)
	}
}

// TestWhatChrootCannotDo: a RUN that needs a network namespace fails with
// an error that says why, exit code 1.
func TestWhatChrootCannotDo(t *testing.T) {
	requireContainer(t)
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --network=none true\n"})
	r := suite.Run(store, testenv.RunOpts{}, "build", ctx)
	if r.Code != 1 || !strings.Contains(r.Stderr, "chroot isolation") || !strings.Contains(r.Stderr, "Dockerfile:2") {
		t.Errorf("RUN --network=none in chroot isolation: want exit 1 and an error at Dockerfile:2 naming chroot isolation:\n%s", r)
	}
	r = suite.Run(store, testenv.RunOpts{}, "--isolation", "rootful", "build", ctx)
	if r.Code == 0 {
		t.Errorf("--isolation=rootful without CAP_SYS_ADMIN built:\n%s", r)
	}
}
