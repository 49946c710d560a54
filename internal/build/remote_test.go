package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/dfgitutil"
)

// An ADD git ref that starts with "-" must never reach git as an option
// (--upload-pack runs a command on the building host): it is refused, and
// a remote that looks like an option is passed after "--".
func TestFetchGitRefusesOptionRefs(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	for _, args := range [][]string{{"init", "-q", repo}, {"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	canary := filepath.Join(dir, "canary")
	for _, ref := range []string{"--upload-pack=touch " + canary + ";git-upload-pack", "-q"} {
		_, err := fetchGit(context.Background(), &dfgitutil.GitRef{Remote: "file://" + repo, Ref: ref}, t.TempDir(), false)
		if err == nil || !strings.Contains(err.Error(), "invalid git ref") {
			t.Errorf("ref %q: err = %v, want invalid git ref", ref, err)
		}
	}
	_, err := fetchGit(context.Background(), &dfgitutil.GitRef{Remote: "--upload-pack=touch " + canary + ";git-upload-pack", Ref: "main"}, t.TempDir(), false)
	if err == nil {
		t.Error("remote that looks like an option: want an error")
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("git ran a command named in the ref")
	}
	if _, err := fetchGit(context.Background(), &dfgitutil.GitRef{Remote: "file://" + repo}, t.TempDir(), false); err != nil {
		t.Errorf("plain fetch: %v", err)
	}
}
