// Package buildctx gives read access to a build context directory with its
// .dockerignore rules applied: excluded paths are invisible to COPY and ADD.
package buildctx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Context is a build context directory.
type Context struct {
	Dir        string
	IgnoreFile string // the ignore file used, "" if none
	filter     *Filter
	patterns   []string

	mu   sync.Mutex
	dirs map[string]dirState // what the ignore rules made of a directory (rel)
}

// dirState is a directory of the context as the ignore rules see it.
type dirState struct {
	m Match
	// walked: the transfer reads the directory's entries (it is reached and
	// m.Walk).
	walked bool
	// kept: 1 the directory is in the transfer, -1 it is not, 0 not known
	// yet (an excluded directory is kept when something below it is).
	kept int8
}

// Open opens the context dir. The ignore rules come from
// DOCKERFILE.dockerignore beside the Dockerfile when it exists, else from
// DIR/.dockerignore (as BuildKit does).
func Open(dir, dockerfilePath string) (*Context, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", dir)
	}
	c := &Context{Dir: abs}
	cands := []string{}
	if dockerfilePath != "" {
		cands = append(cands, dockerfilePath+".dockerignore")
	}
	cands = append(cands, filepath.Join(abs, ".dockerignore"))
	for _, p := range cands {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		pats, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		flt, err := NewFilter(pats)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		c.IgnoreFile, c.filter, c.patterns = p, flt, pats
		break
	}
	return c, nil
}

// Excluded reports whether the context-relative path rel (slash separated,
// no leading slash) is missing from the context as BuildKit transfers it
// with the ignore rules (see Filter): the rules exclude it, or it lies in a
// directory the transfer does not read, or it is an excluded directory with
// nothing kept below it. A directory the rules exclude but that holds a
// kept path is not excluded: it is transferred (with its own metadata) as
// that path's parent.
func (c *Context) Excluded(rel string) bool {
	if c == nil || c.filter == nil {
		return false
	}
	rel = path.Clean(strings.TrimPrefix(filepath.ToSlash(rel), "/"))
	if rel == "." || rel == "" {
		return false
	}
	return !c.kept(rel)
}

// kept reports whether rel (cleaned, not the root) is in the transfer.
func (c *Context) kept(rel string) bool {
	parent := c.dir(path.Dir(rel))
	if !parent.walked {
		return false
	}
	m := c.filter.Match(rel, true, parent.m)
	if !m.Excluded {
		return true
	}
	if !m.Walk {
		return false
	}
	fi, err := os.Lstat(filepath.Join(c.Dir, filepath.FromSlash(rel)))
	if err != nil || !fi.IsDir() {
		return false
	}
	return c.dirKept(rel)
}

// dir returns the state of the directory rel ("." for the root), without
// its kept field settled.
func (c *Context) dir(rel string) dirState {
	if rel == "." {
		return dirState{walked: true, kept: 1}
	}
	c.mu.Lock()
	st, ok := c.dirs[rel]
	c.mu.Unlock()
	if ok {
		return st
	}
	parent := c.dir(path.Dir(rel))
	if parent.walked {
		st.m = c.filter.Match(rel, true, parent.m)
		st.walked = st.m.Walk
	}
	switch {
	case !parent.walked || st.m.Excluded && !st.m.Walk:
		st.kept = -1
	case !st.m.Excluded:
		st.kept = 1
	}
	c.mu.Lock()
	if old, ok := c.dirs[rel]; ok {
		st = old
	} else {
		if c.dirs == nil {
			c.dirs = map[string]dirState{}
		}
		c.dirs[rel] = st
	}
	c.mu.Unlock()
	return st
}

// dirKept reports whether the walked, excluded directory rel holds a kept
// path (so is kept itself).
func (c *Context) dirKept(rel string) bool {
	if st := c.dir(rel); st.kept != 0 {
		return st.kept > 0
	}
	kept := false
	if ents, err := os.ReadDir(filepath.Join(c.Dir, filepath.FromSlash(rel))); err == nil {
		for _, e := range ents {
			if c.kept(rel + "/" + e.Name()) {
				kept = true
				break
			}
		}
	}
	c.mu.Lock()
	st := c.dirs[rel]
	st.kept = -1
	if kept {
		st.kept = 1
	}
	c.dirs[rel] = st
	c.mu.Unlock()
	return kept
}

// Patterns returns the ignore patterns in effect.
func (c *Context) Patterns() []string { return c.patterns }

// ExcludedBy returns the 1-based line of the ignore file and the pattern
// that makes rel excluded (the last matching pattern decides, as in
// Docker), or ok false when rel is not excluded.
func (c *Context) ExcludedBy(rel string) (line int, pattern string, ok bool) {
	if !c.Excluded(rel) {
		return 0, "", false
	}
	b, err := os.ReadFile(c.IgnoreFile)
	if err != nil {
		return 0, "", false
	}
	for i, l := range strings.Split(string(b), "\n") {
		p := strings.TrimSpace(l)
		if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
			continue
		}
		pm, err := patternmatcher.New([]string{p})
		if err != nil {
			continue
		}
		if m, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel)); err == nil && m {
			line, pattern, ok = i+1, p, true
		}
	}
	return line, pattern, ok
}
