package source

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

	"github.com/strata-build/strata/internal/plan"
)

// hasMeta reports whether p uses wildcard characters.
func hasMeta(p string) bool { return strings.ContainsAny(p, "*?[") }

// Match expands the source patterns of a COPY/ADD into items: a pattern
// with wildcards (*, ?, [...], and ** for any number of directories) by
// what it matches, others by the path they name. With parents (COPY
// --parents) each item keeps its path below the pattern's "/./" pivot, or
// its whole path. A missing path or a pattern that matches nothing is an
// error that names the source and, when it can, the .dockerignore rule that
// excluded the path or a similar name that exists.
func (s *Source) Match(patterns []string, parents bool) ([]Item, error) {
	var items []Item
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
			m, err := s.Glob(clean)
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
			it, err := s.Stat(rel)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: %q not found%s", s.where(), strings.TrimPrefix(p, "./"), s.NotFoundHint(rel))
			}
			if err != nil {
				return nil, err
			}
			if parents {
				k, err := filepath.Rel(pivot, rel)
				if err != nil {
					return nil, err
				}
				it.Keep = filepath.ToSlash(k)
			}
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: no source files were specified: nothing matches %s", s.where(), strings.Join(quoteAll(missing), ", "))
		}
		return nil, errors.New("no source files were specified")
	}
	return items, nil
}

// NotFoundHint explains a missing source: excluded by an ignore rule (with
// its line), or a similar name that does exist.
func (s *Source) NotFoundHint(rel string) string {
	if s.ignore != nil {
		if _, err := os.Lstat(filepath.Join(s.root, rel)); err == nil {
			if line, pat, ok := s.ignore.ExcludedBy(strings.TrimPrefix(rel, "/")); ok {
				return fmt.Sprintf("; it is excluded by %s line %d (%q)", filepath.Base(s.ignore.IgnoreFile), line, pat)
			}
		}
	}
	dir, base := path.Split(rel)
	host, err := securejoin.SecureJoin(s.root, dir)
	if err != nil {
		return ""
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		return ""
	}
	best, bestD := "", 3
	for _, e := range ents {
		if s.excluded(path.Join(dir, e.Name())) {
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

// where begins the errors about missing files of the source (and those of
// the copy engine: fscopy.Source.Name).
func (s *Source) where() string {
	if s.ignore != nil {
		return "COPY source not found in build context"
	}
	return "COPY source not found in " + s.name
}

func quoteAll(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strconv.Quote(v)
	}
	return out
}

// Stat finds rel (cleaned, with a leading "/") in the source, following
// symlinks inside the root; a path the .dockerignore rules exclude does not
// exist.
func (s *Source) Stat(rel string) (Item, error) {
	if s.excluded(rel) {
		return Item{}, fs.ErrNotExist
	}
	host, err := securejoin.SecureJoin(s.root, rel)
	if err != nil {
		return Item{}, err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return Item{}, err
	}
	if s.ignore != nil {
		if r, err := filepath.Rel(s.root, host); err == nil && s.excluded("/"+filepath.ToSlash(r)) {
			return Item{}, fs.ErrNotExist
		}
	}
	return Item{Source: s, Rel: rel, Host: host, Info: fi}, nil
}

// excluded reports whether rel is missing from the build context as
// BuildKit transfers it with the .dockerignore rules (buildctx.Context.Excluded):
// every walk of the context skips it, and a directory that the rules exclude
// is still copied (with its own metadata) when something below it is kept.
func (s *Source) excluded(rel string) bool {
	return s.ignore != nil && s.ignore.Excluded(strings.TrimPrefix(rel, "/"))
}

// Glob matches a cleaned absolute pattern component by component (** for
// zero or more directories), leaving out what the ignore rules exclude,
// and returns the existing matches, sorted.
func (s *Source) Glob(pattern string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	cur := []string{"/"}
	for i, part := range parts {
		var next []string
		if part == "**" {
			// zero or more directories
			seen := map[string]bool{}
			for _, dir := range cur {
				for _, d := range s.dirsBelow(dir) {
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
			host, err := securejoin.SecureJoin(s.root, dir)
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
					if !s.excluded(p) {
						next = append(next, p)
					}
				}
			}
		}
		if i < len(parts)-1 {
			// keep only what exists, for the next level
			var ex []string
			for _, n := range next {
				if h, err := securejoin.SecureJoin(s.root, n); err == nil {
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
		if h, err := securejoin.SecureJoin(s.root, c); err == nil {
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
func (s *Source) dirsBelow(dir string) []string {
	out := []string{dir}
	host, err := securejoin.SecureJoin(s.root, dir)
	if err != nil {
		return out
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		return out
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if e.IsDir() && !s.excluded(p) {
			out = append(out, s.dirsBelow(p)...)
		}
	}
	return out
}
