package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// commandNames lists the commands `strata --help` shows.
func commandNames(t *testing.T) []string {
	t.Helper()
	r := mustStrata(t, t.TempDir(), "--help")
	_, list, ok := strings.Cut(r.stdout, "Available Commands:\n")
	if !ok {
		t.Fatalf("no command list in strata --help:\n%s", r.stdout)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var names []string
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestHelpTexts(t *testing.T) {
	names := commandNames(t)
	for _, want := range []string{"build", "inspect", "history", "layers", "graph", "completion", "docs"} {
		if !contains(names, want) {
			t.Errorf("strata --help does not list %s: %v", want, names)
		}
	}
	withExamples := []string{"build", "inspect", "history", "layers", "graph", "completion", "docs", "run", "import", "save", "tag", "push", "pull", "prune"}
	for _, n := range names {
		if n == "help" {
			continue
		}
		r := mustStrata(t, t.TempDir(), n, "--help")
		head, _, _ := strings.Cut(r.stdout, "\nUsage:")
		// Long (a paragraph at least) above the usage line
		if len(strings.TrimSpace(head)) < 60 {
			t.Errorf("strata %s --help: no description above Usage:\n%s", n, r.stdout)
		}
		usage := regexp.MustCompile(`(?m)^Usage:\n  (.*)$`).FindStringSubmatch(r.stdout)
		if usage == nil || (strings.Contains(usage[1], "[OPTIONS]") && strings.Contains(usage[1], "[flags]")) {
			t.Errorf("strata %s --help: usage line %q", n, usage)
		}
		if contains(withExamples, n) && !strings.Contains(r.stdout, "\nExamples:\n  strata ") && !strings.Contains(r.stdout, "\nExamples:\n  ") {
			t.Errorf("strata %s --help has no examples:\n%s", n, r.stdout)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCompletion(t *testing.T) {
	root := t.TempDir()
	for shell, marker := range map[string]string{
		"bash":       "__start_strata",
		"zsh":        "#compdef strata",
		"fish":       "complete -c strata",
		"powershell": "Register-ArgumentCompleter",
	} {
		r := mustStrata(t, root, "completion", shell)
		if !strings.Contains(r.stdout, marker) {
			t.Errorf("completion %s: no %q in the script", shell, marker)
		}
	}
	if r := strataIn(t, root, "completion", "tcsh"); r.code != 2 || !strings.Contains(r.stderr, "tcsh") {
		t.Errorf("completion tcsh: want a usage error, got %d %q", r.code, r.stderr)
	}
	if r := strataIn(t, root, "completion"); r.code != 2 {
		t.Errorf("completion without a shell: want exit 2, got %d", r.code)
	}
}

// The completion scripts call `strata __complete`: image names come from the
// store, stage names from the Dockerfile, flag values from fixed lists.
func TestDynamicCompletion(t *testing.T) {
	root, _ := importedStore(t)
	mustStrata(t, root, "tag", "small:1", "other:2")
	complete := func(args ...string) []string {
		r := mustStrata(t, root, append([]string{"__complete"}, args...)...)
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if !strings.HasPrefix(l, ":") {
				out = append(out, strings.SplitN(l, "\t", 2)[0])
			}
		}
		sort.Strings(out)
		return out
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"inspect", ""}, []string{"other:2", "small:1"}},
		{[]string{"inspect", "small:1", ""}, []string{"other:2"}},
		{[]string{"history", "sm"}, []string{"small:1"}},
		{[]string{"layers", "small:1", ""}, nil},
		{[]string{"rmi", "o"}, []string{"other:2"}},
		{[]string{"build", "--progress", ""}, []string{"auto", "json", "plain", "quiet", "tty"}},
		{[]string{"graph", "--format", ""}, []string{"dot", "json", "mermaid"}},
		{[]string{"completion", ""}, []string{"bash", "fish", "powershell", "zsh"}},
	} {
		if got := complete(c.args...); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("__complete %q: %q, want %q", c.args, got, c.want)
		}
	}
	ctx := t.TempDir()
	df := "FROM busybox AS Builder\nFROM scratch AS final\nFROM scratch\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := complete("build", ctx, "--target", ""); strings.Join(got, " ") != "builder final" {
		t.Errorf("build --target: %q", got)
	}
	if got := complete("graph", "-f", filepath.Join(ctx, "Dockerfile"), "--target", ""); strings.Join(got, " ") != "builder final" {
		t.Errorf("graph -f --target: %q", got)
	}
	// no store: no names, and no store is made
	empty := filepath.Join(t.TempDir(), "none")
	if r := mustStrata(t, empty, "__complete", "inspect", ""); strings.Contains(r.stdout, ":1") {
		t.Errorf("no store: %q", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(empty, "index.json")); err == nil {
		t.Error("completion made a store")
	}
}

func TestDocsCommand(t *testing.T) {
	out := t.TempDir()
	man, md := filepath.Join(out, "man"), filepath.Join(out, "md")
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600")
	mustStrata(t, t.TempDir(), "docs", "--man", man, "--markdown", md)
	for _, n := range commandNames(t) {
		if n == "help" {
			continue
		}
		page, err := os.ReadFile(filepath.Join(man, "strata-"+n+".1"))
		if err != nil {
			t.Errorf("no man page for %s: %v", n, err)
			continue
		}
		if !bytes.Contains(page, []byte(`.TH "STRATA-`+strings.ToUpper(n)+`" "1" "Jan 2026" "strata `)) || !bytes.Contains(page, []byte(".SH NAME")) {
			t.Errorf("man page of %s: bad header:\n%.300s", n, page)
		}
		ref, err := os.ReadFile(filepath.Join(md, "strata_"+n+".md"))
		if err != nil {
			t.Errorf("no markdown page for %s: %v", n, err)
			continue
		}
		if !bytes.HasPrefix(ref, []byte("## strata "+n+"\n")) {
			t.Errorf("markdown page of %s starts %.60q", n, ref)
		}
	}
	top, err := os.ReadFile(filepath.Join(man, "strata.1"))
	if err != nil || !bytes.Contains(top, []byte("STRATA_ROOT")) {
		t.Errorf("strata.1 should describe the environment (err %v)", err)
	}
	// The defaults that depend on the machine are described instead.
	ref, _ := os.ReadFile(filepath.Join(md, "strata_build.md"))
	if !bytes.Contains(ref, []byte(`/var/lib/strata as root, else $XDG_DATA_HOME/strata`)) || bytes.Contains(ref, []byte("Auto generated")) {
		t.Errorf("strata_build.md: portable defaults, no generator stamp:\n%s", ref)
	}
	if r := strataIn(t, t.TempDir(), "docs"); r.code != 2 {
		t.Errorf("docs without a directory: want exit 2, got %d", r.code)
	}
}

// docs/man and docs/reference are generated from the commands' help and
// checked in: they must match what strata generates now.
func TestDocsUpToDate(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	mustStrata(t, t.TempDir(), "docs", "--man", filepath.Join(out, "man"), "--markdown", filepath.Join(out, "reference"))
	const regen = "regenerate them: go run ./cmd/strata docs --man docs/man --markdown docs/reference"
	th := regexp.MustCompile(`(?m)^\.TH .*$`) // date and version
	for _, sub := range []string{"man", "reference"} {
		want := readDir(t, filepath.Join(out, sub))
		got := readDir(t, filepath.Join(repo, "docs", sub))
		for name, w := range want {
			g, ok := got[name]
			if !ok {
				t.Errorf("docs/%s/%s is missing; %s", sub, name, regen)
				continue
			}
			if th.ReplaceAllString(g, "") != th.ReplaceAllString(w, "") {
				t.Errorf("docs/%s/%s is out of date; %s", sub, name, regen)
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("docs/%s/%s is not a page of any command; %s", sub, name, regen)
			}
		}
	}
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestGraphCommand(t *testing.T) {
	ctx := t.TempDir()
	df := `FROM golang:1.26 AS builder
RUN go build -o /server
FROM busybox AS debug
COPY --from=builder /server /
FROM scratch
COPY --from=builder /server /
RUN --mount=type=bind,from=busybox,target=/bb true
`
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	r := mustStrata(t, root, "graph", ctx)
	for _, want := range []string{
		`digraph "Dockerfile" {`,
		`s0 [label="builder (0)"`,
		`s1 [label="debug (1)", color=grey, fontcolor=grey, style="rounded,dashed"];`,
		`s2 [label="stage-2", peripheries=2`,
		`i0 -> s0 [label="FROM"];`,
		`s0 -> s1 [label="COPY --from", style=dashed`,
		`s0 -> s2 [label="COPY --from"];`,
		`i1 -> s2 [label="RUN --mount"];`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("graph (dot) has no %q:\n%s", want, r.stdout)
		}
	}
	// busybox is used by a needed stage (the mount) and an unneeded one (FROM)
	if !strings.Contains(r.stdout, `i1 [label="busybox", shape=cylinder];`) {
		t.Errorf("busybox is needed:\n%s", r.stdout)
	}
	r = mustStrata(t, root, "graph", "--format", "mermaid", "--target", "debug", "-f", filepath.Join(ctx, "Dockerfile"))
	for _, want := range []string{"flowchart TD", `s1("debug (1)")`, `s0 -->|"COPY --from"| s1`, `class s1 target`, `class s2 unused`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("graph --format mermaid --target debug has no %q:\n%s", want, r.stdout)
		}
	}
	var out bytes.Buffer
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"--root", root, "graph", "--format", "json", "-f", "-"}, strings.NewReader(df), &out, &errb)
	var g struct {
		Nodes []struct{ ID, Kind, Label string }
		Edges []struct{ From, To, Label string }
	}
	if code != 0 || json.Unmarshal(out.Bytes(), &g) != nil || len(g.Nodes) != 5 || len(g.Edges) != 5 {
		t.Errorf("graph --format json -f -: %d %s %s", code, out.String(), errb.String())
	}
	if r := strataIn(t, root, "graph", "--target", "nope", ctx); r.code != 1 || !strings.Contains(r.stderr, `"nope" could not be found`) {
		t.Errorf("unknown target: %d %q", r.code, r.stderr)
	}
	if r := strataIn(t, root, "graph", "--format", "png", ctx); r.code != 2 {
		t.Errorf("--format png: want exit 2, got %d", r.code)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nCOPY --from=later / /\nFROM scratch AS later\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := strataIn(t, root, "graph", ctx); r.code != 1 || !strings.Contains(r.stderr, "Dockerfile:2") {
		t.Errorf("a --from of a later stage is a Dockerfile error with its line: %d %q", r.code, r.stderr)
	}
}
