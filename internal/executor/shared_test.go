package executor

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestMkdirAllOwned(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A symlink is resolved inside root: /link/x is root/a/x.
	if err := os.Symlink("/a", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	created, err := MkdirAllOwned(root, "/link/b/c", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "a/b"), filepath.Join(root, "a/b/c")}
	if !slices.Equal(created, want) {
		t.Errorf("created %q, want %q", created, want)
	}
	for _, p := range want {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(root, "a")); st.Mode().Perm() != 0o700 {
		t.Errorf("existing directory changed: %v", st.Mode())
	}
	if created, err := MkdirAllOwned(root, "/a/b/c", uid, gid); err != nil || len(created) != 0 {
		t.Errorf("again: %q %v", created, err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MkdirAllOwned(root, "/file/d", uid, gid); err == nil {
		t.Error("a file as parent: no error")
	}
}

func TestWithDefaultPath(t *testing.T) {
	if got := WithDefaultPath([]string{"A=b"}); !slices.Equal(got, []string{"A=b", "PATH=" + DefaultPath}) {
		t.Errorf("got %q", got)
	}
	if got := WithDefaultPath([]string{"PATH=/x", "A=b"}); !slices.Equal(got, []string{"PATH=/x", "A=b"}) {
		t.Errorf("got %q", got)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 3", 3}, {"kill -9 $$", 137}, {"kill -TERM $$", 143}} {
		err := exec.Command("/bin/sh", "-c", tc.script).Run()
		var ws syscall.WaitStatus
		if ee, ok := err.(*exec.ExitError); ok {
			ws = ee.Sys().(syscall.WaitStatus)
		} else if err != nil {
			t.Fatal(err)
		}
		if code, ok := ExitCode(ws); !ok || code != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.script, code, ok, tc.want)
		}
	}
}
