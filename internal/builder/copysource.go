package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/plan"
)

// copySource is where COPY/ADD read from: the build context (ignore rules
// apply, owners become root) or another stage's or image's filesystem
// (owners are kept).
type copySource struct {
	root      string
	ignore    *buildctx.Context // non-nil for the build context
	keepOwner bool
	name      string // for messages: "build context", "stage builder", "image busybox"
	// key identifies the content of a stage or image source for the cache;
	// "" means the files are hashed.
	key string
	// layers, bottom first, are the directories root shows (root is one of
	// them or an overlay of them) when they are immutable: unpacked store
	// layers, or a private extraction. A regular file found in one of them
	// may be hardlinked into a new snapshot instead of copied.
	layers []string
}

// hasMeta reports whether p uses wildcard characters.
func hasMeta(p string) bool { return strings.ContainsAny(p, "*?[") }

// resolve expands the source patterns of a COPY/ADD into items.
func (cs *copySource) resolve(patterns []string, parents bool) ([]copyItem, error) {
	var items []copyItem
	var missing []string
	for _, p := range patterns {
		pivot := "/"
		if parents {
			// "a/./b/c" keeps "b/c"; without a pivot the whole path is kept.
			if before, _, ok := strings.Cut(p, "/./"); ok {
				pivot = path.Clean("/" + before)
			}
		}
		clean := path.Clean("/" + filepath.ToSlash(p))
		var rels []string
		if hasMeta(clean) {
			m, err := cs.glob(clean)
			if err != nil {
				return nil, err
			}
			rels = m
			if len(m) == 0 {
				missing = append(missing, p)
				continue
			}
		} else {
			rels = []string{clean}
		}
		for _, rel := range rels {
			it, err := cs.stat(rel)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: %q not found%s", cs.where(), strings.TrimPrefix(p, "./"), cs.notFoundHint(rel))
			}
			if err != nil {
				return nil, err
			}
			if parents {
				k, err := filepath.Rel(pivot, rel)
				if err != nil {
					return nil, err
				}
				it.keep = filepath.ToSlash(k)
			}
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: no source files were specified: nothing matches %s", cs.where(), strings.Join(quoteAll(missing), ", "))
		}
		return nil, errors.New("no source files were specified")
	}
	return items, nil
}

// notFoundHint explains a missing source: excluded by an ignore rule (with
// its line), or a similar name that does exist.
func (cs *copySource) notFoundHint(rel string) string {
	if cs.ignore != nil {
		if _, err := os.Lstat(filepath.Join(cs.root, rel)); err == nil {
			if line, pat, ok := cs.ignore.ExcludedBy(strings.TrimPrefix(rel, "/")); ok {
				return fmt.Sprintf("; it is excluded by %s line %d (%q)", filepath.Base(cs.ignore.IgnoreFile), line, pat)
			}
		}
	}
	dir, base := path.Split(rel)
	host, err := securejoin.SecureJoin(cs.root, dir)
	if err != nil {
		return ""
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		return ""
	}
	best, bestD := "", 3
	for _, e := range ents {
		if cs.excluded(path.Join(dir, e.Name())) {
			continue
		}
		if d := plan.Distance(strings.ToLower(base), strings.ToLower(e.Name())); d < bestD && d < len(base) {
			best, bestD = e.Name(), d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", strings.TrimPrefix(path.Join(dir, best), "/"))
}

func (cs *copySource) where() string {
	if cs.ignore != nil {
		return "COPY source not found in build context"
	}
	return "COPY source not found in " + cs.name
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

// stat finds rel in the source, following top-level symlinks inside the root.
func (cs *copySource) stat(rel string) (copyItem, error) {
	if cs.excluded(rel) {
		return copyItem{}, fs.ErrNotExist
	}
	host, err := securejoin.SecureJoin(cs.root, rel)
	if err != nil {
		return copyItem{}, err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return copyItem{}, err
	}
	if cs.ignore != nil {
		if r, err := filepath.Rel(cs.root, host); err == nil && cs.excluded("/"+filepath.ToSlash(r)) {
			return copyItem{}, fs.ErrNotExist
		}
	}
	return copyItem{rel: rel, host: host, fi: fi}, nil
}

// excluded reports whether rel is missing from the build context as
// BuildKit transfers it with the .dockerignore rules (buildctx.Context.Excluded):
// every walk of the context skips it, and a directory that the rules exclude
// is still copied (with its own metadata) when something below it is kept.
func (cs *copySource) excluded(rel string) bool {
	return cs.ignore != nil && cs.ignore.Excluded(strings.TrimPrefix(rel, "/"))
}

// glob matches a cleaned absolute pattern component by component.
func (cs *copySource) glob(pattern string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	cur := []string{"/"}
	for i, part := range parts {
		var next []string
		if part == "**" {
			// zero or more directories
			seen := map[string]bool{}
			for _, dir := range cur {
				for _, d := range cs.dirsBelow(dir) {
					if !seen[d] {
						seen[d] = true
						next = append(next, d)
					}
				}
			}
			cur = next
			continue
		}
		for _, dir := range cur {
			if !hasMeta(part) {
				next = append(next, path.Join(dir, part))
				continue
			}
			host, err := securejoin.SecureJoin(cs.root, dir)
			if err != nil {
				continue
			}
			ents, err := os.ReadDir(host)
			if err != nil {
				continue
			}
			for _, e := range ents {
				ok, err := path.Match(part, e.Name())
				if err != nil {
					return nil, fmt.Errorf("bad pattern %q: %w", pattern, err)
				}
				if ok {
					p := path.Join(dir, e.Name())
					if !cs.excluded(p) {
						next = append(next, p)
					}
				}
			}
		}
		if i < len(parts)-1 {
			// keep only what exists, for the next level
			var ex []string
			for _, n := range next {
				if h, err := securejoin.SecureJoin(cs.root, n); err == nil {
					if _, err := os.Stat(h); err == nil {
						ex = append(ex, n)
					}
				}
			}
			next = ex
		}
		cur = next
	}
	var out []string
	for _, c := range cur {
		if h, err := securejoin.SecureJoin(cs.root, c); err == nil {
			if _, err := os.Lstat(h); err == nil {
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// dirsBelow lists dir and every directory below it (not following
// symlinks), skipping excluded ones: the matches of "**".
func (cs *copySource) dirsBelow(dir string) []string {
	out := []string{dir}
	host, err := securejoin.SecureJoin(cs.root, dir)
	if err != nil {
		return out
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		return out
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if e.IsDir() && !cs.excluded(p) {
			out = append(out, cs.dirsBelow(p)...)
		}
	}
	return out
}
