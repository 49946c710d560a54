// Package testtree makes and lists small file trees for tests: random trees
// and .dockerignore-like patterns for property tests of walks and copies,
// and trees described in one line per entry. Only tests import it.
package testtree

import (
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// names are the entry names of random trees: few, so that random patterns
// match some of them.
var names = []string{"a", "b", "c.txt", "d.log", "keep"}

// patterns are the candidates of Patterns, with and without "!" exceptions.
var patterns = []string{"a", "*.log", "**", "!a/b", "!keep", "b/*", "!*/c.txt", "c.txt", "**/keep", "!b", "a/**", "!**/d.log", "*/a", "!a/a/keep"}

// Random fills dir with a random tree of directories (at most 3 deep),
// files holding their path, symlinks to "a" and, with fifos, named pipes.
func Random(t testing.TB, rnd *rand.Rand, dir string, fifos bool) {
	t.Helper()
	random(t, rnd, dir, 0, fifos)
}

func random(t testing.TB, rnd *rand.Rand, dir string, depth int, fifos bool) {
	for _, name := range names {
		p := filepath.Join(dir, name)
		var err error
		switch r := rnd.Intn(7); {
		case r < 2 && depth < 3:
			if err = os.Mkdir(p, 0o755); err == nil {
				random(t, rnd, p, depth+1, fifos)
			}
		case r < 4:
			err = os.WriteFile(p, []byte(p), 0o644)
		case r == 4:
			err = os.Symlink("a", p)
		case r == 5 && depth > 0 && fifos:
			err = syscall.Mkfifo(p, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Patterns picks some .dockerignore-like patterns at random.
func Patterns(rnd *rand.Rand) []string {
	var out []string
	for _, p := range patterns {
		if rnd.Intn(4) == 0 {
			out = append(out, p)
		}
	}
	return out
}

// List lists the paths below dir (slash separated, sorted).
func List(t testing.TB, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

// Make creates entries below dir, one per string: "a/b" a file holding its
// name, "a/" an empty directory, "a->t" a symlink to t; parents as needed.
func Make(t testing.TB, dir string, entries ...string) {
	t.Helper()
	for _, f := range entries {
		full := filepath.Join(dir, filepath.FromSlash(f))
		var err error
		switch {
		case strings.HasSuffix(f, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.Contains(f, "->"):
			name, to, _ := strings.Cut(f, "->")
			from := filepath.Join(dir, filepath.FromSlash(name))
			if err = os.MkdirAll(filepath.Dir(from), 0o755); err == nil {
				err = os.Symlink(to, from)
			}
		default:
			if err = os.MkdirAll(filepath.Dir(full), 0o755); err == nil {
				err = os.WriteFile(full, []byte(f), 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
