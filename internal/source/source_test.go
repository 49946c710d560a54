package source

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/snapshot/native"
	"github.com/strata-build/strata/internal/snapshot/overlay"
)

// writeTree makes the files (path → content; a trailing "/" makes a
// directory, "a->b" a symlink a to b) below dir.
func writeTree(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		var err error
		switch name, to, ok := strings.Cut(f, "->"); {
		case ok:
			if err = os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err == nil {
				err = os.Symlink(to, filepath.Join(dir, name))
			}
		case strings.HasSuffix(f, "/"):
			err = os.MkdirAll(filepath.Join(dir, f), 0o755)
		default:
			p := filepath.Join(dir, f)
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte("content of "+f), 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// snapshotters are the real snapshotters a view can come from: overlay
// (mounts; root only) and native (no mounts).
func snapshotters(t *testing.T) map[string]snapshot.Snapshotter {
	out := map[string]snapshot.Snapshotter{"native": native.New(t.TempDir())}
	if os.Geteuid() == 0 {
		out["overlay"] = overlay.New(t.TempDir())
	} else {
		t.Log("not root: no overlay views")
	}
	return out
}

// TestOpen: a view of two layers shows their union (the upper layer's
// whiteout hides a lower file), keeps owners, names its layers and key,
// and is gone after Close, which may come twice.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	for name, snaps := range snapshotters(t) {
		t.Run(name, func(t *testing.T) {
			lower, upper := t.TempDir(), t.TempDir()
			writeTree(t, lower, "bin/sh", "etc/gone", "etc/kept")
			writeTree(t, upper, "bin/ls", "etc/")
			if err := os.Chown(filepath.Join(upper, "bin/ls"), 1000, 1000); err != nil {
				t.Fatal(err)
			}
			// a whiteout (character device 0/0) deletes etc/gone
			if err := mknodWhiteout(filepath.Join(upper, "etc/gone")); err != nil {
				t.Fatal(err)
			}
			src, err := Open(ctx, snaps, []string{lower, upper}, "image busybox", "image sha256:abc")
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if src.Name() != "image busybox" || src.Key() != "image sha256:abc" || src.IsContext() {
				t.Errorf("name %q key %q context %v", src.Name(), src.Key(), src.IsContext())
			}
			if l := src.Layers(); len(l) != 2 || l[0] != lower || l[1] != upper {
				t.Errorf("layers %q", l)
			}
			items, err := src.Match([]string{"bin/*", "etc/kept"}, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range items {
				got = append(got, it.Rel)
			}
			if strings.Join(got, " ") != "/bin/ls /bin/sh /etc/kept" {
				t.Errorf("matched %q", got)
			}
			if _, err := src.Stat("/etc/gone"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a whited-out file: %v", err)
			}
			// owners are kept: they count in the key
			fi := items[0].Fscopy(false)
			if !fi.Source.KeepOwner || fi.Source.Ignore != nil || len(fi.Source.Layers) != 2 {
				t.Errorf("copy source %+v", fi.Source)
			}
			if k, err := items[0].Key(ctx, nil); err != nil || k != "image sha256:abc" {
				t.Errorf("key %q %v", k, err)
			}
			root := src.Root()
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			if err := src.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if name == "overlay" {
				if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the view is still there: %v", err)
				}
			}
		})
	}
}

// TestOpenNoLayers: a view of no layers is an empty directory.
func TestOpenNoLayers(t *testing.T) {
	for name, snaps := range snapshotters(t) {
		src, err := Open(context.Background(), snaps, nil, "stage empty", "")
		if err != nil {
			t.Fatal(name, err)
		}
		ents, err := os.ReadDir(src.Root())
		if err != nil || len(ents) != 0 {
			t.Errorf("%s: %d entries, %v", name, len(ents), err)
		}
		if err := src.Close(); err != nil {
			t.Error(name, err)
		}
	}
}

// TestOpenFails: a view of a missing layer is an error, not a Source.
func TestOpenFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay)")
	}
	_, err := Open(context.Background(), overlay.New(t.TempDir()), []string{"/nonexistent/a", "/nonexistent/b"}, "x", "")
	if err == nil {
		t.Fatal("a view of missing layers opened")
	}
}

// TestExtracted: an extraction is its own only layer, keeps owners and is
// removed by Close.
func TestExtracted(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "usr/bin/x")
	src := Extracted(dir, "image x", "image sha256:1")
	if l := src.Layers(); len(l) != 1 || l[0] != dir || src.Root() != dir || src.Key() != "image sha256:1" {
		t.Errorf("layers %q root %q key %q", l, src.Root(), src.Key())
	}
	if !src.Fscopy(false).KeepOwner {
		t.Error("an extraction does not keep owners")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the extraction is still there: %v", err)
	}
}

// TestWithOwners: the seed of a cache mount reads the same tree with the
// owners kept, without ignore rules or layers, and does not own it.
func TestWithOwners(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "a", "b.log")
	if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bctx, err := buildctx.Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ctxSrc := Context(bctx, nil)
	if !ctxSrc.IsContext() || ctxSrc.Name() != "build context" || ctxSrc.Layers() != nil {
		t.Errorf("context %v %q %q", ctxSrc.IsContext(), ctxSrc.Name(), ctxSrc.Layers())
	}
	if _, err := ctxSrc.Stat("/b.log"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an ignored file: %v", err)
	}
	seed := ctxSrc.WithOwners("cache source x")
	if seed.IsContext() || seed.Name() != "cache source x" || !seed.Fscopy(false).KeepOwner {
		t.Errorf("seed %v %q", seed.IsContext(), seed.Name())
	}
	if _, err := seed.Stat("/b.log"); err != nil {
		t.Errorf("the seed applies ignore rules: %v", err)
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("closing the seed removed the tree: %v", err)
	}
	var nilSrc *Source
	if err := nilSrc.Close(); err != nil {
		t.Errorf("Close of nil: %v", err)
	}
}

// TestFscopyRecord: with record, a copy from the build context records the
// checksums it computes in the context's stat cache; without, it only
// looks checksums up there (Record unset), and other sources have none.
func TestFscopyRecord(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "f")
	bctx, err := buildctx.Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	sums := buildctx.OpenSums(filepath.Join(t.TempDir(), "sums.json"))
	src := Context(bctx, sums)
	if fs := src.Fscopy(true); fs.Sums != sums || !fs.Record || fs.Ignore == nil || fs.KeepOwner || fs.Name != "COPY source not found in build context" {
		t.Errorf("recording copy source %+v", fs)
	}
	if fs := src.Fscopy(false); fs.Sums != sums || fs.Record {
		t.Error("a copy records without record")
	}
	if fs := Dir(dir, "heredoc").Fscopy(true); fs.Sums != nil || fs.Ignore != nil || fs.Name != "COPY source not found in heredoc" {
		t.Errorf("plain dir copy source %+v", fs)
	}
	it, err := src.Stat("/f")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if _, err := fscopy.Copy(context.Background(), fscopy.Target{Root: rootfs}, []fscopy.Item{it.Fscopy(true)}, "/", fscopy.Options{}); err != nil {
		t.Fatal(err)
	}
	// the sum the copy recorded is what Sum finds, from the cache
	a, err := it.Sum(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Item{Source: Dir(dir, "x"), Rel: it.Rel, Host: it.Host, Info: it.Info}.Sum(context.Background(), nil)
	if err != nil || a != b {
		t.Errorf("sum from the stat cache %s, read %s (%v)", a, b, err)
	}
}

func mknodWhiteout(p string) error {
	return unix.Mknod(p, unix.S_IFCHR, 0)
}
