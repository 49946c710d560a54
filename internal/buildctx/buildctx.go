// Package buildctx gives read access to a build context directory with its
// .dockerignore rules applied: excluded paths are invisible to COPY and ADD.
package buildctx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Context is a build context directory.
type Context struct {
	Dir        string
	IgnoreFile string // the ignore file used, "" if none
	tree       *Tree  // the context seen through the ignore rules
	patterns   []string
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
		c.IgnoreFile, c.tree, c.patterns = p, NewTree(abs, flt), pats
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
	return c != nil && c.tree.Excluded(rel)
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
