package testsuite

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-build/strata/internal/executor"
)

// testMounts: the mounts a RUN --mount makes (a read-only bind of a
// directory, a cache, a tmpfs, a secret file, a file over an image's file)
// show what they should, over what the rootfs has at their mount points;
// a cache keeps what the command wrote; afterwards the rootfs is as it was
// (no mount point, no content, what they covered as it was but for its
// change time) and the sources are as they were, but for the cache.
func (s *suite) testMounts(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	writeFiles(t, rootfs, map[string]string{"var/cache/app/image-file": "image\n", "etc/app.conf": "image conf\n"})
	src, cache, files := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"a.txt": "a\n", "sub/b.txt": "b\n"})
	writeFiles(t, cache, map[string]string{"log": "one\n"})
	writeFiles(t, files, map[string]string{"secret": "s3cr3t", "conf": "mounted conf\n"})
	must(t, os.Chmod(filepath.Join(files, "secret"), 0o400))
	before, srcBefore := listing(t, rootfs), listing(t, src)
	bind := func(src, dst string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
	}
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Mounts: []specs.Mount{
		bind(src, "/mnt/src", "ro"),
		bind(cache, "/var/cache/app", "rw"),
		{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
		bind(filepath.Join(files, "secret"), "/run/secrets/s", "ro"),
		bind(filepath.Join(files, "conf"), "/etc/app.conf", "ro"),
	}, Args: sh(`cat /mnt/src/a.txt /mnt/src/sub/b.txt; ls -A /var/cache/app
		echo two >> /var/cache/app/log && echo new > /var/cache/app/new
		stat -c %a /scratch; ls -A /scratch; echo x > /scratch/x
		stat -c %a /run/secrets/s; cat /run/secrets/s; echo; cat /etc/app.conf`)})
	if want := "a\nb\nlog\n1777\n400\ns3cr3t\nmounted conf\n"; code != 0 || out != want {
		t.Errorf("exit %d, output %q, want %q", code, out, want)
	}
	// What a mount covered keeps its inode and times but for the change
	// time: an executor without mount(2) moves it aside for the run.
	after := listing(t, rootfs)
	for _, l := range []map[string]entry{before, after} {
		for _, p := range []string{"etc/app.conf", "var/cache/app"} {
			en := l[p]
			en.ctime = 0
			l[p] = en
		}
	}
	compareListings(t, before, after)
	compareListings(t, srcBefore, listing(t, src))
	for f, want := range map[string]string{
		filepath.Join(cache, "log"): "one\ntwo\n", filepath.Join(cache, "new"): "new\n",
		filepath.Join(files, "secret"): "s3cr3t", filepath.Join(rootfs, "var/cache/app/image-file"): "image\n",
		filepath.Join(rootfs, "etc/app.conf"): "image conf\n",
	} {
		if b, err := os.ReadFile(f); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", f, b, err, want)
		}
	}
}
