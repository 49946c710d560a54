package overlay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay tests need root (mount(2)); run the tests as root")
	}
}

// mountFor mounts and registers an unmount with the test's cleanup.
func mountFor(t *testing.T, lowers []string, upper, work, target string) {
	t.Helper()
	if err := Mount(context.Background(), lowers, upper, work, target); err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := Unmount(target); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		if isMounted(t, target) {
			t.Errorf("%s still mounted after Unmount", target)
		}
	})
}

// mountFields returns the fields of target's line in /proc/self/mountinfo,
// or nil when nothing is mounted there.
func mountFields(t *testing.T, target string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && fields[4] == target {
			return fields
		}
	}
	return nil
}

func isMounted(t *testing.T, target string) bool { return mountFields(t, target) != nil }

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type rwLayout struct{ lower, upper, work, merged string }

func newRW(t *testing.T) rwLayout {
	t.Helper()
	d := t.TempDir()
	l := rwLayout{
		lower:  filepath.Join(d, "lower"),
		upper:  filepath.Join(d, "upper"),
		work:   filepath.Join(d, "work"),
		merged: filepath.Join(d, "merged"),
	}
	mkdirs(t, l.lower, l.upper, l.work, l.merged)
	return l
}

func TestWriteGoesToUpper(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	writeFile(t, filepath.Join(l.lower, "etc/os-release"), "lower\n")
	mountFor(t, []string{l.lower}, l.upper, l.work, l.merged)

	if got := readFile(t, filepath.Join(l.merged, "etc/os-release")); got != "lower\n" {
		t.Fatalf("merged sees %q, want lower content", got)
	}
	writeFile(t, filepath.Join(l.merged, "new.txt"), "hello")
	if got := readFile(t, filepath.Join(l.upper, "new.txt")); got != "hello" {
		t.Fatalf("upper has %q", got)
	}
	writeFile(t, filepath.Join(l.merged, "etc/os-release"), "changed\n")
	if got := readFile(t, filepath.Join(l.upper, "etc/os-release")); got != "changed\n" {
		t.Fatalf("copied-up file in upper has %q", got)
	}
	if got := readFile(t, filepath.Join(l.lower, "etc/os-release")); got != "lower\n" {
		t.Fatalf("lower was modified: %q", got)
	}
}

func TestDeleteMakesWhiteout(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	writeFile(t, filepath.Join(l.lower, "dir/gone"), "x")
	writeFile(t, filepath.Join(l.lower, "dir/kept"), "y")
	mountFor(t, []string{l.lower}, l.upper, l.work, l.merged)

	if err := os.Remove(filepath.Join(l.merged, "dir/gone")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(l.upper, "dir/gone"), &st); err != nil {
		t.Fatalf("no whiteout in upper: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout is mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(l.upper, "dir/kept")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("untouched lower file appeared in upper: %v", err)
	}
	// Plain diff: no redirect or metacopy xattrs on the copied-up parent.
	// (trusted.overlay.origin and .impure may appear; layer export skips them.)
	for _, x := range []string{"trusted.overlay.redirect", "trusted.overlay.metacopy"} {
		if _, err := unix.Lgetxattr(filepath.Join(l.upper, "dir"), x, make([]byte, 256)); err == nil {
			t.Errorf("upper dir carries %s", x)
		}
	}
}

func TestReplacedDirIsOpaque(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	writeFile(t, filepath.Join(l.lower, "d/a"), "a")
	writeFile(t, filepath.Join(l.lower, "d/sub/b"), "b")
	mountFor(t, []string{l.lower}, l.upper, l.work, l.merged)

	if err := os.RemoveAll(filepath.Join(l.merged, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(l.merged, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(filepath.Join(l.upper, "d"), "trusted.overlay.opaque", buf)
	if err != nil {
		t.Fatalf("no opaque xattr on upper dir: %v", err)
	}
	if string(buf[:n]) != "y" {
		t.Fatalf("trusted.overlay.opaque = %q, want y", buf[:n])
	}
	ents, err := os.ReadDir(filepath.Join(l.merged, "d"))
	if err != nil || len(ents) != 0 {
		t.Fatalf("merged d not empty: %v %v", ents, err)
	}
}

func TestManyLowers(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	const n = 200
	lowers := make([]string, n)
	for i := range n {
		// Long names make sure a lowerdir= string would not fit in a page.
		lowers[i] = filepath.Join(d, fmt.Sprintf("layer-with-a-rather-long-name-%03d", i))
		writeFile(t, filepath.Join(lowers[i], fmt.Sprintf("f%03d", i)), fmt.Sprint(i))
		// Same file in every layer: the top-most (index 0) must win.
		writeFile(t, filepath.Join(lowers[i], "who"), fmt.Sprint(i))
	}
	upper, work, merged := filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "merged")
	mkdirs(t, upper, work, merged)
	mountFor(t, lowers, upper, work, merged)

	if got := readFile(t, filepath.Join(merged, "who")); got != "0" {
		t.Fatalf("top-most layer should win, got %q", got)
	}
	ents, err := os.ReadDir(merged)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n+1 {
		t.Fatalf("merged has %d entries, want %d", len(ents), n+1)
	}

	// The same stack read-only.
	ro := filepath.Join(d, "ro")
	mkdirs(t, ro)
	mountFor(t, lowers, "", "", ro)
	if got := readFile(t, filepath.Join(ro, "f199")); got != "199" {
		t.Fatalf("bottom layer file: %q", got)
	}
}

func TestLegacyOptionStringTooLong(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	lowers := make([]string, 200)
	for i := range lowers {
		lowers[i] = filepath.Join(d, fmt.Sprintf("layer-with-a-rather-long-name-%03d", i))
	}
	target := filepath.Join(d, "m")
	mkdirs(t, target)
	err := mountLegacy(lowers, "", "", target)
	if err == nil {
		_ = Unmount(target)
		t.Fatal("mountLegacy accepted an option string larger than a page")
	}
	if !strings.Contains(err.Error(), "more than a page") {
		t.Fatalf("unexpected error: %v", err)
	}
}

func TestOddLowerNames(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	odd := filepath.Join(filepath.Dir(l.lower), `odd:name,x\y`)
	writeFile(t, filepath.Join(odd, "f"), "odd")
	writeFile(t, filepath.Join(l.lower, "g"), "g")
	mountFor(t, []string{odd, l.lower}, l.upper, l.work, l.merged)
	if got := readFile(t, filepath.Join(l.merged, "f")) + readFile(t, filepath.Join(l.merged, "g")); got != "oddg" {
		t.Fatalf("got %q", got)
	}
}

func TestLegacyMount(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	// A lower path with the option separators in it.
	odd := filepath.Join(filepath.Dir(l.lower), `odd:name,x\y`)
	writeFile(t, filepath.Join(odd, "f"), "odd")
	writeFile(t, filepath.Join(l.lower, "g"), "g")
	if err := mountLegacy([]string{odd, l.lower}, l.upper, l.work, l.merged); err != nil {
		t.Fatalf("mountLegacy: %v", err)
	}
	t.Cleanup(func() {
		if err := Unmount(l.merged); err != nil {
			t.Error(err)
		}
	})
	if got := readFile(t, filepath.Join(l.merged, "f")) + readFile(t, filepath.Join(l.merged, "g")); got != "oddg" {
		t.Fatalf("got %q", got)
	}
	if err := os.Remove(filepath.Join(l.merged, "g")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(l.upper, "g"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Fatalf("no whiteout: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	requireRoot(t)
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d-lowers", n), func(t *testing.T) {
			d := t.TempDir()
			var lowers []string
			for i := range n {
				l := filepath.Join(d, fmt.Sprintf("l%d", i))
				writeFile(t, filepath.Join(l, fmt.Sprintf("f%d", i)), fmt.Sprint(i))
				writeFile(t, filepath.Join(l, "top"), fmt.Sprint(i))
				lowers = append(lowers, l)
			}
			target := filepath.Join(d, "m")
			mkdirs(t, target)
			mountFor(t, lowers, "", "", target)

			if got := readFile(t, filepath.Join(target, "top")); got != "0" {
				t.Fatalf("top = %q, want 0", got)
			}
			for i := range n {
				if got := readFile(t, filepath.Join(target, fmt.Sprintf("f%d", i))); got != fmt.Sprint(i) {
					t.Fatalf("f%d = %q", i, got)
				}
			}
			err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Fatalf("write to read-only mount: %v, want EROFS", err)
			}
		})
	}
}

func TestNoLowers(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	upper, work, merged := filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "merged")
	mkdirs(t, upper, work, merged)
	mountFor(t, nil, upper, work, merged)
	writeFile(t, filepath.Join(merged, "a/b"), "c")
	if got := readFile(t, filepath.Join(upper, "a/b")); got != "c" {
		t.Fatalf("upper: %q", got)
	}
	ents, err := os.ReadDir(work + EmptyLowerSuffix)
	if err != nil || len(ents) != 0 {
		t.Fatalf("private empty lower: %v %v", ents, err)
	}
}

func TestBadArguments(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	ctx := context.Background()
	if err := Mount(ctx, nil, "", "", d); err == nil {
		t.Error("read-only mount without lowers succeeded")
		_ = Unmount(d)
	}
	if err := Mount(ctx, []string{d}, filepath.Join(d, "u"), "", d); err == nil {
		t.Error("upper without work succeeded")
		_ = Unmount(d)
	}
	if err := Mount(ctx, []string{filepath.Join(d, "missing")}, "", "", d); err == nil {
		t.Error("missing lower succeeded")
		_ = Unmount(d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Mount(cctx, []string{d}, "", "", d); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: %v", err)
		_ = Unmount(d)
	}
	if err := Unmount(d); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Unmount of a non-mount: %v, want EINVAL", err)
	}
}

func TestUnmountBusyFallsBackToDetach(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	if err := Mount(context.Background(), []string{l.lower}, l.upper, l.work, l.merged); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(l.merged) // keeps the mount busy
	if err != nil {
		_ = Unmount(l.merged)
		t.Fatal(err)
	}
	defer f.Close()
	if err := Unmount(l.merged); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if isMounted(t, l.merged) {
		t.Fatal("still mounted")
	}
}

func BenchmarkMount(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	d := b.TempDir()
	var lowers []string
	for i := range 10 {
		l := filepath.Join(d, fmt.Sprint("l", i))
		if err := os.MkdirAll(l, 0o755); err != nil {
			b.Fatal(err)
		}
		lowers = append(lowers, l)
	}
	upper, work, merged := filepath.Join(d, "u"), filepath.Join(d, "w"), filepath.Join(d, "m")
	for _, p := range []string{upper, work, merged} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if err := Mount(context.Background(), lowers, upper, work, merged); err != nil {
			b.Fatal(err)
		}
		if err := Unmount(merged); err != nil {
			b.Fatal(err)
		}
	}
}

// superOptions returns the superblock options of the mount at target.
func superOptions(t *testing.T, target string) string {
	t.Helper()
	fields := mountFields(t, target)
	if fields == nil {
		t.Fatalf("%s is not mounted", target)
	}
	return fields[len(fields)-1]
}

// A writable snapshot is volatile (no syncfs of the whole upper filesystem at
// unmount), with the new mount API and with mount(2); a read-only view has no
// upper to be volatile about.
func TestWritableMountsAreVolatile(t *testing.T) {
	requireRoot(t)
	l := newRW(t)
	writeFile(t, filepath.Join(l.lower, "f"), "x")
	mountFor(t, []string{l.lower}, l.upper, l.work, l.merged)
	if o := superOptions(t, l.merged); !strings.Contains(o, "volatile") {
		t.Errorf("new mount API: options %q lack volatile", o)
	}

	legacy := newRW(t)
	if err := mountLegacy([]string{l.lower}, legacy.upper, legacy.work, legacy.merged); err != nil {
		t.Fatalf("mountLegacy: %v", err)
	}
	t.Cleanup(func() {
		if err := Unmount(legacy.merged); err != nil {
			t.Error(err)
		}
	})
	if o := superOptions(t, legacy.merged); !strings.Contains(o, "volatile") {
		t.Errorf("mount(2): options %q lack volatile", o)
	}

	d := t.TempDir()
	l2 := filepath.Join(d, "l2")
	writeFile(t, filepath.Join(l2, "g"), "y")
	ro := filepath.Join(d, "ro")
	mkdirs(t, ro)
	mountFor(t, []string{l.lower, l2}, "", "", ro)
	if o := superOptions(t, ro); strings.Contains(o, "volatile") {
		t.Errorf("read-only view: options %q have volatile", o)
	}
}
