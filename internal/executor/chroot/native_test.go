package chroot

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
	"github.com/strata-build/strata/internal/snapshot/native"
)

// TestNativeLayer runs steps in snapshots of the native snapshotter, as a
// build in an unprivileged container does, and checks that each diff (the
// next layer) holds exactly what the command changed: nothing of the device
// nodes, host files and directories the run needed and the rootfs lacked.
func TestNativeLayer(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	bare := testsuite.Rootfs(t, true) // no /dev, /proc, /etc/hosts, /etc/resolv.conf
	withDev := testsuite.Rootfs(t, true)
	for _, d := range []string{"dev", "proc", "sys", "tmp"} {
		if err := os.Mkdir(filepath.Join(withDev, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		parent string
		user   string
		cwd    string
		script string
		want   string // the diff's entries
	}{
		{"nothing", bare, "", "", "cat /etc/hosts /etc/resolv.conf >/dev/null; head -c 4 /dev/urandom >/dev/null", ""},
		{"nothing, /dev there", withDev, "", "", "echo x > /dev/null; test -c /dev/zero", ""},
		{"a file", bare, "", "", "echo new > /etc/new", "etc etc/new"},
		{"in /dev", withDev, "", "", "echo x > /dev/null; mkdir /dev/own", "dev dev/own"},
		{"as a user, in a new WORKDIR", bare, "app", "/home/app", "echo x > file", "home home/app home/app/file"},
		{"replaces a host file", bare, "", "", "rm /etc/hosts; echo own > /etc/hosts", "etc etc/hosts"},
	} {
		sn, err := native.New(t.TempDir()).Prepare(ctx, []string{tc.parent})
		if err != nil {
			t.Fatal(err)
		}
		code, out, err := run(t, &Runner{}, executor.Process{Rootfs: sn.Root(), User: tc.user, Cwd: tc.cwd, Args: []string{"/bin/sh", "-c", tc.script}})
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

// entries lists the paths below dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
