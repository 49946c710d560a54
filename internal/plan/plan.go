// Package plan turns parsed stages into the DAG of stages a target needs:
// which stage builds on which (FROM), which copies or mounts from which
// (COPY --from, RUN --mount from), in an order where dependencies come first.
package plan

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	bksuggest "github.com/moby/buildkit/util/suggest"

	"github.com/strata-build/strata/internal/dockerfile"
)

// Stage is one FROM block and its edges.
type Stage struct {
	Index int
	Name  string // lower-case name from AS, or ""
	// Base is the expanded FROM value: "scratch", an image reference, or a stage name/index.
	Base string
	// BaseStage is the index of the stage this one builds on, or -1.
	BaseStage int
	// Deps are the stages this one needs (BaseStage included), each once, ascending.
	Deps []int
	// Source is the parsed stage.
	Source *instructions.Stage
}

// Display is the name used in progress and errors: the stage name, else "stage-N".
func (s *Stage) Display() string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(s.Index)
}

// Plan is the set of stages needed for a target.
type Plan struct {
	All    []*Stage // every stage of the Dockerfile, by index
	Target int      // index of the target stage
	Needed []int    // indices of the stages the target needs (target included), dependencies first

	named map[string]bool // names given with --build-context
}

// Option configures New.
type Option func(*Plan)

// WithNamedContexts makes FROM and --from values with these names (lower
// case) refer to named build contexts instead of stages or images.
func WithNamedContexts(names []string) Option {
	return func(p *Plan) {
		for _, n := range names {
			p.named[strings.ToLower(n)] = true
		}
	}
}

// IsNamed reports whether v names a --build-context.
func (p *Plan) IsNamed(v string) bool { return p.named[strings.ToLower(v)] }

// New plans df for target ("" means the last stage). globalArgs holds the
// values of the ARGs declared before the first FROM (after --build-arg) and
// the automatic platform args; they are what FROM lines can use.
func New(df *dockerfile.Dockerfile, target string, globalArgs shell.EnvGetter, opts ...Option) (*Plan, error) {
	lex := df.Lexer()
	p := &Plan{Target: len(df.Stages) - 1, named: map[string]bool{}}
	for _, o := range opts {
		o(p)
	}
	byName := map[string]int{}
	for i := range df.Stages {
		src := &df.Stages[i]
		st := &Stage{Index: i, Name: strings.ToLower(src.Name), BaseStage: -1, Source: src}
		base, _, err := lex.ProcessWord(src.BaseName, globalArgs)
		if err != nil {
			return nil, df.Wrap(src.Location, fmt.Errorf("expanding FROM: %w", err))
		}
		if base == "" {
			return nil, df.Errorf(src.Location, "base name (%s) should not be blank", src.BaseName)
		}
		st.Base = base
		if p.named[strings.ToLower(base)] {
			// a --build-context of that name replaces the stage or image
		} else if j, ok := byName[strings.ToLower(base)]; ok {
			st.BaseStage = j
		} else if n, err := strconv.Atoi(base); err == nil && n >= 0 && n < i {
			st.BaseStage = n // FROM by index of an earlier stage
		} else if st.Name != "" && strings.EqualFold(base, st.Name) {
			return nil, df.Errorf(src.Location, "stage %q cannot build FROM itself: circular dependency", st.Name)
		}
		if st.Name != "" {
			if _, dup := byName[st.Name]; dup {
				return nil, df.Errorf(src.Location, "duplicate stage name %q", st.Name)
			}
		}
		p.All = append(p.All, st)
		deps := map[int]bool{}
		if st.BaseStage >= 0 {
			deps[st.BaseStage] = true
		}
		for _, ref := range fromRefs(src) {
			v, _, err := lex.ProcessWord(ref.value, globalArgs)
			if err != nil || v == "" {
				continue // resolved when the instruction runs
			}
			if p.named[strings.ToLower(v)] {
				continue
			}
			j, isStage, err := resolveRef(df, byName, i, v)
			if err != nil {
				return nil, df.Wrap(ref.loc, err)
			}
			if isStage {
				deps[j] = true
			}
		}
		for j := 0; j < i; j++ {
			if deps[j] {
				st.Deps = append(st.Deps, j)
			}
		}
		if st.Name != "" {
			byName[st.Name] = i
		}
	}
	if err := p.setTarget(target, byName); err != nil {
		return nil, err
	}
	p.Needed = p.needs(p.Target)
	return p, nil
}

// setTarget makes the stage named target ("" keeps the last one) the target.
func (p *Plan) setTarget(target string, byName map[string]int) error {
	if target == "" {
		return nil
	}
	j, ok := byName[strings.ToLower(target)]
	if !ok {
		names := p.names()
		hint := suggest(target, names)
		if hint == "" && len(names) > 0 {
			hint = "; the stages are: " + strings.Join(names, ", ")
		}
		return fmt.Errorf("target stage %q could not be found%s", target, hint)
	}
	p.Target = j
	return nil
}

// needs lists stage i and the stages it needs, dependencies first.
func (p *Plan) needs(i int) []int {
	var out []int
	seen := map[int]bool{}
	var visit func(i int)
	visit = func(i int) {
		if seen[i] {
			return
		}
		seen[i] = true
		for _, d := range p.All[i].Deps {
			visit(d)
		}
		out = append(out, i)
	}
	visit(i)
	return out
}

// ResolveFrom interprets the value of --from (or a mount's from=) used in
// stage `in`: a stage index, an earlier stage's name, or else an image
// reference (isStage false). A later stage is an error.
func (p *Plan) ResolveFrom(df *dockerfile.Dockerfile, in int, v string) (idx int, isStage bool, err error) {
	byName := map[string]int{}
	for _, s := range p.All {
		if s.Name != "" && s.Index < in {
			byName[s.Name] = s.Index
		}
	}
	return resolveRef(df, byName, in, v)
}

func resolveRef(df *dockerfile.Dockerfile, byName map[string]int, in int, v string) (int, bool, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n >= len(df.Stages) {
			return 0, false, fmt.Errorf("invalid stage index %d: the Dockerfile has %d stages", n, len(df.Stages))
		}
		if n >= in {
			return 0, false, fmt.Errorf("stage %d refers to itself or a later stage (%d): --from can only use earlier stages", in, n)
		}
		return n, true, nil
	}
	if j, ok := byName[strings.ToLower(v)]; ok {
		return j, true, nil
	}
	for k := in; k < len(df.Stages); k++ {
		if strings.EqualFold(df.Stages[k].Name, v) {
			if k == in {
				return 0, false, fmt.Errorf("stage %q refers to itself: circular dependency", v)
			}
			return 0, false, fmt.Errorf("stage %q is defined after the stage that uses it: --from can only use earlier stages", v)
		}
	}
	return 0, false, nil
}

type fromRef struct {
	value string
	loc   []parser.Range
}

// fromRefs lists the unexpanded --from values of COPY and RUN --mount in src.
func fromRefs(src *instructions.Stage) []fromRef {
	var out []fromRef
	for _, c := range src.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			if c.From != "" {
				out = append(out, fromRef{value: c.From, loc: c.Location()})
			}
		case *instructions.RunCommand:
			for _, m := range instructions.GetMounts(c) {
				if m.From != "" {
					out = append(out, fromRef{value: m.From, loc: c.Location()})
				}
			}
		}
	}
	return out
}

// suggest returns "; did you mean X?" for the stage name among names
// (lower case, in stage order) that is closest to name, as BuildKit picks
// one (util/suggest: an edit distance below 3, first best wins), or "". An
// exact match is named too: the caller found no stage by it (a later stage).
func suggest(name string, names []string) string {
	name = strings.ToLower(name)
	match, ok := bksuggest.Search(name, names, true)
	if !ok && slices.Contains(names, name) {
		match, ok = name, true
	}
	if !ok {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", match)
}

// Distance is the Levenshtein edit distance of a and b, in runes, as
// BuildKit's did-you-mean hints measure it (github.com/agext/levenshtein).
func Distance(a, b string) int {
	return levenshtein.Distance(a, b, nil)
}

// Suggest returns a "; did you mean X?" hint for name among the stage names.
func (p *Plan) Suggest(name string) string {
	return suggest(name, p.names())
}

// names returns the stage names, in stage order.
func (p *Plan) names() []string {
	var names []string
	for _, st := range p.All {
		if st.Name != "" {
			names = append(names, st.Name)
		}
	}
	return names
}
