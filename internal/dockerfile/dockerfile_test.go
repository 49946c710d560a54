package dockerfile

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestParseErrorsGolden parses every testdata/errors/NAME.Dockerfile, which
// must fail, and compares the error text with NAME.golden.
func TestParseErrorsGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "errors", "*.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("expected the golden cases under testdata/errors, found %d", len(files))
	}
	locRE := regexp.MustCompile(`^Dockerfile:(\d+): `)
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".Dockerfile")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			df, err := Parse("Dockerfile", src)
			if err == nil {
				t.Fatalf("Parse succeeded (%d stages), want an error", len(df.Stages))
			}
			if df != nil {
				t.Errorf("Parse returned a Dockerfile along with the error")
			}
			got := err.Error()
			golden := strings.TrimSuffix(path, ".Dockerfile") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err2 := os.ReadFile(golden)
			if err2 != nil {
				t.Fatalf("missing golden file (run with -update): %v", err2)
			}
			if got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, want)
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, want *dockerfile.Error", err)
			}
			if de.File != "Dockerfile" {
				t.Errorf("File = %q", de.File)
			}
			// When the message names a line, the struct carries the same
			// line and the instruction text of that line.
			if m := locRE.FindStringSubmatch(got); m != nil {
				n, _ := strconv.Atoi(m[1])
				if de.Line != n {
					t.Errorf("Line = %d, message says %d", de.Line, n)
				}
				if de.Instruction == "" {
					t.Errorf("Instruction is empty for a located error")
				}
				lines := strings.Split(strings.ReplaceAll(string(src), "\r", ""), "\n")
				if n < 1 || n > len(lines) {
					t.Fatalf("line %d outside the file", n)
				}
				// (a continued instruction goes on with its next lines)
				srcLine := strings.TrimSpace(lines[n-1])
				first := strings.TrimSpace(strings.TrimRight(srcLine, "\\`"))
				instr := strings.TrimSuffix(de.Instruction, "...")
				if !strings.HasPrefix(instr, first) && !strings.HasPrefix(first, instr) {
					t.Errorf("Instruction %q does not start with the text of line %d (%q)", de.Instruction, n, srcLine)
				}
			}
			if de.Unwrap() == nil {
				t.Errorf("Unwrap() is nil")
			}
		})
	}
}

func TestParseErrorLocations(t *testing.T) {
	tests := []struct {
		name        string
		src         string
		line        int
		instruction string
		contains    string
	}{
		{"unknown instruction line 3", "FROM busybox\nRUN true\nFOO bar\n", 3, "FOO bar", "unknown instruction: FOO"},
		{"unknown flag", "FROM busybox\nCOPY --nope a b\n", 2, "COPY --nope a b", "unknown flag: --nope"},
		{"shell not json", "FROM busybox\nSHELL /bin/sh -c\n", 2, "SHELL /bin/sh -c", "JSON"},
		{"error after a continued instruction", "FROM busybox\nRUN a \\\n b \\\n c\nBAD\n", 5, "BAD", "unknown instruction: BAD"},
		{"backtick escape keeps lines", "# escape=`\nFROM busybox\nRUN a `\n b\nBAD\n", 5, "BAD", "unknown instruction: BAD"},
		{"instruction before FROM", "\n\nRUN x\n", 3, "RUN x", "no build stage"},
		{"no FROM, only ARG", "ARG A=1\n", 0, "", "no FROM instruction"},
		{"empty", "", 0, "", "empty"},
		{"whitespace only", " \n\t\n", 0, "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("path/to/my.Dockerfile", []byte(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, want *Error", err)
			}
			if de.File != "path/to/my.Dockerfile" || de.Line != tt.line || de.Instruction != tt.instruction {
				t.Errorf("got File=%q Line=%d Instruction=%q, want line %d %q", de.File, de.Line, de.Instruction, tt.line, tt.instruction)
			}
			prefix := "path/to/my.Dockerfile: "
			if tt.line > 0 {
				prefix = "path/to/my.Dockerfile:" + strconv.Itoa(tt.line) + ": " + tt.instruction + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not contain %q", err, tt.contains)
			}
			// the BuildKit "dockerfile parse error on line N:" wrapper is not repeated
			if strings.Contains(err.Error(), "parse error on line") {
				t.Errorf("error %q repeats BuildKit's location wrapper", err)
			}
		})
	}
}

func TestParseBadEscapeDirectiveNamesLine(t *testing.T) {
	_, err := Parse("Dockerfile", []byte("# escape=x\nFROM busybox\n"))
	if err == nil {
		t.Fatal("invalid escape directive accepted")
	}
	if !strings.Contains(err.Error(), "invalid escape token") {
		t.Errorf("error %q does not explain the escape token", err)
	}
	if !strings.HasPrefix(err.Error(), "Dockerfile:1: ") {
		t.Error("an invalid '# escape=' directive error carries no line (got " + strconv.Quote(err.Error()) + "); DESIGN.md says Dockerfile errors name file:line")
	}
}

func TestParseOK(t *testing.T) {
	src := "# syntax=docker/dockerfile:1.7\n" +
		"ARG BASE=busybox\n" +
		"FROM ${BASE} AS build\n" +
		"RUN --mount=type=cache,target=/c echo hi\n" +
		"FROM scratch\n" +
		"COPY --from=build /bin/sh /sh\n" +
		"CMD [\"/sh\"]\n"
	df, err := Parse("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if df.File != "Dockerfile" || string(df.Source) != src {
		t.Errorf("File/Source not kept: %q", df.File)
	}
	if df.Syntax != "docker/dockerfile:1.7" {
		t.Errorf("Syntax = %q", df.Syntax)
	}
	if df.Escape != '\\' {
		t.Errorf("Escape = %q, want backslash", df.Escape)
	}
	if len(df.Stages) != 2 {
		t.Fatalf("%d stages, want 2", len(df.Stages))
	}
	if df.Stages[0].Name != "build" || df.Stages[0].BaseName != "${BASE}" || df.Stages[1].BaseName != "scratch" {
		t.Errorf("stages: %+v / %+v", df.Stages[0].Name, df.Stages[1].BaseName)
	}
	if len(df.MetaArgs) != 1 || df.MetaArgs[0].Args[0].Key != "BASE" || *df.MetaArgs[0].Args[0].Value != "busybox" {
		t.Errorf("MetaArgs = %+v", df.MetaArgs)
	}
	cp, ok := df.Stages[1].Commands[0].(*instructions.CopyCommand)
	if !ok || cp.From != "build" {
		t.Errorf("second stage first command = %#v", df.Stages[1].Commands[0])
	}
	if len(df.Warnings()) != 0 {
		t.Errorf("unexpected warnings %+v", df.Warnings())
	}
}

func TestSyntaxDirective(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"# syntax=docker/dockerfile:1\nFROM busybox\n", "docker/dockerfile:1"},
		{"#syntax=docker/dockerfile:1.7-labs\nFROM busybox\n", "docker/dockerfile:1.7-labs"},
		{"# syntax = example.com/fe:2\n# escape=`\nFROM busybox\n", "example.com/fe:2"},
		{"# escape=`\n# syntax=docker/dockerfile:1\nFROM busybox\n", "docker/dockerfile:1"},
		{"FROM busybox\n# syntax=docker/dockerfile:1\n", ""}, // not a directive after an instruction
		{"FROM busybox\n", ""},
	}
	for _, tt := range tests {
		df, err := Parse("Dockerfile", []byte(tt.src))
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if df.Syntax != tt.want {
			t.Errorf("%q: Syntax = %q, want %q", tt.src, df.Syntax, tt.want)
		}
	}
}

func TestEscapeDirective(t *testing.T) {
	src := "# escape=`\nFROM busybox\nRUN echo a `\n  b\nENV P=C:\\dir\n"
	df, err := Parse("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if df.Escape != '`' {
		t.Fatalf("Escape = %q, want backtick", df.Escape)
	}
	cmds := df.Stages[0].Commands
	if len(cmds) != 2 {
		t.Fatalf("%d commands, want 2 (the backtick continues the RUN line)", len(cmds))
	}
	run := cmds[0].(*instructions.RunCommand)
	if got := strings.Join(run.CmdLine, " "); !strings.Contains(got, "echo a") || !strings.Contains(got, "b") {
		t.Errorf("RUN = %q", got)
	}
	env := cmds[1].(*instructions.EnvCommand)
	if env.Env[0].Value != `C:\dir` {
		t.Errorf("ENV value %q: backslash must be literal with a backtick escape", env.Env[0].Value)
	}

	// The lexer follows the escape character.
	getter := shell.EnvsFromSlice([]string{"X=1"})
	w, _, err := df.Lexer().ProcessWord("`$X-$X", getter)
	if err != nil || w != "$X-1" {
		t.Errorf("backtick lexer: %q, %v; want \"$X-1\"", w, err)
	}
	def, err := Parse("Dockerfile", []byte("FROM busybox\n"))
	if err != nil {
		t.Fatal(err)
	}
	w, _, err = def.Lexer().ProcessWord(`\$X-$X`, getter)
	if err != nil || w != "$X-1" {
		t.Errorf("default lexer: %q, %v; want \"$X-1\"", w, err)
	}
	// A zero Escape (a Dockerfile built by hand) means backslash.
	w, _, err = (&Dockerfile{}).Lexer().ProcessWord(`\$X`, getter)
	if err != nil || w != "$X" {
		t.Errorf("zero-value lexer: %q, %v", w, err)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		want  []Warning // Rule and Line compared; Message must contain want.Message
		stage int
	}{
		{"none", "FROM busybox AS a\nRUN true\n", nil, 1},
		{"empty continuation line", "FROM busybox\nRUN echo a \\\n\n  b\n", []Warning{{Line: 4, Rule: "NoEmptyContinuation", Message: "Empty continuation line"}}, 1},
		{"maintainer", "FROM busybox\nMAINTAINER me\n", []Warning{{Line: 2, Rule: "MaintainerDeprecated", Message: "deprecated"}}, 1},
		{"from as casing", "FROM busybox as a\n", []Warning{{Line: 1, Rule: "FromAsCasing", Message: "casing"}}, 1},
		{"stage name casing", "FROM busybox AS Builder\n", []Warning{{Line: 1, Rule: "StageNameCasing", Message: "Builder"}}, 1},
		{"several, in order", "FROM busybox as a\nMAINTAINER me\nFROM a AS Two\n", []Warning{
			{Line: 1, Rule: "FromAsCasing", Message: "casing"},
			{Line: 2, Rule: "MaintainerDeprecated", Message: "deprecated"},
			{Line: 3, Rule: "StageNameCasing", Message: "Two"},
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			df, err := Parse("Dockerfile", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if len(df.Stages) != tt.stage {
				t.Errorf("%d stages, want %d", len(df.Stages), tt.stage)
			}
			if len(df.Warnings()) != len(tt.want) {
				t.Fatalf("warnings = %+v, want %d", df.Warnings(), len(tt.want))
			}
			for i, w := range tt.want {
				got := df.Warnings()[i]
				if got.Line != w.Line || got.Rule != w.Rule || !strings.Contains(got.Message, w.Message) {
					t.Errorf("warning %d = %+v, want %+v", i, got, w)
				}
			}
		})
	}
}

func TestWrapErrorfLine(t *testing.T) {
	long := "RUN " + strings.Repeat("x", 100)
	src := "FROM busybox\n   COPY a b   \n" + long + "\n"
	df, err := Parse("ctx/Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	loc := func(line int) []parser.Range {
		return []parser.Range{{Start: parser.Position{Line: line}, End: parser.Position{Line: line}}}
	}
	if got := df.Line(loc(2)); got != "COPY a b" {
		t.Errorf("Line(2) = %q", got)
	}
	got := df.Line(loc(3))
	if len(got) != 80 || !strings.HasSuffix(got, "...") || !strings.HasPrefix(got, "RUN xxx") {
		t.Errorf("Line(3) = %q (len %d), want 77 chars and \"...\"", got, len(got))
	}
	for _, l := range [][]parser.Range{nil, loc(0), loc(99)} {
		if got := df.Line(l); got != "" {
			t.Errorf("Line(%v) = %q, want empty", l, got)
		}
	}

	base := errors.New("boom")
	err = df.Wrap(loc(2), base)
	if err.Error() != "ctx/Dockerfile:2: COPY a b: boom" {
		t.Errorf("Wrap = %q", err)
	}
	if !errors.Is(err, base) {
		t.Errorf("Wrap loses the cause")
	}
	// Wrapping an already located error keeps it as is.
	if again := df.Wrap(loc(3), err); again != err {
		t.Errorf("Wrap re-wrapped a located error: %q", again)
	}
	if again := df.Wrap(loc(3), errorsJoin("ctx", err)); again.Error() != "ctx: "+err.Error() {
		t.Errorf("Wrap of a wrapped *Error = %q", again)
	}
	if got := df.Wrap(nil, base).Error(); got != "ctx/Dockerfile: boom" {
		t.Errorf("Wrap(nil) = %q", got)
	}
	if got := df.Errorf(loc(2), "stage %q: %d", "x", 3).Error(); got != `ctx/Dockerfile:2: COPY a b: stage "x": 3` {
		t.Errorf("Errorf = %q", got)
	}
	// a location with no instruction text (line past EOF) still names the line
	if got := (&Error{File: "F", Line: 7, Err: base}).Error(); got != "F:7: boom" {
		t.Errorf("Error() = %q", got)
	}
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func errorsJoin(msg string, err error) error { return &wrapped{msg, err} }

func TestUTF8BOM(t *testing.T) {
	df, err := Parse("Dockerfile", []byte("\xef\xbb\xbf# syntax=docker/dockerfile:1\nFROM busybox\n"))
	if err != nil {
		t.Fatal(err)
	}
	if df.Syntax != "docker/dockerfile:1" || len(df.Stages) != 1 {
		t.Errorf("with a BOM: Syntax %q, %d stages", df.Syntax, len(df.Stages))
	}
	_, err = Parse("Dockerfile", []byte("\xef\xbb\xbfBOGUS x\nFROM busybox\n"))
	var de *Error
	if !errors.As(err, &de) || de.Line != 1 {
		t.Fatalf("err = %v", err)
	}
	if de.Instruction != "BOGUS x" {
		t.Errorf("the UTF-8 byte order mark leaks into the instruction text of line-1 errors: %q", err.Error())
	}
}

func TestErrorExcerpt(t *testing.T) {
	df, err := Parse("Dockerfile", []byte("FROM busybox\nRUN a\nRUN b\nRUN c\nRUN d\nRUN e\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := df.Wrap(df.Stages[0].Commands[2].Location(), errors.New("boom")).(*Error)
	want := "Dockerfile:4\n--------------------\n   2 |     RUN a\n   3 |     RUN b\n   4 | >>> RUN c\n   5 |     RUN d\n   6 |     RUN e\n--------------------"
	if got := e.Excerpt(); got != want {
		t.Errorf("excerpt:\n%s\nwant:\n%s", got, want)
	}
	if (&Error{File: "x"}).Excerpt() != "" {
		t.Error("an error without a line has an excerpt")
	}
}

// TestErrorMultiLineInstruction checks that the error of an instruction
// continued over several lines names the whole instruction (its lines
// joined) and that its excerpt marks every one of its lines.
func TestErrorMultiLineInstruction(t *testing.T) {
	src := "FROM busybox\nRUN set -eux; \\\n    echo one; \\\n\n    # a comment\n    false\nRUN next\nRUN after\nRUN last\n"
	df, err := Parse("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e := df.Wrap(df.Stages[0].Commands[0].Location(), errors.New("exit code: 1")).(*Error)
	if want := "Dockerfile:2: RUN set -eux; echo one; false: exit code: 1"; e.Error() != want {
		t.Errorf("error:\n got: %s\nwant: %s", e.Error(), want)
	}
	want := "Dockerfile:2\n--------------------\n" +
		"   1 |     FROM busybox\n" +
		"   2 | >>> RUN set -eux; \\\n" +
		"   3 | >>>     echo one; \\\n" +
		"   4 | >>> \n" +
		"   5 | >>>     # a comment\n" +
		"   6 | >>>     false\n" +
		"   7 |     RUN next\n" +
		"   8 |     RUN after\n" +
		"--------------------"
	if got := e.Excerpt(); got != want {
		t.Errorf("excerpt:\n%s\nwant:\n%s", got, want)
	}
}
