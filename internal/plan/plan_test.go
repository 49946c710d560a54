package plan

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/strata-build/strata/internal/dockerfile"
)

func parse(t *testing.T, src string) *dockerfile.Dockerfile {
	t.Helper()
	df, err := dockerfile.Parse("Dockerfile", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return df
}

func args(kv ...string) shell.EnvGetter { return shell.EnvsFromSlice(kv) }

// checkOrder verifies that Needed lists each stage once and every stage after
// all of its dependencies.
func checkOrder(t *testing.T, p *Plan) {
	t.Helper()
	pos := map[int]int{}
	for i, n := range p.Needed {
		if _, dup := pos[n]; dup {
			t.Errorf("stage %d planned twice: %v", n, p.Needed)
		}
		pos[n] = i
	}
	for _, n := range p.Needed {
		for _, d := range p.All[n].Deps {
			dp, ok := pos[d]
			if !ok {
				t.Errorf("stage %d needs %d, which is not planned: %v", n, d, p.Needed)
			} else if dp > pos[n] {
				t.Errorf("stage %d planned before its dependency %d: %v", n, d, p.Needed)
			}
		}
	}
	if len(p.Needed) == 0 || p.Needed[len(p.Needed)-1] != p.Target {
		t.Errorf("target %d is not last in %v", p.Target, p.Needed)
	}
}

const multi = `FROM busybox AS base
RUN echo base
FROM busybox AS unused
RUN echo unused
FROM base AS build
RUN echo build
FROM alpine AS tools
FROM busybox AS assets
FROM scratch AS final
COPY --from=build /out /out
COPY --from=3 /t /t
RUN --mount=type=bind,from=assets,target=/a true
`

func TestNeeded(t *testing.T) {
	df := parse(t, multi)
	tests := []struct {
		target string
		want   int
		needed []int
	}{
		{"", 5, []int{0, 2, 3, 4, 5}},
		{"final", 5, []int{0, 2, 3, 4, 5}},
		{"build", 2, []int{0, 2}},
		{"BUILD", 2, []int{0, 2}}, // names are case-insensitive
		{"base", 0, []int{0}},
		{"unused", 1, []int{1}},
		{"tools", 3, []int{3}},
	}
	for _, tt := range tests {
		t.Run("target="+tt.target, func(t *testing.T) {
			p, err := New(df, tt.target, args())
			if err != nil {
				t.Fatal(err)
			}
			if p.Target != tt.want {
				t.Errorf("Target = %d, want %d", p.Target, tt.want)
			}
			got := slices.Clone(p.Needed)
			slices.Sort(got)
			if !reflect.DeepEqual(got, tt.needed) {
				t.Errorf("Needed = %v, want the stages %v", p.Needed, tt.needed)
			}
			checkOrder(t, p)
			if len(p.All) != 6 {
				t.Errorf("All has %d stages, want every stage (6)", len(p.All))
			}
		})
	}
	p, err := New(df, "", args())
	if err != nil {
		t.Fatal(err)
	}
	wantDeps := map[int][]int{0: nil, 1: nil, 2: {0}, 3: nil, 4: nil, 5: {2, 3, 4}}
	for i, st := range p.All {
		if st.Index != i || st.Source != &df.Stages[i] {
			t.Errorf("stage %d: Index %d / Source not the parsed stage", i, st.Index)
		}
		if !reflect.DeepEqual(st.Deps, wantDeps[i]) {
			t.Errorf("stage %d (%s) Deps = %v, want %v", i, st.Name, st.Deps, wantDeps[i])
		}
	}
	if p.All[2].BaseStage != 0 || p.All[2].Base != "base" {
		t.Errorf("build: BaseStage %d Base %q, want 0 \"base\"", p.All[2].BaseStage, p.All[2].Base)
	}
	for _, i := range []int{0, 1, 3, 4, 5} {
		if p.All[i].BaseStage != -1 {
			t.Errorf("stage %d BaseStage = %d, want -1", i, p.All[i].BaseStage)
		}
	}
	if p.All[5].Base != "scratch" || p.All[3].Base != "alpine" {
		t.Errorf("Base values %q %q", p.All[5].Base, p.All[3].Base)
	}
}

func TestDependencyChainOrder(t *testing.T) {
	// The stages are listed so that a naive "ascending index" order is right
	// but the dependency chain is long: 3 <- 2 <- 1 <- 0 and 4 copies from 0 and 2.
	src := `FROM busybox AS a
FROM a AS b
FROM b AS c
FROM c AS d
FROM scratch
COPY --from=a / /a
COPY --from=c / /c
`
	p, err := New(parse(t, src), "", args())
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2, 4}; !reflect.DeepEqual(p.Needed, want) {
		t.Errorf("Needed = %v, want %v (d is not needed)", p.Needed, want)
	}
	checkOrder(t, p)
	if p.All[4].Display() != "stage-4" || p.All[3].Display() != "d" {
		t.Errorf("Display = %q %q", p.All[4].Display(), p.All[3].Display())
	}
	p, err = New(parse(t, src), "d", args())
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2, 3}; !reflect.DeepEqual(p.Needed, want) {
		t.Errorf("Needed(d) = %v, want %v", p.Needed, want)
	}
}

func TestCaseInsensitiveNames(t *testing.T) {
	src := "FROM busybox AS Builder\nFROM BUILDER AS Final\nCOPY --from=bUiLdEr /a /a\n"
	p, err := New(parse(t, src), "FINAL", args())
	if err != nil {
		t.Fatal(err)
	}
	if p.All[0].Name != "builder" || p.All[1].Name != "final" {
		t.Errorf("names %q %q, want lower case", p.All[0].Name, p.All[1].Name)
	}
	if p.All[1].BaseStage != 0 || !reflect.DeepEqual(p.All[1].Deps, []int{0}) {
		t.Errorf("final: BaseStage %d Deps %v", p.All[1].BaseStage, p.All[1].Deps)
	}
	if p.Target != 1 || !reflect.DeepEqual(p.Needed, []int{0, 1}) {
		t.Errorf("Target %d Needed %v", p.Target, p.Needed)
	}
}

func TestArgInFrom(t *testing.T) {
	src := "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest} AS one\nFROM $BASE AS two\n"
	df := parse(t, src)
	p, err := New(df, "", args("BASE=busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if p.All[0].Base != "busybox:latest" || p.All[1].Base != "busybox" {
		t.Errorf("Base = %q, %q", p.All[0].Base, p.All[1].Base)
	}
	if p.All[1].BaseStage != -1 {
		t.Errorf("an image is not a stage")
	}

	// the arg can name an earlier stage
	src = "ARG BASE=busybox\nFROM busybox AS builder\nFROM ${BASE}\n"
	p, err = New(parse(t, src), "", args("BASE=builder"))
	if err != nil {
		t.Fatal(err)
	}
	if p.All[1].Base != "builder" || p.All[1].BaseStage != 0 || !reflect.DeepEqual(p.Needed, []int{0, 1}) {
		t.Errorf("FROM ${BASE}=builder: Base %q BaseStage %d Needed %v", p.All[1].Base, p.All[1].BaseStage, p.Needed)
	}

	// a global ARG used in --from
	src = "ARG SRC\nFROM busybox AS builder\nFROM scratch\nCOPY --from=${SRC} / /\n"
	p, err = New(parse(t, src), "", args("SRC=builder"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.All[1].Deps, []int{0}) {
		t.Errorf("--from=${SRC}: Deps %v", p.All[1].Deps)
	}
	// unset: resolved later, not an error now, no dependency
	p, err = New(parse(t, src), "", args())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.All[1].Deps) != 0 {
		t.Errorf("--from=${SRC} unset: Deps %v", p.All[1].Deps)
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		target string
		args   []string
		want   string // full error text
	}{
		{
			name: "FROM blank arg",
			src:  "ARG BASE\nFROM ${BASE}\n",
			want: "Dockerfile:2: FROM ${BASE}: base name (${BASE}) should not be blank",
		},
		{
			name: "FROM expansion error",
			src:  "ARG BASE\nFROM ${BASE:?unset}\n",
			want: "Dockerfile:2: FROM ${BASE:?unset}: expanding FROM: ",
		},
		{
			name: "FROM itself",
			src:  "FROM busybox\nFROM loop AS loop\n",
			want: `Dockerfile:2: FROM loop AS loop: stage "loop" cannot build FROM itself: circular dependency`,
		},
		{
			name: "FROM itself, other case",
			src:  "FROM Loop AS loop\n",
			want: `Dockerfile:1: FROM Loop AS loop: stage "loop" cannot build FROM itself: circular dependency`,
		},
		{
			name: "duplicate stage name",
			src:  "FROM busybox AS a\nRUN true\nFROM busybox AS b\nFROM alpine AS A\n",
			want: `Dockerfile:4: FROM alpine AS A: duplicate stage name "a"`,
		},
		{
			name: "COPY --from a later stage",
			src:  "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n",
			want: `Dockerfile:2: COPY --from=b /x /x: stage "b" is defined after the stage that uses it: --from can only use earlier stages`,
		},
		{
			name: "COPY --from itself by name",
			src:  "FROM busybox AS a\nCOPY --from=A /x /x\n",
			want: `Dockerfile:2: COPY --from=A /x /x: stage "A" refers to itself: circular dependency`,
		},
		{
			name: "COPY --from itself by index",
			src:  "FROM busybox\nFROM busybox\nCOPY --from=1 /x /x\n",
			want: "Dockerfile:3: COPY --from=1 /x /x: stage 1 refers to itself or a later stage (1): --from can only use earlier stages",
		},
		{
			name: "COPY --from a later index",
			src:  "FROM busybox\nCOPY --from=1 /x /x\nFROM busybox\n",
			want: "Dockerfile:2: COPY --from=1 /x /x: stage 0 refers to itself or a later stage (1): --from can only use earlier stages",
		},
		{
			name: "COPY --from index out of range",
			src:  "FROM busybox\nFROM busybox\nCOPY --from=7 /x /x\n",
			want: "Dockerfile:3: COPY --from=7 /x /x: invalid stage index 7: the Dockerfile has 2 stages",
		},
		{
			name: "COPY --from negative index",
			src:  "FROM busybox\nCOPY --from=-1 /x /x\n",
			want: "Dockerfile:2: COPY --from=-1 /x /x: invalid stage index -1: the Dockerfile has 1 stages",
		},
		{
			name: "RUN --mount from a later stage",
			src:  "FROM busybox\nRUN --mount=type=bind,from=later,target=/l true\nFROM busybox AS later\n",
			want: `Dockerfile:2: RUN --mount=type=bind,from=later,target=/l true: stage "later" is defined after the stage that uses it: --from can only use earlier stages`,
		},
		{
			name:   "unknown target with suggestion",
			src:    "FROM busybox AS builder\nFROM busybox AS final\n",
			target: "buidler",
			want:   `target stage "buidler" could not be found; did you mean "builder"?`,
		},
		{
			name:   "unknown target, case-insensitive suggestion",
			src:    "FROM busybox AS builder\nFROM busybox AS final\n",
			target: "FINA",
			want:   `target stage "FINA" could not be found; did you mean "final"?`,
		},
		{
			name:   "unknown target, nothing close",
			src:    "FROM busybox AS builder\nFROM busybox AS final\n",
			target: "production",
			want:   `target stage "production" could not be found; the stages are: builder, final`,
		},
		{
			name:   "a stage index is not a target name",
			src:    "FROM busybox AS builder\nFROM busybox\n",
			target: "1",
			want:   `target stage "1" could not be found; the stages are: builder`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(parse(t, tt.src), tt.target, args(tt.args...))
			if err == nil {
				t.Fatalf("no error; plan Needed=%v", p.Needed)
			}
			if p != nil {
				t.Errorf("a plan was returned with the error")
			}
			got := err.Error()
			if strings.HasSuffix(tt.want, ": ") {
				if !strings.HasPrefix(got, tt.want) {
					t.Errorf("error %q\nwant prefix %q", got, tt.want)
				}
			} else if got != tt.want {
				t.Errorf("error %q\n      want %q", got, tt.want)
			}
			if strings.HasPrefix(tt.want, "Dockerfile:") {
				var de *dockerfile.Error
				if !errors.As(err, &de) || de.Line == 0 {
					t.Errorf("error is not a located *dockerfile.Error: %#v", err)
				}
			}
		})
	}
}

func TestImageRefInFrom(t *testing.T) {
	src := "FROM busybox AS a\nFROM scratch\nCOPY --from=alpine:3.20 /x /x\nCOPY --from=docker.io/library/busybox@sha256:" + strings.Repeat("a", 64) + " /y /y\nRUN --mount=type=bind,from=golang,target=/g true\n"
	p, err := New(parse(t, src), "", args())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.All[1].Deps) != 0 {
		t.Errorf("image refs made stage deps: %v", p.All[1].Deps)
	}
	if !reflect.DeepEqual(p.Needed, []int{1}) {
		t.Errorf("Needed = %v, want [1] (stage a is unused)", p.Needed)
	}
}

func TestResolveFrom(t *testing.T) {
	df := parse(t, multi)
	p, err := New(df, "", args())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      int
		v       string
		idx     int
		isStage bool
		errPart string
	}{
		{5, "build", 2, true, ""},
		{5, "BUILD", 2, true, ""},
		{5, "0", 0, true, ""},
		{5, "4", 4, true, ""},
		{5, "busybox:latest", 0, false, ""},
		{5, "ghcr.io/x/y@sha256:" + strings.Repeat("0", 64), 0, false, ""},
		{2, "base", 0, true, ""},
		{2, "build", 0, false, "refers to itself"},
		{2, "tools", 0, false, "defined after"},
		{2, "final", 0, false, "defined after"},
		{2, "2", 0, false, "refers to itself or a later stage"},
		{2, "3", 0, false, "refers to itself or a later stage"},
		{2, "6", 0, false, "invalid stage index 6"},
		{0, "unused", 0, false, "defined after"},
	}
	for _, tt := range tests {
		idx, isStage, err := p.ResolveFrom(df, tt.in, tt.v)
		if tt.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("ResolveFrom(%d, %q) err = %v, want %q", tt.in, tt.v, err, tt.errPart)
			}
			continue
		}
		if err != nil || idx != tt.idx || isStage != tt.isStage {
			t.Errorf("ResolveFrom(%d, %q) = %d, %v, %v; want %d, %v", tt.in, tt.v, idx, isStage, err, tt.idx, tt.isStage)
		}
	}
}

func TestSuggest(t *testing.T) {
	p, err := New(parse(t, multi), "", args())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"buidl":  `; did you mean "build"?`,
		"Tols":   `; did you mean "tools"?`,
		"assets": `; did you mean "assets"?`,
		"xyzxyz": "",
		"":       "",
	} {
		if got := p.Suggest(name); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", name, got, want)
		}
	}
}
