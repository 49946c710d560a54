package reliability

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestDiskFull puts the store on a 64 MB tmpfs and runs builds that need more
// than fits: a RUN that writes 100 MB, a RUN whose 40 MB of random data fit
// but not again as the layer blob, a COPY of an 80 MB file, and a pull-free
// import of a big tree. Each must fail with a clear error and a nonzero exit,
// leave nothing half-written visible (fsck clean, no temp files), release
// its mounts, and leave the store usable: a small build succeeds after each.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	suite.RequireBuild(t)
	base := suite.TempDir(t)
	mnt := filepath.Join(base, "small")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		testenv.Release(mnt)
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount the tmpfs store: %v", err)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	store := mnt
	suite.ImportBusybox(t, store)

	bigTree := filepath.Join(suite.TempDir(t), "tree")
	os.MkdirAll(filepath.Join(bigTree, "data"), 0o755)
	writeRandom(t, filepath.Join(bigTree, "data", "a"), 40<<20)
	writeRandom(t, filepath.Join(bigTree, "data", "b"), 40<<20)
	copyCtx := suite.TempDir(t)
	os.WriteFile(filepath.Join(copyCtx, "Dockerfile"), []byte("FROM busybox\nCOPY big /big\n"), 0o644)
	writeRandom(t, filepath.Join(copyCtx, "big"), 80<<20)

	cases := []struct {
		name  string
		args  []string
		words string // one of them in the error ("a|b"), case-insensitive
	}{
		{"run-writes-100MB", []string{"build", "-t", "full", suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=100\n"})}, "no space|exit code|exit status"},
		{"layer-commit", []string{"build", "-t", "full", suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 40m /dev/urandom > /rand\n"})}, "no space"},
		{"copy-80MB", []string{"build", "-t", "full", copyCtx}, "no space"},
		{"import-80MB", []string{"import", bigTree, "full"}, "no space"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := strataRun(t, store, runOpts{}, c.args...)
			var st syscall.Statfs_t
			syscall.Statfs(store, &st)
			t.Logf("exit %d after %s; %d MB free on the store after the failure", r.Code, r.Elapsed.Round(1e6), st.Bavail*uint64(st.Bsize)>>20)
			if r.Code == 0 {
				t.Fatalf("a build that does not fit succeeded:\n%s", r)
			}
			diskFulls.Add(1)
			if r.Code != 1 || r.Err != nil {
				t.Errorf("exit code %d, want 1:\n%s", r.Code, r)
			}
			msg := strings.ToLower(r.Stderr)
			found := false
			for _, w := range strings.Split(c.words, "|") {
				found = found || strings.Contains(msg, w)
			}
			if !found || !strings.Contains(msg, "error") {
				t.Errorf("the error does not say %q:\n%s", c.words, r)
			}
			requireNoLeftovers(t, store, "after disk full")
			if tmp := tempFiles(store); len(tmp) > 0 {
				t.Errorf("half-written temp files left: %q", tmp)
			}
			if _, ok := storeImages(t, store)["docker.io/library/full:latest"]; ok {
				corruptions.Add(1)
				t.Errorf("the failed build tagged its image")
			}
			requireWholeImages(t, store)
			requireFsckClean(t, store)
			// The store still works: a small build fits.
			ok := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo fits > /fits\n"})
			strata(t, store, "build", "-t", "fits", ok)
			if got := imageFiles(t, store, "docker.io/library/fits:latest")["fits"].content; got != "fits\n" {
				t.Errorf("the build after the disk-full failure made /fits = %q", got)
			}
		})
	}
}

func writeRandom(t *testing.T, p string, n int) {
	t.Helper()
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	for n > 0 {
		k, err := f.Read(buf[:min(n, len(buf))])
		if err != nil {
			t.Fatal(err)
		}
		out.Write(buf[:k])
		n -= k
	}
}
