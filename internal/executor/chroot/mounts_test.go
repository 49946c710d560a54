package chroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
	"github.com/strata-build/strata/internal/snapshot/native"
)

// describe lists every entry below root (root too) with its type, owner,
// mode, size, content, link target, mtime and inode: two listings are equal
// when nothing but change times differ.
func describe(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		d := fmt.Sprintf("%o %d:%d size %d mtime %d ino %d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Nano(), st.Ino)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			d += " " + hex.EncodeToString(sum[:8])
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			d += " -> " + target
		}
		out[rel] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkCache fails the test unless the cache folder holds exactly the
// names listed (space-separated, sorted, "." first) and files has the
// contents of those it gives.
func checkCache(t *testing.T, cache, names string, files map[string]string) {
	t.Helper()
	var got []string
	for n := range describe(t, cache) {
		got = append(got, n)
	}
	sort.Strings(got)
	if s := strings.Join(got, " "); s != names {
		t.Errorf("cache holds %s, want %s", s, names)
	}
	for f, want := range files {
		if b, err := os.ReadFile(filepath.Join(cache, f)); err != nil || string(b) != want {
			t.Errorf("cache %s: %q, %v; want %q", f, b, err, want)
		}
	}
}

// sameTree fails the test for each difference between two listings.
func sameTree(t *testing.T, what string, before, after map[string]string) {
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
	for _, n := range names {
		b, inB := before[n]
		a, inA := after[n]
		switch {
		case !inB:
			t.Errorf("%s: %s is new (%s)", what, n, a)
		case !inA:
			t.Errorf("%s: %s is gone", what, n)
		case a != b:
			t.Errorf("%s: %s changed:\n  before %s\n  after  %s", what, n, b, a)
		}
	}
}

// writeTree writes files (path: content; a path ending in "/" is a
// directory) below dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func bind(src, dst string, opts ...string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
}

func mustRun(t *testing.T, p executor.Process) string {
	t.Helper()
	code, out, err := run(t, &Runner{}, p)
	if err != nil || code != 0 {
		t.Fatalf("Run = %d, %v; output:\n%s", code, err, out)
	}
	return out
}

// TestMountReadOnly: a read-only bind of a directory shows the source's
// files (owners, modes, links, symlinks, times) as copies: the command's
// writes succeed (there is no EROFS) but reach neither the source nor the
// rootfs.
func TestMountReadOnly(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.txt": "alpha\n", "sub/b.txt": "beta\n", "empty/": ""})
	if err := os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "sub/a-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a.txt", filepath.Join(src, "sub/sym")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "sub/b.txt"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "sub/b.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1500000000, 0)
	if err := os.Chtimes(filepath.Join(src, "sub"), old, old); err != nil {
		t.Fatal(err)
	}
	srcBefore, rootBefore := describe(t, src), describe(t, rootfs)
	out := mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(src, "/mnt/src", "ro")}, Args: []string{"/bin/sh", "-c", `
		cat /mnt/src/a.txt /mnt/src/sub/sym
		stat -c '%n %u:%g %a %h' /mnt/src/sub/b.txt /mnt/src/sub/a-link
		stat -c '%n %a %Y' /mnt/src/sub
		test -d /mnt/src/empty && echo empty dir
		echo changed >> /mnt/src/a.txt && echo new > /mnt/src/new && rm /mnt/src/sub/b.txt && echo wrote`}})
	want := "alpha\nalpha\n/mnt/src/sub/b.txt 1000:1000 600 1\n/mnt/src/sub/a-link 0:0 644 2\n/mnt/src/sub 755 1500000000\nempty dir\nwrote\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	sameTree(t, "source", srcBefore, describe(t, src))
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
}

// TestMountCache: a writable bind (a cache) shows the source's files, and
// what the command changes there (written in place, made, removed, renamed,
// chmod) is in the source afterwards, not in the rootfs; the next run sees
// it.
func TestMountCache(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	cache := t.TempDir()
	writeTree(t, cache, map[string]string{"log": "one\n", "gone": "x", "old-name": "renamed\n", "d/keep": "k", "d2/x": "x"})
	rootBefore := describe(t, rootfs)
	ms := []specs.Mount{bind(cache, "/var/cache/app", "rw")}
	mustRun(t, executor.Process{Rootfs: rootfs, Mounts: ms, Args: []string{"/bin/sh", "-c", `
		cd /var/cache/app && echo two >> log && rm gone && busybox mv old-name new-name &&
		mkdir -p n/m && echo deep > n/m/f && rm -r d2 && busybox chmod 700 d && echo > /var/cache/app/d/keep`}})
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
	checkCache(t, cache, ". d d/keep log n n/m n/m/f new-name", map[string]string{"log": "one\ntwo\n", "new-name": "renamed\n", "n/m/f": "deep\n", "d/keep": "\n"})
	if st, err := os.Stat(filepath.Join(cache, "d")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("cache d: %v %v", st.Mode(), err)
	}
	out := mustRun(t, executor.Process{Rootfs: rootfs, Mounts: ms, Args: []string{"/bin/sh", "-c", "cat /var/cache/app/log /var/cache/app/n/m/f"}})
	if out != "one\ntwo\ndeep\n" {
		t.Errorf("second run: %q", out)
	}
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
}

// TestMountCacheLinkedOut: a file that the command links between a cache
// and the rootfs (real mounts refuse: EXDEV) is not one file of both
// afterwards: the source gets a copy of its own, so that a later change in
// the cache cannot reach a layer.
func TestMountCacheLinkedOut(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	cache := t.TempDir()
	writeTree(t, cache, map[string]string{"store/pkg": "package\n"})
	mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(cache, "/cache")}, Args: []string{"/bin/sh", "-c",
		"busybox ln /cache/store/pkg /pkg && echo mine > /mine && busybox ln /mine /cache/mine"}})
	for _, pair := range [][2]string{{"store/pkg", "pkg"}, {"mine", "mine"}} {
		var a, b unix.Stat_t
		if err := unix.Lstat(filepath.Join(cache, pair[0]), &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(rootfs, pair[1]), &b); err != nil {
			t.Fatal(err)
		}
		if a.Ino == b.Ino || a.Nlink != 1 || b.Nlink != 1 {
			t.Errorf("cache %s and rootfs %s: inodes %d and %d, links %d and %d", pair[0], pair[1], a.Ino, b.Ino, a.Nlink, b.Nlink)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cache, "mine")); err != nil || string(b) != "mine\n" {
		t.Errorf("cache mine: %q %v", b, err)
	}
}

// TestMountCacheConcurrent: runs that use one cache at the same time each
// add their files, and neither loses the other's; a file written in place
// after another run has ended is the cache's still.
func TestMountCacheConcurrent(t *testing.T) {
	requireRoot(t)
	cache := t.TempDir()
	writeTree(t, cache, map[string]string{"base": "b", "log": "start\n"})
	var wg sync.WaitGroup
	for i := range 4 {
		rootfs := testsuite.Rootfs(t, true)
		wg.Go(func() {
			code, out, err := run(t, &Runner{}, executor.Process{ID: fmt.Sprintf("strata-cc-%d", i), Rootfs: rootfs,
				Mounts: []specs.Mount{bind(cache, "/cache")},
				Args:   []string{"/bin/sh", "-c", fmt.Sprintf("sleep 0.%d; echo %d > /cache/f%d; echo %d >> /cache/log; cat /cache/base", 2*i, i, i, i)}})
			if err != nil || code != 0 || out != "b" {
				t.Errorf("run %d: %d %v %q", i, code, err, out)
			}
		})
	}
	wg.Wait()
	for i := range 4 {
		if b, err := os.ReadFile(filepath.Join(cache, fmt.Sprintf("f%d", i))); err != nil || string(b) != fmt.Sprintf("%d\n", i) {
			t.Errorf("f%d: %q %v", i, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cache, "log")); err != nil || string(b) != "start\n0\n1\n2\n3\n" {
		t.Errorf("log: %q %v", b, err)
	}
}

// TestMountFileLinkedOut: a writable bind of a file that the command links
// into the rootfs leaves the rootfs a file of its own.
func TestMountFileLinkedOut(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, []byte("d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(data, "/data", "rw")}, Args: []string{"/bin/sh", "-c",
		"echo more >> /data; busybox ln /data /copy"}})
	var a, b unix.Stat_t
	if err := unix.Lstat(data, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(rootfs, "copy"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino == b.Ino || a.Nlink != 1 || b.Nlink != 1 {
		t.Errorf("source and /copy: inodes %d and %d, links %d and %d", a.Ino, b.Ino, a.Nlink, b.Nlink)
	}
	for _, p := range []string{data, filepath.Join(rootfs, "copy")} {
		if got, err := os.ReadFile(p); err != nil || string(got) != "d\nmore\n" {
			t.Errorf("%s: %q %v", p, got, err)
		}
	}
}

// TestMountTmpfs: a tmpfs is an empty directory (mode 1777 unless the
// options say otherwise) whose contents are gone afterwards.
func TestMountTmpfs(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	rootBefore := describe(t, rootfs)
	out := mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1024"}},
		{Destination: "/run/x", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=750", "uid=1000", "gid=50"}},
	}, Args: []string{"/bin/sh", "-c", "stat -c '%a %u:%g' /tmp /run/x; ls -A /tmp; echo x > /tmp/f && mkdir /run/x/d"}})
	if out != "1777 0:0\n750 1000:50\n" {
		t.Errorf("output %q", out)
	}
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
}

// TestMountSecret: a read-only bind of a file (a secret) is a copy with
// the source's owner and mode, gone afterwards however the run ends; a
// name the command gave it elsewhere is left empty.
func TestMountSecret(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(src, []byte("s3cr3t"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(src, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	ms := []specs.Mount{bind(src, "/run/secrets/token", "ro")}
	for _, tc := range []struct {
		name, script string
		code         int
		kept         string // a file the command made of it
	}{
		{"read", "stat -c '%a %u:%g' /run/secrets/token; cat /run/secrets/token", 0, ""},
		{"fails", "cat /run/secrets/token; exit 3", 3, ""},
		{"linked", "busybox ln /run/secrets/token /kept; cat /kept", 0, "kept"},
		{"moved", "busybox mv /run/secrets/token /moved; cat /moved", 0, "moved"},
	} {
		rootfs := testsuite.Rootfs(t, true)
		rootBefore := describe(t, rootfs)
		code, out, err := run(t, &Runner{}, executor.Process{Rootfs: rootfs, Mounts: ms, Args: []string{"/bin/sh", "-c", tc.script}})
		if err != nil || code != tc.code || !strings.HasSuffix(out, "s3cr3t") {
			t.Errorf("%s: Run = %d, %v, %q", tc.name, code, err, out)
		}
		if tc.name == "read" && out != "400 1000:1000\ns3cr3t" {
			t.Errorf("%s: %q", tc.name, out)
		}
		if tc.kept != "" {
			b, err := os.ReadFile(filepath.Join(rootfs, tc.kept))
			if err != nil || len(b) != 0 {
				t.Errorf("%s: /%s holds %q (%v), want it empty", tc.name, tc.kept, b, err)
			}
			os.Remove(filepath.Join(rootfs, tc.kept))
			delete(rootBefore, ".") // its times are the test's
		}
		rootAfter := describe(t, rootfs)
		if tc.kept != "" {
			delete(rootAfter, ".")
		}
		sameTree(t, tc.name, rootBefore, rootAfter)
		if b, err := os.ReadFile(src); err != nil || string(b) != "s3cr3t" {
			t.Errorf("%s: the source holds %q, %v", tc.name, b, err)
		}
	}
}

// TestMountCanceled: a canceled run takes its mounts away too: the secret
// goes, the cache gets what the command wrote.
func TestMountCanceled(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s"), 0o400); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	rootBefore := describe(t, rootfs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := (&Runner{}).Run(ctx, executor.Process{ID: "strata-cancel", Rootfs: rootfs,
			Mounts: []specs.Mount{bind(secret, "/run/secrets/s", "ro"), bind(cache, "/cache")},
			Args:   []string{"/bin/sh", "-c", "echo partial > /cache/f; sleep 60"}})
		done <- err
	}()
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(filepath.Join(rootfs, "cache/f")); return err == nil }) {
		t.Fatal("the run did not start")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
	if b, err := os.ReadFile(filepath.Join(cache, "f")); err != nil || string(b) != "partial\n" {
		t.Errorf("cache f: %q %v", b, err)
	}
}

// TestMountHides: what is at a mount point is out of the command's sight
// (not in its directory under another name either) and back afterwards,
// the same inode with the same times; the directory it is in keeps its
// times too.
func TestMountHides(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	writeTree(t, rootfs, map[string]string{"var/cache/app/image-file": "image", "var/cache/other": "o", "etc/app.conf": "image conf"})
	old := time.Unix(1400000000, 0)
	for _, p := range []string{"var/cache/app", "var/cache", "etc/app.conf", "etc"} {
		if err := os.Chtimes(filepath.Join(rootfs, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	src, conf := t.TempDir(), filepath.Join(t.TempDir(), "conf")
	writeTree(t, src, map[string]string{"mounted": "m"})
	if err := os.WriteFile(conf, []byte("mounted conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootBefore := describe(t, rootfs)
	out := mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(src, "/var/cache/app", "ro"), bind(conf, "/etc/app.conf", "ro")},
		Args: []string{"/bin/sh", "-c", "ls -A /var/cache /var/cache/app; cat /etc/app.conf; ls -A / | grep -c strata; true"}})
	if out != "/var/cache:\napp\nother\n\n/var/cache/app:\nmounted\nmounted conf0\n" {
		t.Errorf("output %q", out)
	}
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
}

// TestMountNested: mounts are made in order, one inside another, with the
// missing directories they need; a mount that covers an earlier one hides
// it.
func TestMountNested(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	ctx, cache := t.TempDir(), t.TempDir()
	writeTree(t, ctx, map[string]string{"main.go": "package main", "vendor/x": "x"})
	rootBefore := describe(t, rootfs)
	out := mustRun(t, executor.Process{Rootfs: rootfs, Cwd: "/src", Mounts: []specs.Mount{
		bind(ctx, "/src", "ro"),
		bind(cache, "/src/out/cache", "rw"),
		{Destination: "/src/vendor", Type: "tmpfs", Source: "tmpfs"},
	}, Args: []string{"/bin/sh", "-c", "ls -A . vendor; echo built > out/cache/bin; echo x > vendor/y"}})
	if out != ".:\nmain.go\nout\nvendor\n\nvendor:\n" {
		t.Errorf("output %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(cache, "bin")); err != nil || string(b) != "built\n" {
		t.Errorf("cache: %q %v", b, err)
	}
	after := describe(t, rootfs)
	delete(after, "src") // the working directory stays, as with runc
	delete(after, ".")
	delete(rootBefore, ".")
	sameTree(t, "rootfs", rootBefore, after)
	if ents, _ := os.ReadDir(filepath.Join(rootfs, "src")); len(ents) != 0 {
		t.Errorf("/src holds %v", ents)
	}
	if _, err := os.Stat(filepath.Join(ctx, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a mount point was made in the source: %v", err)
	}
}

// TestMountScript: a heredoc's script bound at /dev/pipes (the rootfs has
// no /dev) runs.
func TestMountScript(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	pipes := t.TempDir()
	if err := os.WriteFile(filepath.Join(pipes, "EOF"), []byte("#!/bin/sh\necho from heredoc\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rootBefore := describe(t, rootfs)
	out := mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(pipes, "/dev/pipes", "ro")}, Args: []string{"/dev/pipes/EOF"}})
	if out != "from heredoc\n" {
		t.Errorf("output %q", out)
	}
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
}

// TestMountSocket: a socket (an ssh agent) is bound as a link to it, or on
// another filesystem, through a proxy; either way a client in the rootfs
// reaches the listener.
func TestMountSocket(t *testing.T) {
	requireRoot(t)
	dirs := []string{t.TempDir()}
	other := t.TempDir()
	if err := unix.Mount("tmpfs", other, "tmpfs", 0, "mode=755"); err != nil {
		t.Logf("no socket on another filesystem: mount a tmpfs: %v", err)
	} else {
		t.Cleanup(func() { unix.Unmount(other, unix.MNT_DETACH) })
		dirs = append(dirs, other)
	}
	for _, dir := range dirs {
		sock := filepath.Join(dir, "agent.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		go echo(ln)
		rootfs := testsuite.Rootfs(t, true)
		rootBefore := describe(t, rootfs)
		done := make(chan string, 1)
		go func() {
			// busybox has no unix socket client: this test is the client,
			// while the command waits for it.
			agent := filepath.Join(rootfs, "run/agent")
			if !waitFor(10*time.Second, func() bool { _, err := os.Stat(agent); return err == nil }) {
				done <- "no socket"
				return
			}
			// A link on the same filesystem, a proxy of its own on another.
			var a, b unix.Stat_t
			if unix.Stat(agent, &a) != nil || unix.Stat(sock, &b) != nil || (a.Ino == b.Ino) != (dir != other) {
				done <- "not a link, or not a proxy"
				return
			}
			c, err := net.Dial("unix", agent)
			if err != nil {
				done <- err.Error()
				return
			}
			fmt.Fprint(c, "ping")
			c.(*net.UnixConn).CloseWrite()
			reply, _ := io.ReadAll(c)
			c.Close()
			done <- string(reply)
			os.WriteFile(filepath.Join(rootfs, "sig/go"), nil, 0o644)
		}()
		out := mustRun(t, executor.Process{Rootfs: rootfs, Env: []string{"SSH_AUTH_SOCK=/run/agent"},
			Mounts: []specs.Mount{bind(sock, "/run/agent"), {Destination: "/sig", Type: "tmpfs", Source: "tmpfs"}},
			Args:   []string{"/bin/sh", "-c", "test -S $SSH_AUTH_SOCK && echo socket; while ! test -e /sig/go; do sleep 0.02; done"}})
		if got := <-done; out != "socket\n" || got != "ping" {
			t.Errorf("%s: output %q, the agent answered %q", dir, out, got)
		}
		sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
		ln.Close()
	}
}

// echo answers every connection to ln with what it reads.
func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}

// TestMountNativeLayer runs steps with mounts in snapshots of the native
// snapshotter, as a build in an unprivileged container does, and checks
// that each diff (the next layer) holds only what the command changed
// outside its mounts: nothing of the mounts, their mount points, the
// directories made for them, or what they hid.
func TestMountNativeLayer(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	parent := testsuite.Rootfs(t, true)
	writeTree(t, parent, map[string]string{"var/cache/app/image-file": "i", "etc/app.conf": "c", "root/": "", "tmp/": "", "dev/": ""})
	src, cache := t.TempDir(), t.TempDir()
	writeTree(t, src, map[string]string{"main.go": "package main\n", "sub/x": "x"})
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte("s"), 0o400); err != nil {
		t.Fatal(err)
	}
	tmpfs := func(dst string) specs.Mount { return specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs"} }
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
		script string
		want   string
	}{
		{"bind, new mount point", []specs.Mount{bind(src, "/mnt/ctx", "ro")}, "cp /mnt/ctx/main.go /out; echo x > /mnt/ctx/sub/x", "out"},
		{"bind over image files", []specs.Mount{bind(src, "/var/cache/app", "ro"), bind(secret, "/etc/app.conf", "ro")}, "cat /var/cache/app/main.go > /out", "out"},
		{"cache over image files", []specs.Mount{bind(cache, "/var/cache/app", "rw")}, "echo c > /var/cache/app/entry; cp /var/cache/app/entry /out", "out"},
		{"cache below an image directory", []specs.Mount{bind(cache, "/root/.cache", "rw")}, "mkdir -p /root/.cache/sub && echo z > /root/.cache/sub/z", ""},
		{"tmpfs over an image directory", []specs.Mount{tmpfs("/tmp")}, "echo t > /tmp/t; echo > /out", "out"},
		{"secret", []specs.Mount{bind(secret, "/run/secrets/s", "ro")}, "cat /run/secrets/s > /dev/null", ""},
		{"file over an image file", []specs.Mount{bind(secret, "/etc/app.conf", "ro")}, "cat /etc/app.conf > /etc/copy", "etc etc/copy"},
		{"nested", []specs.Mount{bind(src, "/src", "ro"), bind(cache, "/src/sub/cache", "rw"), tmpfs("/src/tmp")}, "echo > /src/tmp/x; echo > /src/sub/cache/y", ""},
		{"in /dev", []specs.Mount{bind(src, "/dev/pipes", "ro")}, "test -f /dev/pipes/main.go", ""},
	} {
		sn, err := native.New(t.TempDir()).Prepare(ctx, []string{parent})
		if err != nil {
			t.Fatal(err)
		}
		code, out, err := run(t, &Runner{}, executor.Process{Rootfs: sn.Root(), Mounts: tc.mounts, Args: []string{"/bin/sh", "-c", tc.script}})
		if err != nil || code != 0 {
			t.Fatalf("%s: Run = %d, %v (%q)", tc.name, code, err, out)
		}
		diff, err := sn.Diff(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(entries(t, diff), " "); got != tc.want {
			t.Errorf("%s: layer holds %q, want %q", tc.name, got, tc.want)
		}
		if err := sn.Remove(); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkMount measures a run of /bin/true with a bind of a tree of
// 5,000 files of 1 KiB in 100 directories: read-only (a copy) and
// writable (links in, a merge out).
func BenchmarkMount(b *testing.B) {
	requireRoot(b)
	src := b.TempDir()
	data := strings.Repeat("x", 1024)
	for d := range 100 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 50 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), []byte(data), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	rootfs := testsuite.Rootfs(b, true)
	for _, mode := range []string{"ro", "rw"} {
		b.Run(mode, func(b *testing.B) {
			r := &Runner{}
			for b.Loop() {
				code, err := r.Run(context.Background(), executor.Process{ID: "strata-bench", Rootfs: rootfs,
					Mounts: []specs.Mount{bind(src, "/src", mode)}, Args: []string{"/bin/true"}})
				if err != nil || code != 0 {
					b.Fatalf("code %d err %v", code, err)
				}
			}
		})
	}
}

// TestMountPointRemoved: a command that removes a mount point (which a
// real one refuses, EBUSY, once `rm -rf` has emptied it) or moves it leaves
// a cache empty, and the source of a file bind a file of its own.
func TestMountPointRemoved(t *testing.T) {
	requireRoot(t)
	for _, script := range []string{"rm -rf /cache /data", "busybox mv /cache /moved-cache; busybox mv /data /moved-data"} {
		rootfs := testsuite.Rootfs(t, true)
		cache, data := t.TempDir(), filepath.Join(t.TempDir(), "data")
		writeTree(t, cache, map[string]string{"a": "a", "d/b": "b"})
		if err := os.WriteFile(data, []byte("d"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(cache, 0o750); err != nil {
			t.Fatal(err)
		}
		mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(cache, "/cache"), bind(data, "/data")}, Args: []string{"/bin/sh", "-c", script}})
		if ents, err := os.ReadDir(cache); err != nil || len(ents) != 0 {
			t.Errorf("%s: the cache holds %v (%v)", script, ents, err)
		}
		if st, err := os.Stat(cache); err != nil || st.Mode().Perm() != 0o750 {
			t.Errorf("%s: the cache's mode: %v", script, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(data, &st); err != nil || st.Nlink != 1 {
			t.Errorf("%s: the file bind's source has %d links (%v)", script, st.Nlink, err)
		}
	}
}

// TestMountFailed: a mount that cannot be made fails the run before the
// command starts, and the mounts made before it are taken away.
func TestMountFailed(t *testing.T) {
	requireRoot(t)
	other := t.TempDir()
	if err := unix.Mount("tmpfs", other, "tmpfs", 0, "mode=755"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(other, unix.MNT_DETACH) })
	fifo := filepath.Join(other, "fifo") // cannot be linked from another filesystem, nor copied
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := testsuite.Rootfs(t, true)
	writeTree(t, rootfs, map[string]string{"etc/app.conf": "image"})
	src := t.TempDir()
	writeTree(t, src, map[string]string{"f": "f"})
	rootBefore := describe(t, rootfs)
	code, out, err := run(t, &Runner{}, executor.Process{Rootfs: rootfs,
		Mounts: []specs.Mount{bind(src, "/etc/app.conf", "ro"), bind(src, "/c"), bind(fifo, "/fifo")},
		Args:   []string{"/bin/sh", "-c", "touch /ran"}})
	if code != -1 || err == nil || !strings.Contains(err.Error(), "mount /fifo: ") {
		t.Errorf("Run = %d, %v, %q; want an error about /fifo", code, err, out)
	}
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
}

// TestMountCacheElsewhere: a cache on another filesystem than the rootfs
// is copied in and what the command changed is copied back.
func TestMountCacheElsewhere(t *testing.T) {
	requireRoot(t)
	cache := t.TempDir()
	if err := unix.Mount("tmpfs", cache, "tmpfs", 0, "mode=755"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(cache, unix.MNT_DETACH) })
	writeTree(t, cache, map[string]string{"log": "one\n", "same": "s", "gone": "g", "d/x": "x"})
	rootfs := testsuite.Rootfs(t, true)
	rootBefore := describe(t, rootfs)
	mustRun(t, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{bind(cache, "/cache")}, Args: []string{"/bin/sh", "-c",
		"cd /cache && echo two >> log && rm gone && mkdir -p n/m && echo deep > n/m/f && echo y > d/y"}})
	sameTree(t, "rootfs", rootBefore, describe(t, rootfs))
	checkCache(t, cache, ". d d/x d/y log n n/m n/m/f same", map[string]string{"log": "one\ntwo\n", "same": "s", "n/m/f": "deep\n", "d/y": "y\n"})
}
