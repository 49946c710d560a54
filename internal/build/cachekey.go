package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/cache"
)

// treeEntry is one file of a COPY source, as it is hashed for the cache key.
type treeEntry struct {
	rel  string // relative to the copied item
	host string
	fi   os.FileInfo
}

// itemSum is the checksum of what copying it reads: for every file below it
// (filtered exactly as the copy filters it) the relative path, type, mode,
// owner when the source keeps owners, size, content checksum and symlink
// target. Modification times do not count.
func (sb *stageBuilder) itemSum(ctx context.Context, cs *copySource, it copyItem, o copyOptions) (string, error) {
	host, fi := it.host, it.fi
	if fi.Mode()&os.ModeSymlink != 0 {
		real, err := securejoin.SecureJoin(cs.root, it.rel)
		if err != nil {
			return "", err
		}
		if rfi, err := os.Stat(real); err == nil {
			host, fi = real, rfi
		}
	}
	entries := []treeEntry{{rel: ".", host: host, fi: fi}}
	if fi.IsDir() {
		excl := buildctx.NewTree(host, mustFilter(o.exclude))
		var walk func(dirHost, dirRel, under string) error
		walk = func(dirHost, dirRel, under string) error {
			ents, err := os.ReadDir(dirHost)
			if err != nil {
				return err
			}
			for _, e := range ents {
				rel := path.Join(dirRel, e.Name())
				if excl.Excluded(path.Join(under, e.Name())) {
					continue
				}
				if cs.excluded(rel) {
					continue
				}
				h := filepath.Join(dirHost, e.Name())
				efi, err := os.Lstat(h)
				if err != nil {
					return err
				}
				entries = append(entries, treeEntry{rel: path.Join(under, e.Name()), host: h, fi: efi})
				if efi.IsDir() {
					if err := walk(h, rel, path.Join(under, e.Name())); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if err := walk(host, it.rel, ""); err != nil {
			return "", err
		}
	}
	sums := make([]string, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for i, e := range entries {
		if !e.fi.Mode().IsRegular() {
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			var err error
			if cs.ignore != nil && sb.r.sums != nil {
				sums[i], err = sb.r.sums.FileSum(e.host, e.fi)
			} else {
				sums[i], err = fileSum(e.host)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	h := sha256.New()
	for i, e := range entries {
		var uid, gid uint32
		if st, ok := e.fi.Sys().(*syscall.Stat_t); ok && cs.keepOwner {
			uid, gid = st.Uid, st.Gid
		}
		link := ""
		if e.fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(e.host)
		}
		size := int64(0)
		if e.fi.Mode().IsRegular() {
			size = e.fi.Size()
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d:%d\x00%d\x00%s\x00%s\n", e.rel, uint32(e.fi.Mode()), uid, gid, size, sums[i], link)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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

// copyInputs are the cache key inputs of a COPY/ADD: the instruction's
// options and, per source item, what it reads.
func (sb *stageBuilder) copyInputs(ctx context.Context, verb string, cs *copySource, from string, items []copyItem, dest, chown, chmod string, o copyOptions) ([]cache.Input, error) {
	in := copyRequest{verb: verb, dest: dest, chown: chown, chmod: chmod, o: o}.optionInputs()
	if from != "" {
		in = append(in, cache.Input{Name: "from", Value: from})
	}
	for _, it := range items {
		src := cs
		if it.src != nil {
			src = it.src
		}
		name := "source " + strings.TrimPrefix(it.rel, "/")
		if it.keep != "" {
			name += " as " + it.keep
		}
		if src.key != "" {
			// an image: its digest decides the content (stages are hashed
			// like the context, so an unchanged output of a rebuilt stage
			// still hits)
			in = append(in, cache.Input{Name: name, Value: src.key})
			continue
		}
		sum, err := sb.itemSum(ctx, src, it, o)
		if err != nil {
			return nil, err
		}
		v := sum
		if it.noUnpack {
			v += " (no unpack)"
		}
		in = append(in, cache.Input{Name: name, Value: v})
	}
	return in, nil
}

// sortedEnv renders an env list for a key.
func sortedEnv(env []string) string {
	e := append([]string(nil), env...)
	sort.Strings(e)
	return strings.Join(e, "\x00")
}
