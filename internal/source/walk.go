package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/fscopy"
)

// Walk visits what copying it with the --exclude patterns exclude reads:
// the copy engine's own filtered walk (fscopy.Walk) with the source's
// .dockerignore rules, so what a cache key or a mirror made from it holds
// is exactly what the copy writes. Invalid patterns filter nothing here:
// the copy reports them.
func (it Item) Walk(ctx context.Context, exclude []string, fn func(fscopy.Entry) error) error {
	return fscopy.Walk(ctx, it.Fscopy(false), filter(exclude), fn)
}

// filter compiles --exclude patterns validated by fscopy.Copy (nil when
// they are not valid: the copy fails on them).
func filter(patterns []string) *buildctx.Filter {
	f, err := buildctx.NewFilter(patterns)
	if err != nil {
		return nil
	}
	return f
}

// Key is what a cache key takes of copying it with the --exclude patterns
// exclude: the content key of an image source, else the checksum of the
// files the copy reads (Sum).
func (it Item) Key(ctx context.Context, exclude []string) (string, error) {
	if it.Source.key != "" {
		return it.Source.key, nil
	}
	return it.Sum(ctx, exclude)
}

// Sum is the checksum of what copying it with the --exclude patterns
// exclude reads: for every path Walk visits, the relative path, type, mode,
// owner when the source keeps owners, size, content checksum (from the
// build context's stat cache when it has one) and symlink target.
// Modification times do not count.
func (it Item) Sum(ctx context.Context, exclude []string) (string, error) {
	var entries []fscopy.Entry
	err := it.Walk(ctx, exclude, func(e fscopy.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return "", err
	}
	sums, err := it.Source.fileSums(ctx, entries)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for i, e := range entries {
		var uid, gid uint32
		if st, ok := e.Info.Sys().(*syscall.Stat_t); ok && it.Source.keepOwner {
			uid, gid = st.Uid, st.Gid
		}
		link := ""
		if e.Info.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(e.Host)
		}
		size := int64(0)
		if e.Info.Mode().IsRegular() {
			size = e.Info.Size()
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d:%d\x00%d\x00%s\x00%s\n", e.Rel, uint32(e.Info.Mode()), uid, gid, size, sums[i], link)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileSums returns the content checksums of the regular files among
// entries ("" for the others), read in parallel.
func (s *Source) fileSums(ctx context.Context, entries []fscopy.Entry) ([]string, error) {
	sums := make([]string, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for i, e := range entries {
		if !e.Info.Mode().IsRegular() {
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			var err error
			if s.ignore != nil && s.sums != nil {
				sums[i], err = s.sums.FileSum(e.Host, e.Info)
			} else {
				sums[i], err = fileSum(e.Host)
			}
			return err
		})
	}
	return sums, g.Wait()
}

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Mirror makes dst (an empty directory) show the source as its ignore
// rules leave it, as RUN --mount binds the build context: hard links to
// the files (copies across filesystems), symlinks recreated, directories
// with their modes. It walks as a copy of the whole tree does (Walk, no
// --exclude: RUN --mount has none, and BuildKit applies .dockerignore to
// the context it transfers).
func (s *Source) Mirror(ctx context.Context, dst string) error {
	fi, err := os.Lstat(s.root)
	if err != nil {
		return err
	}
	it := Item{Source: s, Rel: "/", Host: s.root, Info: fi}
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	err = it.Walk(ctx, nil, func(e fscopy.Entry) error {
		if e.Rel == "." {
			return nil
		}
		to := filepath.Join(dst, filepath.FromSlash(e.Rel))
		switch {
		case e.Info.IsDir():
			if err := os.Mkdir(to, e.Info.Mode().Perm()); err != nil {
				return err
			}
			// its mode once everything below it is there
			dirs = append(dirs, dirMode{to, e.Info.Mode() & (os.ModePerm | os.ModeSetgid | os.ModeSticky | os.ModeSetuid)})
		case e.Info.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(e.Host)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case e.Info.Mode().IsRegular():
			if err := os.Link(e.Host, to); err != nil {
				if err := fscopy.CopyFile(e.Host, to); err != nil {
					return err
				}
				os.Chmod(to, e.Info.Mode().Perm())
			}
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chmod(dirs[i].path, dirs[i].mode)
	}
	return err
}
