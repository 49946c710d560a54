package buildctx

import (
	"fmt"
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
