package runc

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestNewSpec(t *testing.T) {
	extra := specs.Mount{Destination: "/cache", Type: "tmpfs", Source: "tmpfs"}
	p := &Process{Args: []string{"/bin/sh", "-c", "true"}, Env: []string{"A=b"}, Network: NetworkNone, Mounts: []specs.Mount{extra}}
	s, err := newSpec(p, specInput{rootfs: "/r", uid: 1, gid: 2, additionalGids: []uint32{2, 3}, cwd: "/w", nofile: 1024, seccomp: true})
	if err != nil {
		t.Fatal(err)
	}

	if s.Root.Path != "/r" || s.Root.Readonly {
		t.Errorf("root %+v", s.Root)
	}
	if s.Hostname != DefaultHostname {
		t.Errorf("hostname %q", s.Hostname)
	}
	if !slices.Equal(s.Process.Env, []string{"A=b", "PATH=" + DefaultPath}) {
		t.Errorf("env %v", s.Process.Env)
	}
	if s.Process.User.UID != 1 || s.Process.User.GID != 2 || !slices.Equal(s.Process.User.AdditionalGids, []uint32{2, 3}) {
		t.Errorf("user %+v", s.Process.User)
	}
	if s.Process.Terminal || !s.Process.NoNewPrivileges || s.Process.Cwd != "/w" {
		t.Errorf("process %+v", s.Process)
	}
	if len(s.Process.Capabilities.Bounding) != 14 || s.Process.Capabilities.Inheritable != nil || s.Process.Capabilities.Ambient != nil {
		t.Errorf("caps %+v", s.Process.Capabilities)
	}
	var nsTypes []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		nsTypes = append(nsTypes, n.Type)
	}
	if !slices.Contains(nsTypes, specs.NetworkNamespace) || len(nsTypes) != 5 {
		t.Errorf("namespaces %v", nsTypes)
	}
	if last := s.Mounts[len(s.Mounts)-1]; last.Destination != "/cache" {
		t.Errorf("extra mount not last: %+v", last)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if !slices.Contains(dests, d) {
			t.Errorf("missing mount %s in %v", d, dests)
		}
	}
	if s.Linux.CgroupsPath != "" {
		t.Errorf("cgroups %q", s.Linux.CgroupsPath)
	}
	if sc := s.Linux.Seccomp; sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) == 0 {
		t.Errorf("seccomp %+v", sc)
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}

	p.Network = ""
	p.Env = []string{"PATH=/x"}
	p.Hostname = "h"
	s, err = newSpec(p, specInput{rootfs: "/r", cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp profile on a kernel without seccomp")
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			t.Error("host network has a network namespace")
		}
	}
	if !slices.Equal(s.Process.Env, []string{"PATH=/x"}) || s.Hostname != "h" {
		t.Errorf("env %v hostname %q", s.Process.Env, s.Hostname)
	}
}

func TestNewSpecInsecure(t *testing.T) {
	p := &Process{Args: []string{"true"}, Security: SecurityInsecure}
	s, err := newSpec(p, specInput{rootfs: "/r", cwd: "/", seccomp: true, freeLoop: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Process.Capabilities
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
		if !slices.Contains(set, "CAP_SYS_ADMIN") || !slices.Contains(set, "CAP_CHOWN") {
			t.Errorf("caps %v", set)
		}
	}
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("seccomp %v masked %v readonly %v", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if len(s.Linux.Resources.Devices) != 2 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("device cgroup %+v", s.Linux.Resources.Devices)
	}
	var devs []string
	for _, d := range s.Linux.Devices {
		devs = append(devs, d.Path)
	}
	if !slices.Contains(devs, "/dev/fuse") || !slices.Contains(devs, "/dev/loop9") || slices.Contains(devs, "/dev/loop10") {
		t.Errorf("devices %v", devs)
	}
	for _, m := range s.Mounts {
		if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && slices.Contains(m.Options, "ro") {
			t.Errorf("%s read-only: %v", m.Destination, m.Options)
		}
	}

	s, err = newSpec(p, specInput{rootfs: "/r", cwd: "/", userNS: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Devices) != 0 {
		t.Errorf("devices in a user namespace: %v", s.Linux.Devices)
	}
}

func TestRecordMountStubs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	s := recordMountStubs(root, []string{"/etc/hosts", "/a/b/c", "/a/d", "/lib/x/y", "/", "/etc"})
	var rel []string
	for _, p := range s.paths {
		r, _ := filepath.Rel(root, p)
		rel = append(rel, r)
	}
	want := []string{"usr/lib/x/y", "a/b/c", "usr/lib/x", "a/b", "a/d", "etc/hosts", "a"} // deepest first
	if !slices.Equal(rel, want) {
		t.Fatalf("stubs %v, want %v", rel, want)
	}

	// Simulate the runtime creating them, plus content in one.
	for _, d := range []string{"a/b/c", "a/d", "usr/lib/x/y"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a/d/keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.clean(); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"a/b", "usr/lib/x", "etc/hosts"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", gone, err)
		}
	}
	for _, kept := range []string{"a/d/keep", "etc", "lib", "usr/lib"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
}
