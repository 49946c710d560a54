package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCacheDockerignoreAllowlist: with a .dockerignore allowlist ("**" and a
// wildcard exception), a COPY's cache key covers what BuildKit transfers:
// folders that are only walked for the exception (nothing below them kept)
// and excluded files are not part of it, so adding them hits the cache,
// while a new kept file misses and is copied with its parent folder. The
// copy itself leaves the walked folders out (issue 13).
func TestCacheDockerignoreAllowlist(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{
		"Dockerfile":    "FROM busybox\nCOPY . /all/\nRUN find /all | sort > /found\n",
		".dockerignore": "**\n!*/keep\n",
		"a/keep":        "a\n",
		"b/other":       "b\n",
	})
	const copyStep = "[stage-0 2/3] COPY . /all/"
	outDir := filepath.Join(t.TempDir(), "out") // not in the context
	build := func() (map[string]string, string) {
		os.RemoveAll(outDir)
		r := strata(t, store, "build", "--progress", "plain", "--output", "type=local,dest="+outDir, ctx)
		return stepStatus(t, r.Stderr), r.Stderr
	}
	found := func() string {
		b, err := os.ReadFile(filepath.Join(outDir, "found"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}

	if st, out := build(); st[copyStep] != "DONE" {
		t.Fatalf("first build: COPY %q\n%s", st[copyStep], out)
	}
	if got, want := found(), "/all /all/a /all/a/keep"; got != want {
		t.Errorf("first build copied %q, want %q (b is walked for the exception but keeps nothing)", got, want)
	}

	// Walked folders and excluded files that keep nothing: same transfer.
	if err := os.MkdirAll(filepath.Join(ctx, "c", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "b", "more"), []byte("more\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, out := build(); st[copyStep] != "CACHED" {
		t.Errorf("after adding only excluded paths, COPY %q, want CACHED\n%s", st[copyStep], out)
	}

	// A kept file below a folder the rules exclude.
	if err := os.WriteFile(filepath.Join(ctx, "c", "keep"), []byte("c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, out := build(); st[copyStep] != "DONE" {
		t.Fatalf("after adding c/keep, COPY %q, want DONE\n%s", st[copyStep], out)
	}
	if got, want := found(), "/all /all/a /all/a/keep /all/c /all/c/keep"; got != want {
		t.Errorf("after adding c/keep the image has %q, want %q", got, want)
	}
}
