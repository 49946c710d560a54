package testsuite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor"
)

// testDevices: a RUN has /dev/null, /dev/zero, /dev/full, /dev/random,
// /dev/urandom and /dev/tty even when the rootfs has no /dev, and the
// rootfs has no trace of them afterwards.
func (s *suite) testDevices(t *testing.T) {
	e := s.New(t)
	for _, withDev := range []bool{false, true} {
		rootfs := Rootfs(t, false)
		if withDev {
			must(t, os.Mkdir(filepath.Join(rootfs, "dev"), 0o755))
		}
		before := listing(t, rootfs)
		if s.NoDevices {
			// Nothing else takes their place (a /dev/null written by
			// the command would be a regular file in the layer).
			code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh("test -e /dev/null && ls -l /dev; echo ran")})
			if code != 0 || out != "ran\n" {
				t.Errorf("without devices: exit %d, output %q", code, out)
			}
		} else {
			const script = `echo x > /dev/null && cat /dev/null && head -c 5 /dev/zero | wc -c && head -c 5 /dev/urandom | wc -c &&
head -c 1 /dev/random | wc -c && test -c /dev/tty && test -c /dev/full && for d in null zero full random urandom tty; do stat -c "%n %t:%T %a" /dev/$d; done
echo x 2>/dev/null > /dev/full; echo full=$?`
			code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh(script)})
			const want = "5\n5\n1\n/dev/null 1:3 666\n/dev/zero 1:5 666\n/dev/full 1:7 666\n/dev/random 1:8 666\n/dev/urandom 1:9 666\n/dev/tty 5:0 666\nfull=1\n"
			if code != 0 || out != want {
				t.Errorf("/dev (rootfs has /dev: %v): exit %d, output %q, want %q", withDev, code, out, want)
			}
		}
		compareListings(t, before, listing(t, rootfs))
	}
}

// testHostFiles: a rootfs without /etc/hosts and /etc/resolv.conf sees the
// host's during the run (also where resolv.conf is a symlink to a missing
// file, as with systemd-resolved), and has nothing of them afterwards.
func (s *suite) testHostFiles(t *testing.T) {
	e := s.New(t)
	var want strings.Builder
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Skipf("the host has no %s", f)
		}
		fmt.Fprintf(&want, "%s---\n", b)
	}
	for _, link := range []bool{false, true} {
		rootfs := Rootfs(t, !link)
		if link {
			must(t, os.Mkdir(filepath.Join(rootfs, "etc"), 0o755))
			must(t, os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(rootfs, "etc/resolv.conf")))
		}
		before := listing(t, rootfs)
		code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh("cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---")})
		if code != 0 || out != want.String() {
			t.Errorf("symlink %v: exit %d, output %q, want %q", link, code, out, want.String())
		}
		compareListings(t, before, listing(t, rootfs))
	}
}

// testNoChanges: a run that changes nothing leaves the rootfs as it was:
// the same entries with the same types, modes, owners, sizes, devices and
// link targets, and files not rewritten (same inode, modification and
// change times), whether the rootfs has /dev, /proc, /sys and /etc or not.
// testProc: a RUN finds itself in /proc (the go command finds its GOROOT
// through /proc/self/exe), reads /sys, and writes to /dev/fd/N and
// /dev/stderr, as root and as a user; the rootfs has none of them.
func (s *suite) testProc(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	const script = `readlink /proc/self/exe; grep -c '^Tgid:' /proc/self/status; tr '\0' ' ' </proc/$$/cmdline; echo
test -d /sys/kernel && echo sys; echo fd >/dev/fd/1; echo stderr >/dev/stderr; readlink /proc/self/fd/0`
	want := "/bin/busybox\n1\n/bin/sh -c " + script + " \nsys\nfd\nstderr\n/dev/null\n"
	for _, u := range []string{"", "app"} {
		code, out := s.run(t, e, executor.Process{Rootfs: rootfs, User: u, Args: sh(script), Stdin: nil})
		if code != 0 || out != want {
			t.Errorf("USER %q: exit %d, output\n%s\nwant\n%s", u, code, out, want)
		}
	}
}

func (s *suite) testNoChanges(t *testing.T) {
	e := s.New(t)
	bare := Rootfs(t, false)
	full := Rootfs(t, true)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run"} {
		must(t, os.Mkdir(filepath.Join(full, d), 0o755))
	}
	must(t, os.Chmod(filepath.Join(full, "tmp"), 0o1777))
	old := time.Unix(1000000000, 0)
	for _, root := range []string{bare, full} {
		must(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.Mode()&os.ModeSymlink != 0 {
				return err
			}
			return os.Chtimes(p, old, old)
		}))
	}
	for name, rootfs := range map[string]string{"bare": bare, "full": full} {
		before := listing(t, rootfs)
		for _, args := range [][]string{{"/bin/true"}, sh("cat /etc/hosts /etc/resolv.conf /etc/passwd; test -c /dev/null; id; exit 0")} {
			s.run(t, e, executor.Process{Rootfs: rootfs, Args: args})
		}
		compareListings(t, before, listing(t, rootfs))
		if t.Failed() {
			t.Logf("rootfs %s", name)
		}
	}
}

// testOwnFilesKept: a rootfs's own /etc/hosts, /etc/resolv.conf and device
// nodes are neither replaced nor rewritten.
func (s *suite) testOwnFilesKept(t *testing.T) {
	e := s.New(t)
	rootfs := Rootfs(t, true)
	writeFiles(t, rootfs, map[string]string{"etc/hosts": "10.1.2.3 own\n", "etc/resolv.conf": "nameserver 10.9.9.9\n"})
	must(t, os.Mkdir(filepath.Join(rootfs, "dev"), 0o755))
	if err := syscall.Mknod(filepath.Join(rootfs, "dev/null"), syscall.S_IFCHR|0o666, int(devNumber(1, 3))); err != nil {
		if !s.NoDevices {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(rootfs, "dev/null"), nil, 0o644)) // no CAP_MKNOD here either
	}
	must(t, os.WriteFile(filepath.Join(rootfs, "dev/zero"), []byte("not a device"), 0o600))
	before := listing(t, rootfs)
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh("test -r /etc/passwd && echo ok")})
	if code != 0 || out != "ok\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
	compareListings(t, before, listing(t, rootfs))
	for f, want := range map[string]string{"etc/hosts": "10.1.2.3 own\n", "etc/resolv.conf": "nameserver 10.9.9.9\n", "dev/zero": "not a device"} {
		if b, err := os.ReadFile(filepath.Join(rootfs, f)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
}

// testFilesStay: what the command writes, makes and removes stays so.
func (s *suite) testFilesStay(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	writeFiles(t, rootfs, map[string]string{"etc/motd": "hello"})
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, User: "app", Cwd: "/home/app",
		Args: sh("echo new > /home/app/file && mkdir -p /home/app/a/b")})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	code, out = s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh("rm /etc/motd && mkdir /srv && echo data > /srv/data")})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "home/app/file")); err != nil || string(b) != "new\n" {
		t.Errorf("home/app/file: %q %v", b, err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(rootfs, "home/app/a/b"), &st); err != nil || st.Uid != 1000 {
		t.Errorf("home/app/a/b: uid %d, %v", st.Uid, err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/motd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etc/motd not removed: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "srv/data")); err != nil || string(b) != "data\n" {
		t.Errorf("srv/data: %q %v", b, err)
	}
}

// entry is one line of a listing.
type entry struct {
	mode     os.FileMode
	uid, gid uint32
	rdev     uint64
	size     int64
	target   string
	// Not for directories, whose times change when entries are added and
	// removed (an executor's mount points, device nodes), and which a
	// snapshotter does not put in a layer for their times alone.
	mtime, ctime int64
	ino          uint64
}

// listing describes every entry below root (and root itself) by its path.
func listing(t *testing.T, root string) map[string]entry {
	t.Helper()
	l := map[string]entry{}
	must(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		en := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			en.target, _ = os.Readlink(p)
		case fi.Mode()&os.ModeDevice != 0:
			en.rdev = st.Rdev
		case fi.Mode().IsRegular():
			en.size = fi.Size()
		}
		if !fi.IsDir() {
			en.mtime, en.ctime, en.ino = st.Mtim.Nano(), st.Ctim.Nano(), st.Ino
		}
		l[rel] = en
		return nil
	}))
	return l
}

// compareListings fails the test for every difference between the
// listings of a rootfs before and after a run.
func compareListings(t *testing.T, before, after map[string]entry) {
	t.Helper()
	var names []string
	for n := range before {
		names = append(names, n)
	}
	for n := range after {
		if _, ok := before[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range slices.Compact(names) {
		b, inBefore := before[n]
		a, inAfter := after[n]
		switch {
		case !inBefore:
			t.Errorf("/%s: left in the rootfs (%v)", n, a.mode)
		case !inAfter:
			t.Errorf("/%s: gone from the rootfs", n)
		case a != b:
			t.Errorf("/%s changed:\n before %+v\n after  %+v", n, b, a)
		}
	}
}

// devNumber is makedev(major, minor).
func devNumber(major, minor uint32) uint64 {
	return uint64(major)<<8 | uint64(minor)
}
