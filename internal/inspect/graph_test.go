package inspect

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const graphDockerfile = `ARG BASE=golang:1.26
FROM ${BASE} AS builder
RUN --mount=type=cache,target=/root/.cache go build

FROM busybox AS tools

FROM scratch AS test
COPY --from=builder /x /x
COPY --from=alpine:3.20 /etc/os-release /

FROM builder AS lint
RUN --mount=type=bind,from=tools,source=/bin,target=/t true

FROM scratch
ARG LATE
COPY --from=builder /a /a
COPY --from=builder /b /b
COPY --from=assets / /static
COPY --from=${LATE} / /late
`

func graphOf(t *testing.T, src, target string, buildArgs map[string]string, named ...string) *Graph {
	t.Helper()
	df, err := dockerfile.Parse("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	globals, err := GlobalArgs(df, buildArgs, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.New(df, target, globals, plan.WithNamedContexts(named))
	if err != nil {
		t.Fatal(err)
	}
	return NewGraph(df, p, globals)
}

func TestGraph(t *testing.T) {
	g := graphOf(t, graphDockerfile, "", nil)
	var nodes []string
	for _, n := range g.Nodes {
		s := n.ID + " " + string(n.Kind) + " " + n.Label
		if n.Needed {
			s += " needed"
		}
		if n.Target {
			s += " target"
		}
		nodes = append(nodes, s)
	}
	wantNodes := []string{
		"s0 stage builder (0) needed",
		"s1 stage tools (1)",
		"s2 stage test (2)",
		"s3 stage lint (3)",
		"s4 stage stage-4 needed target",
		"i0 image golang:1.26 needed",
		"i1 image busybox",
		"i2 image alpine:3.20",
		"i3 image assets needed",
		"u0 unresolved ${LATE} needed",
	}
	if !reflect.DeepEqual(nodes, wantNodes) {
		t.Errorf("nodes:\n got %q\nwant %q", nodes, wantNodes)
	}
	var edges []string
	for _, e := range g.Edges {
		s := e.From + " -> " + e.To + " " + e.text()
		if e.Needed {
			s += " needed"
		}
		edges = append(edges, s)
	}
	wantEdges := []string{
		"i0 -> s0 FROM needed",
		"i1 -> s1 FROM",
		"s0 -> s2 COPY --from",
		"i2 -> s2 COPY --from",
		"s0 -> s3 FROM",
		"s1 -> s3 RUN --mount",
		"s0 -> s4 COPY --from (2) needed",
		"i3 -> s4 COPY --from needed",
		"u0 -> s4 COPY --from needed",
	}
	if !reflect.DeepEqual(edges, wantEdges) {
		t.Errorf("edges:\n got %q\nwant %q", edges, wantEdges)
	}
}

func TestGraphTargetArgsAndContexts(t *testing.T) {
	// --target lint needs builder and tools; a --build-arg changes the base
	// image; a named context replaces the image of that name.
	g := graphOf(t, graphDockerfile, "lint", map[string]string{"BASE": "golang:1.25"}, "assets")
	needed := map[string]bool{}
	labels := map[string]string{}
	for _, n := range g.Nodes {
		needed[n.Label] = n.Needed
		labels[n.ID] = n.Label
		if n.Target && n.Label != "lint (3)" {
			t.Errorf("target is %q, want lint (3)", n.Label)
		}
	}
	for l, want := range map[string]bool{"builder (0)": true, "tools (1)": true, "lint (3)": true, "test (2)": false, "stage-4": false, "golang:1.25": true, "busybox": true, "context: assets": false} {
		if got, ok := needed[l]; !ok || got != want {
			t.Errorf("node %q: needed=%v (present %v), want %v", l, got, ok, want)
		}
	}
	if _, ok := needed["assets"]; ok {
		t.Error("assets is a named context here, not an image")
	}
	for _, e := range g.Edges {
		if labels[e.From] == "tools (1)" && (labels[e.To] != "lint (3)" || e.Label != EdgeMount || !e.Needed) {
			t.Errorf("edge from tools: %+v", e)
		}
	}
}

func TestGraphGolden(t *testing.T) {
	g := graphOf(t, graphDockerfile, "", nil)
	for _, c := range []struct {
		file   string
		render func(*bytes.Buffer) error
	}{
		{"graph.dot", func(b *bytes.Buffer) error { return g.Dot(b) }},
		{"graph.mmd", func(b *bytes.Buffer) error { return g.Mermaid(b) }},
	} {
		var b bytes.Buffer
		if err := c.render(&b); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", c.file)
		if *update {
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update to write it)", err)
		}
		if b.String() != string(want) {
			t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", c.file, b.String())
		}
	}
}

// The dot output is valid Graphviz input (checked with Debian's graphviz
// when it is installed).
func TestGraphDotRenders(t *testing.T) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("graphviz (dot) is not installed: apt-get install graphviz")
	}
	var b bytes.Buffer
	g := graphOf(t, graphDockerfile+"FROM \"quoted\\\\name\" AS q\n", "", nil)
	if err := g.Dot(&b); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dot, "-Tsvg")
	cmd.Stdin = &b
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("dot -Tsvg: %v\n%s\ninput:\n%s", err, stderr.String(), b.String())
	}
	svg := strings.ReplaceAll(string(out), "&#45;", "-")
	for _, want := range []string{"builder (0)", "golang:1.26", "COPY --from (2)", "RUN --mount", "stroke-dasharray"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the SVG has no %q", want)
		}
	}
}

func TestGraphWrite(t *testing.T) {
	g := graphOf(t, "FROM busybox AS a\nFROM a\n", "", nil)
	for _, format := range []string{"dot", "mermaid", "json"} {
		var b bytes.Buffer
		if err := g.Write(&b, format); err != nil || b.Len() == 0 {
			t.Errorf("Write(%s): %v, %d bytes", format, err, b.Len())
		}
	}
	var b bytes.Buffer
	if err := g.Write(&b, "svg"); err == nil {
		t.Error("Write(svg): want an error")
	}
}
