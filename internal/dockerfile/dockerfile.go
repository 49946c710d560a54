// Package dockerfile parses Dockerfiles with BuildKit's parser and
// instructions packages and provides the word expansion rules Docker applies.
// Every error it returns names FILE:LINE and the instruction.
package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Dockerfile is a parsed Dockerfile.
type Dockerfile struct {
	File     string // name used in messages, e.g. "Dockerfile"
	Source   []byte
	Stages   []instructions.Stage
	MetaArgs []instructions.ArgCommand
	Escape   rune
	Syntax   string // value of a "# syntax=" directive, if any
	// Lint runs BuildKit's build checks, configured by a "# check=" directive;
	// its findings are collected in Warnings.
	Lint *linter.Linter
	// CheckErrors is set by "# check=error=true": findings fail the build.
	CheckErrors bool

	mu       sync.Mutex
	warnings []Warning
}

// Warnings returns the parser warnings and check findings so far, by line.
func (df *Dockerfile) Warnings() []Warning {
	df.mu.Lock()
	defer df.mu.Unlock()
	out := append([]Warning(nil), df.warnings...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

func (df *Dockerfile) warn(w Warning) {
	df.mu.Lock()
	defer df.mu.Unlock()
	for _, o := range df.warnings {
		if o == w {
			return
		}
	}
	df.warnings = append(df.warnings, w)
}

// Warning is a parser or lint warning.
type Warning struct {
	Line    int
	Rule    string // BuildKit's rule name, e.g. UndefinedVar; "" for parser warnings
	Message string
	URL     string
}

// Error is a Dockerfile error located at a line.
type Error struct {
	File        string
	Line        int    // 1-based; 0 when unknown
	Instruction string // source text of the instruction, trimmed
	Err         error

	source  []byte // the Dockerfile, for Excerpt
	endLine int    // the instruction's last line, for Excerpt
}

// Excerpt renders the lines around the error as BuildKit does: two lines of
// context on each side and ">>>" marking the failing instruction's lines. ""
// when the line is not known.
func (e *Error) Excerpt() string {
	if e.Line <= 0 || len(e.source) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(string(e.source), "\ufeff"), "\n"), "\n")
	if e.Line > len(lines) {
		return ""
	}
	end := max(e.Line, min(e.endLine, len(lines)))
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d\n--------------------\n", e.File, e.Line)
	for i := max(1, e.Line-2); i <= min(len(lines), end+2); i++ {
		mark := "   "
		if i >= e.Line && i <= end {
			mark = ">>>"
		}
		fmt.Fprintf(&b, " %3d | %s %s\n", i, mark, strings.TrimRight(lines[i-1], "\r"))
	}
	b.WriteString("--------------------")
	return b.String()
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Instruction != "" {
		return fmt.Sprintf("%s: %s: %v", loc, e.Instruction, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Parse parses src, the content of the Dockerfile called file.
func Parse(file string, src []byte) (*Dockerfile, error) {
	df := &Dockerfile{File: file, Source: src}
	if len(bytes.TrimSpace(src)) == 0 {
		return nil, &Error{File: file, Err: errors.New("the Dockerfile is empty")}
	}
	if syntax, _, _, ok := parser.DetectSyntax(src); ok {
		df.Syntax = syntax
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, df.locate(err, nil)
	}
	df.Escape = res.EscapeToken
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		rule := ""
		if strings.Contains(w.Short, "Empty continuation line") {
			rule = linter.RuleNoEmptyContinuation.Name
		}
		df.warn(Warning{Line: line, Rule: rule, Message: w.Short, URL: w.URL})
	}
	cfg := &linter.Config{}
	if v, _, _, ok := parser.ParseDirective("check", src); ok {
		c, err := linter.ParseLintOptions(v)
		if err != nil {
			return nil, &Error{File: file, Line: 1, Err: fmt.Errorf("# check=%s: %w", v, err)}
		}
		cfg = c
	}
	df.CheckErrors = cfg.ReturnAsError
	cfg.Warn = func(rule, _, url, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		df.warn(Warning{Line: line, Rule: rule, Message: msg, URL: url})
	}
	df.Lint = linter.New(cfg)
	stages, metaArgs, err := instructions.Parse(res.AST, df.Lint)
	if err != nil {
		return nil, df.locate(err, nil)
	}
	if len(stages) == 0 {
		return nil, &Error{File: file, Err: errors.New("no build stage: the Dockerfile has no FROM instruction")}
	}
	df.Stages = stages
	df.MetaArgs = metaArgs
	return df, nil
}

// locate turns err into an *Error with the line the parser attached to it, or
// the given location.
func (df *Dockerfile) locate(err error, loc []parser.Range) error {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 && le.Locations[0][0].Start.Line > 0 {
		loc = le.Locations[0]
	}
	inner := err
	for {
		var l *parser.LocationError
		if !errors.As(inner, &l) {
			break
		}
		inner = l.Unwrap()
	}
	msg := inner
	// instructions wraps with its own "dockerfile parse error on line N: ..." text; keep the cause only.
	s := msg.Error()
	if i := strings.Index(s, "parse error on line "); i >= 0 {
		if j := strings.Index(s[i:], ": "); j >= 0 {
			msg = errors.New(s[i+j+2:])
		}
	}
	e := &Error{File: df.File, Err: msg, source: df.Source}
	if len(loc) == 0 && strings.Contains(s, "escape token") {
		// The escape directive is parsed before any instruction: find its line.
		for i, l := range strings.Split(string(df.Source), "\n") {
			if strings.Contains(strings.ToLower(l), "escape") && strings.HasPrefix(strings.TrimSpace(l), "#") {
				e.Line = i + 1
				break
			}
		}
	}
	if len(loc) > 0 {
		e.Line, e.endLine = loc[0].Start.Line, loc[len(loc)-1].End.Line
		e.Instruction = df.Line(loc)
	}
	return e
}

// Errorf returns an *Error located at loc.
func (df *Dockerfile) Errorf(loc []parser.Range, format string, a ...any) error {
	return df.Wrap(loc, fmt.Errorf(format, a...))
}

// Wrap locates err at loc (the instruction's location).
func (df *Dockerfile) Wrap(loc []parser.Range, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	out := &Error{File: df.File, Err: err, source: df.Source}
	if len(loc) > 0 {
		out.Line, out.endLine = loc[0].Start.Line, loc[len(loc)-1].End.Line
		out.Instruction = df.Line(loc)
	}
	return out
}

// Line returns the instruction at loc for messages: its source lines
// joined (continuations, blank and comment lines dropped), shortened.
func (df *Dockerfile) Line(loc []parser.Range) string {
	if len(loc) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimPrefix(string(df.Source), "\ufeff"), "\n")
	n := loc[0].Start.Line
	if n < 1 || n > len(lines) {
		return ""
	}
	esc := "\\"
	if df.Escape != 0 {
		esc = string(df.Escape)
	}
	end := min(max(n, loc[len(loc)-1].End.Line), len(lines))
	var parts []string
	for i := n; i <= end; i++ {
		l := strings.TrimSpace(lines[i-1])
		if i > n && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if i < end {
			l = strings.TrimSpace(strings.TrimSuffix(l, esc))
		}
		if l != "" {
			parts = append(parts, l)
		}
	}
	s := strings.Join(parts, " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// MaxWordSize bounds one word after variable expansion (an ARG or ENV
// value, a LABEL, a COPY source...). Docker sets no limit, but words that
// expand each other ("ARG b=$a$a$a$a", a few levels deep) grow
// exponentially; 1 MiB is far beyond what an image config carries (values
// there are a few KiB) and keeps such a Dockerfile from exhausting memory.
const MaxWordSize = 1 << 20

// ErrWordTooLarge is wrapped by CheckWord's error.
var ErrWordTooLarge = fmt.Errorf("a word is larger than %d bytes after variable expansion", MaxWordSize)

// CheckWord returns an error wrapping ErrWordTooLarge when s, a word after
// variable expansion, is larger than MaxWordSize. Every expanded word that
// is kept (and can be expanded again) passes through it.
func CheckWord(s string) error {
	if len(s) > MaxWordSize {
		return fmt.Errorf("%w (%d bytes)", ErrWordTooLarge, len(s))
	}
	return nil
}

// Lexer returns the word expander for this Dockerfile's escape character.
func (df *Dockerfile) Lexer() *shell.Lex {
	esc := df.Escape
	if esc == 0 {
		esc = '\\'
	}
	return shell.NewLex(esc)
}
