package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/layer"
)

// fuzzSentinel is a fixed directory the seed corpus aims absolute paths and
// symlinks at (a temp dir's name cannot be in a seed file). It is created
// when missing and must never change.
const fuzzSentinel = "/tmp/strata-fuzz-sentinel"

// maxDotDot is how far up a name or link may climb: the extraction
// directories are this deep below the test's base directory, so even an
// escaping bug stays inside it, where it is seen.
const maxDotDot = 4

// safeToTry reports whether the stream's names and link targets stay where a
// bug could only write below base or in the sentinel directory: the fuzzer
// runs as root, and an extraction bug must not damage the host. The stream
// is read as Apply reads it (same decompression, same tar reader).
func safeToTry(stream []byte) bool {
	zr, err := layer.Decompress(bytes.NewReader(stream))
	if err != nil {
		return true // Apply fails the same way
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return true
		}
		for _, p := range []string{h.Name, h.Linkname} {
			if strings.HasPrefix(p, "/") && !strings.HasPrefix(path.Clean(p), fuzzSentinel) {
				return false
			}
			if strings.Count(p, "..") > maxDotDot {
				return false
			}
		}
	}
}

// treeDigest describes every entry below dir.
func treeDigest(dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		sum := ""
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			sum = fmt.Sprintf("%x", sha256.Sum256(c))
		}
		fmt.Fprintf(&b, "%s %v %d %s\n", p, fi.Mode(), fi.Size(), sum)
		return nil
	})
	return b.String()
}

func ensureSentinel(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(fuzzSentinel); err != nil && !fuzzing() {
		// Made for this run of the seed corpus: removed after it. (Fuzzing
		// workers share it and leave it.)
		tb.Cleanup(func() { os.RemoveAll(fuzzSentinel) })
	}
	if err := os.MkdirAll(filepath.Join(fuzzSentinel, "sub"), 0o755); err != nil {
		tb.Fatal(err)
	}
	keep := filepath.Join(fuzzSentinel, "keep")
	if _, err := os.Stat(keep); err != nil {
		os.WriteFile(keep, []byte("untouched\n"), 0o644)
	}
	return treeDigest(fuzzSentinel)
}

// fuzzing reports whether this process runs the fuzzer (go test -fuzz),
// not just the seed corpus.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// FuzzApply feeds arbitrary bytes to Apply, ApplyFlat and Unpack (each into
// its own directory four levels below a base directory that also holds a
// sentinel sibling): none may panic or hang, and nothing outside the target
// directories may change: not the sentinel sibling, not the rest of base,
// not the fixed sentinel the seeds aim absolute paths at.
func FuzzApply(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("Apply sets owners and makes device nodes: needs root")
	}
	global := ensureSentinel(f)
	f.Add([]byte{})
	f.Add([]byte("not a tar at all"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		if len(stream) > 1<<20 || !safeToTry(stream) {
			t.Skip()
		}
		base := t.TempDir()
		sentinel := filepath.Join(base, "sentinel")
		os.MkdirAll(filepath.Join(sentinel, "sub"), 0o755)
		os.WriteFile(filepath.Join(sentinel, "keep"), []byte("keep\n"), 0o644)
		deep := filepath.Join(base, "a", "b", "c")
		dirs := map[string]string{}
		for _, n := range []string{"apply", "flat", "unpack"} {
			dirs[n] = filepath.Join(deep, n)
			if err := os.MkdirAll(dirs[n], 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// Unpack extracts into an existing tree (a rootfs): give it symlinks
		// that point out of it, to be written through.
		os.Symlink(sentinel, filepath.Join(dirs["unpack"], "out"))
		os.Symlink("../../../../sentinel", filepath.Join(dirs["unpack"], "up"))
		os.Symlink(fuzzSentinel, filepath.Join(dirs["unpack"], "global"))
		before := treeDigest(sentinel)

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		errs := map[string]error{}
		_, errs["apply"] = layer.Apply(ctx, dirs["apply"], bytes.NewReader(stream), layer.ApplyOptions{MaxEntries: 10000})
		errs["flat"] = layer.ApplyFlat(ctx, dirs["flat"], bytes.NewReader(stream), func(string) bool { return true })
		errs["unpack"] = layer.Unpack(ctx, dirs["unpack"], bytes.NewReader(stream), nil, layer.ApplyOptions{})
		for n, err := range errs {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s did not finish within 20s on a %d-byte stream", n, len(stream))
			}
		}

		if got := treeDigest(sentinel); got != before {
			t.Errorf("the sentinel beside the target directories changed:\n%s", got)
		}
		if got := treeDigest(fuzzSentinel); got != global {
			t.Errorf("%s changed:\n%s", fuzzSentinel, got)
		}
		// Nothing new anywhere in base but inside the three directories.
		var outside []string
		filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			switch p {
			case dirs["apply"], dirs["flat"], dirs["unpack"], sentinel:
				return filepath.SkipDir
			case base, filepath.Join(base, "a"), filepath.Join(base, "a", "b"), deep:
				return nil
			}
			outside = append(outside, p)
			return nil
		})
		if len(outside) > 0 {
			sort.Strings(outside)
			t.Errorf("written outside the target directories: %q (errors: %v)", outside, errs)
		}
		// Make the tree removable by TempDir's cleanup (entries may be 0000).
		filepath.WalkDir(deep, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// TestFuzzApplySeedsAreTars checks the seed corpus still holds tar streams
// (a corpus of garbage would fuzz only the header parser).
func TestFuzzApplySeedsAreTars(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzApply", "*"))
	if len(files) < 10 {
		t.Fatalf("expected the FuzzApply seed corpus under testdata/fuzz/FuzzApply, found %d files", len(files))
	}
	tars := 0
	for _, p := range files {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("ustar")) || bytes.Contains(b, []byte(`\x1f\x8b`)) {
			tars++
		}
	}
	if tars < len(files)/2 {
		t.Errorf("only %d of %d seeds look like tar streams", tars, len(files))
	}
}
