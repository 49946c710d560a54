package buildctx

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
)

// Filter applies exclude patterns (the lines of a .dockerignore file) to a
// directory tree the way BuildKit's context transfer does (the filtered
// walk of github.com/tonistiigi/fsutil):
//
//   - a path is matched with the results of its parent directory
//     (patternmatcher's MatchesUsingParentResults), not on its own: a pattern
//     that matched a directory holds for everything below it, and a pattern
//     skipped for the directory (an exception while nothing matched yet, a
//     pattern while the directory was already excluded) is tried on the
//     path itself only;
//   - an excluded directory is walked only when an exception ("!" line)
//     could re-include something below it; when every exception is a plain
//     path (a trailing "/*" or "/**" aside) that means: an exception names a
//     path below the directory;
//   - a walked but excluded directory is kept, with its own metadata, when
//     (and only when) something below it is kept.
//
// Match gives the first two; the third needs the tree (Context.Excluded).
type Filter struct {
	mu sync.Mutex // the matcher compiles its patterns on first use
	pm *patternmatcher.PatternMatcher
	// prefixExceptions: every exception is a plain path once a trailing
	// "/*" or "/**" is cut.
	prefixExceptions bool
}

// NewFilter compiles patterns (as ignorefile.ReadAll returns them); nil when
// there are none.
func NewFilter(patterns []string) (*Filter, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, err
	}
	f := &Filter{pm: pm, prefixExceptions: true}
	for _, p := range pm.Patterns() {
		if p.Exclusion() && strings.ContainsAny(withoutTrailingGlob(p.String()), `*[]?^\`) {
			f.prefixExceptions = false
		}
	}
	// Try every pattern once now (alone: the matcher skips the patterns
	// that cannot change a result), so Match cannot fail later.
	for _, p := range patterns {
		one, err := patternmatcher.New([]string{strings.TrimPrefix(strings.TrimSpace(p), "!")})
		if err == nil {
			_, err = one.MatchesOrParentMatches("x")
		}
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	return f, nil
}

// Match is what a Filter decided for one path; a directory's Match is
// passed to the matching of its entries.
type Match struct {
	info patternmatcher.MatchInfo
	// Excluded: the patterns leave the path itself out.
	Excluded bool
	// Walk (directories): the walk reads the directory's entries, because it
	// is not excluded or an exception may re-include something below it.
	Walk bool
}

// Match matches rel (slash separated, relative to the tree's root, not
// the root itself) as an entry of the directory whose Match is parent;
// entries of the root take the zero Match.
func (f *Filter) Match(rel string, isDir bool, parent Match) Match {
	f.mu.Lock()
	excluded, info, err := f.pm.MatchesUsingParentResults(rel, parent.info)
	f.mu.Unlock()
	if err != nil {
		// Only a MatchInfo of another Filter or a pattern that does not
		// compile fail, and NewFilter tried every pattern.
		panic(fmt.Sprintf("buildctx: match %q: %v", rel, err))
	}
	m := Match{info: info, Excluded: excluded, Walk: isDir}
	if excluded && isDir {
		m.Walk = f.mayIncludeBelow(rel)
	}
	return m
}

// mayIncludeBelow reports whether an exception may re-include a path below
// the excluded directory rel.
func (f *Filter) mayIncludeBelow(rel string) bool {
	if !f.pm.Exclusions() {
		return false
	}
	if !f.prefixExceptions {
		return true
	}
	for _, p := range f.pm.Patterns() {
		if p.Exclusion() && strings.HasPrefix(withoutTrailingGlob(p.String())+"/", rel+"/") {
			return true
		}
	}
	return false
}

func withoutTrailingGlob(p string) string {
	p = strings.TrimSuffix(p, "/**")
	return strings.TrimSuffix(p, "/*")
}

// Tree is a directory tree seen through a Filter: which of its paths a
// filtered walk (BuildKit's context transfer, or its copy with --exclude)
// keeps. It remembers what it found per directory; safe for concurrent use.
type Tree struct {
	root   string
	filter *Filter

	mu   sync.Mutex
	dirs map[string]dirState // per directory (rel)
}

// dirState is a directory of a Tree as the filter sees it.
type dirState struct {
	m Match
	// walked: the walk reads the directory's entries (it is reached and
	// m.Walk).
	walked bool
	// kept: 1 the directory is kept, -1 it is not, 0 not known yet (an
	// excluded directory is kept when something below it is).
	kept int8
}

// NewTree returns the tree at dir seen through f (nil: nothing excluded).
func NewTree(dir string, f *Filter) *Tree { return &Tree{root: dir, filter: f} }

// Excluded reports whether rel (slash separated, relative to the tree's
// root) is missing from the filtered walk: the patterns exclude it, or it
// lies in a directory the walk does not read, or it is an excluded directory
// with nothing kept below it. A directory the patterns exclude but that
// holds a kept path is not excluded: it is kept (with its own metadata) as
// that path's parent. A path that does not exist is matched as a file.
func (t *Tree) Excluded(rel string) bool {
	if t == nil || t.filter == nil {
		return false
	}
	rel = path.Clean(strings.TrimPrefix(filepath.ToSlash(rel), "/"))
	if rel == "." || rel == "" {
		return false
	}
	return !t.kept(rel)
}

// kept reports whether rel (cleaned, not the root) is in the transfer.
func (t *Tree) kept(rel string) bool {
	parent := t.dir(path.Dir(rel))
	if !parent.walked {
		return false
	}
	m := t.filter.Match(rel, true, parent.m)
	if !m.Excluded {
		return true
	}
	if !m.Walk {
		return false
	}
	fi, err := os.Lstat(filepath.Join(t.root, filepath.FromSlash(rel)))
	if err != nil || !fi.IsDir() {
		return false
	}
	return t.dirKept(rel)
}

// dir returns the state of the directory rel ("." for the root), without
// its kept field settled.
func (t *Tree) dir(rel string) dirState {
	if rel == "." {
		return dirState{walked: true, kept: 1}
	}
	t.mu.Lock()
	st, ok := t.dirs[rel]
	t.mu.Unlock()
	if ok {
		return st
	}
	parent := t.dir(path.Dir(rel))
	if parent.walked {
		st.m = t.filter.Match(rel, true, parent.m)
		st.walked = st.m.Walk
	}
	switch {
	case !parent.walked || st.m.Excluded && !st.m.Walk:
		st.kept = -1
	case !st.m.Excluded:
		st.kept = 1
	}
	t.mu.Lock()
	if old, ok := t.dirs[rel]; ok {
		st = old
	} else {
		if t.dirs == nil {
			t.dirs = map[string]dirState{}
		}
		t.dirs[rel] = st
	}
	t.mu.Unlock()
	return st
}

// dirKept reports whether the walked, excluded directory rel holds a kept
// path (so is kept itself).
func (t *Tree) dirKept(rel string) bool {
	if st := t.dir(rel); st.kept != 0 {
		return st.kept > 0
	}
	kept := false
	if ents, err := os.ReadDir(filepath.Join(t.root, filepath.FromSlash(rel))); err == nil {
		for _, e := range ents {
			if t.kept(rel + "/" + e.Name()) {
				kept = true
				break
			}
		}
	}
	t.mu.Lock()
	st := t.dirs[rel]
	st.kept = -1
	if kept {
		st.kept = 1
	}
	t.dirs[rel] = st
	t.mu.Unlock()
	return kept
}
