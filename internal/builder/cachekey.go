package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/fscopy"
)

// keyEntries lists what copying it (from cs, with the --exclude patterns
// exclude) reads, as the copy reads it: fscopy.Walk is the copy's own
// filtered walk, so the key and the copy cannot disagree about which files
// count.
func keyEntries(ctx context.Context, cs *copySource, it copyItem, exclude []string) ([]fscopy.Entry, error) {
	var entries []fscopy.Entry
	item := fscopy.Item{Source: cs.fscopy(nil), Rel: it.rel, Host: it.host, Info: it.fi}
	err := fscopy.Walk(ctx, item, mustFilter(exclude), func(e fscopy.Entry) error {
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// itemSum is the checksum of what copying it reads: for every file below it
// (filtered exactly as the copy filters it) the relative path, type, mode,
// owner when the source keeps owners, size, content checksum and symlink
// target. Modification times do not count.
func (sb *stageBuilder) itemSum(ctx context.Context, cs *copySource, it copyItem, o copyOptions) (string, error) {
	entries, err := keyEntries(ctx, cs, it, o.exclude)
	if err != nil {
		return "", err
	}
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
			if cs.ignore != nil && sb.r.sums != nil {
				sums[i], err = sb.r.sums.FileSum(e.Host, e.Info)
			} else {
				sums[i], err = fileSum(e.Host)
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
		if st, ok := e.Info.Sys().(*syscall.Stat_t); ok && cs.keepOwner {
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
