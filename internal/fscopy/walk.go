package fscopy

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/strata-build/strata/internal/buildctx"
)

// Entry is one path a walk visits.
type Entry struct {
	// Rel is the path relative to the walked item: "." for the item
	// itself, then "a", "a/b", ...
	Rel string
	// Host is the path on the host.
	Host string
	// Info is the Lstat of Host (for the item itself: of the file a
	// symlink item leads to).
	Info os.FileInfo
}

// Walk visits what copying it reads, with the filters Copy applies: the
// item itself (Rel ".", a symlink item followed within its source's root
// when its target exists) and, when that is a directory, every path below
// it that the source's Ignore rules and the exclude filter (--exclude,
// matched relative to the item; nil: none) keep, parents before children,
// each directory's entries in name order. A directory that the filters
// exclude but that holds a kept path is visited, as the copy writes it.
// A symlink below the item is visited, not followed. An error of fn stops
// the walk and is returned.
func Walk(ctx context.Context, it Item, exclude *buildctx.Filter, fn func(Entry) error) error {
	host, fi, ok, err := follow(it)
	if err != nil {
		return err
	}
	if !ok {
		host, fi = it.Host, it.Info
	}
	if err := fn(Entry{Rel: ".", Host: host, Info: fi}); err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	return walkBelow(ctx, it.Source, host, it.Rel, buildctx.NewTree(host, exclude), fn)
}

// follow returns the host path and stat of what it names: it itself, or
// for a symlink the file it leads to within its source's root (ok false
// when there is none).
func follow(it Item) (host string, fi os.FileInfo, ok bool, err error) {
	if it.Info.Mode()&os.ModeSymlink == 0 {
		return it.Host, it.Info, true, nil
	}
	real, err := securejoin.SecureJoin(it.Source.Root, it.Rel)
	if err != nil {
		return "", nil, false, err
	}
	rfi, err := os.Stat(real)
	if err != nil {
		return "", nil, false, nil
	}
	return real, rfi, true, nil
}

// walkBelow calls fn for every path below the directory dirHost, which is
// srcRel in src, that src's Ignore rules and excl (the tree of the walked
// item seen through --exclude) keep: the one filtered walk of a copy and
// of its cache key.
func walkBelow(ctx context.Context, src *Source, dirHost, srcRel string, excl *buildctx.Tree, fn func(Entry) error) error {
	var walk func(dirHost, dirRel, under string) error
	walk = func(dirHost, dirRel, under string) error {
		ents, err := os.ReadDir(dirHost)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, itemRel := path.Join(dirRel, e.Name()), path.Join(under, e.Name())
			if excl.Excluded(itemRel) || src.ignored(rel) {
				continue
			}
			h := filepath.Join(dirHost, e.Name())
			fi, err := os.Lstat(h)
			if err != nil {
				return err
			}
			if err := fn(Entry{Rel: itemRel, Host: h, Info: fi}); err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(h, rel, itemRel); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(dirHost, srcRel, "")
}

// ignored reports whether the Ignore rules leave rel (relative to the
// source's root, with a leading "/") out.
func (s *Source) ignored(rel string) bool {
	return s != nil && s.Ignore != nil && s.Ignore.Excluded(strings.TrimPrefix(rel, "/"))
}
