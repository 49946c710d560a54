package inspect

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/platform"
)

// NodeKind is what a node of the stage graph stands for.
type NodeKind string

// The kinds of Node.
const (
	StageNode   NodeKind = "stage"   // a FROM block
	ImageNode   NodeKind = "image"   // an image reference (FROM image, COPY --from=image)
	ContextNode NodeKind = "context" // a named --build-context
	// UnresolvedNode is a --from value that uses an ARG only known when the
	// instruction runs.
	UnresolvedNode NodeKind = "unresolved"
)

// Node is a stage, an image or a named context of the graph.
type Node struct {
	ID    string   `json:"id"`
	Kind  NodeKind `json:"kind"`
	Label string   `json:"label"`
	Stage int      `json:"stage"` // stage index, -1 for other kinds
	// Needed is set when building the target uses the node.
	Needed bool `json:"needed"`
	Target bool `json:"target,omitempty"`
}

// Edge says that To uses From: as its base (FROM), by COPY --from or by
// RUN --mount=from=.
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Label  string `json:"label"` // FROM, COPY --from, RUN --mount
	Count  int    `json:"count"` // how many instructions of To use From this way
	Needed bool   `json:"needed"`
}

// Edge labels.
const (
	EdgeFrom  = "FROM"
	EdgeCopy  = "COPY --from"
	EdgeMount = "RUN --mount"
)

// Graph is the stage graph of a Dockerfile.
type Graph struct {
	Name  string `json:"name"` // the Dockerfile's name
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// GlobalArgs evaluates the ARGs declared before the first FROM as a build
// does: --build-arg values (buildArgs) override the defaults, and the
// automatic platform args (BUILDPLATFORM, TARGETOS, ...) describe plat.
func GlobalArgs(df *dockerfile.Dockerfile, buildArgs map[string]string, plat v1.Platform) (shell.EnvGetter, error) {
	g := platform.Args(platform.Host(), plat)
	lex := df.Lexer()
	for _, a := range df.MetaArgs {
		for _, kv := range a.Args {
			if v, ok := buildArgs[kv.Key]; ok {
				g[kv.Key] = v
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, _, err := lex.ProcessWord(*kv.Value, envOf(g))
			if err != nil {
				return nil, df.Wrap(a.Location(), err)
			}
			g[kv.Key] = v
		}
	}
	return envOf(g), nil
}

func envOf(m map[string]string) shell.EnvGetter {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return shell.EnvsFromSlice(kv)
}

// NewGraph draws every stage of p (the ones the target does not need are
// marked not Needed), the images and named contexts they use, and the edges
// between them. globals expands --from values as the plan did.
//
// Long: its helpers (other, addEdge,
// source) are closures over the node and edge indexes it builds, and reading
// it top to bottom is reading the graph's rules in order.
func NewGraph(df *dockerfile.Dockerfile, p *plan.Plan, globals shell.EnvGetter) *Graph {
	g := &Graph{Name: df.File}
	needed := map[int]bool{}
	for _, i := range p.Needed {
		needed[i] = true
	}
	ids := map[string]int{} // node ID -> index in g.Nodes
	for _, st := range p.All {
		label := st.Display()
		if st.Name != "" {
			label += " (" + strconv.Itoa(st.Index) + ")"
		}
		ids[stageID(st.Index)] = len(g.Nodes)
		g.Nodes = append(g.Nodes, Node{ID: stageID(st.Index), Kind: StageNode, Label: label, Stage: st.Index, Needed: needed[st.Index], Target: st.Index == p.Target})
	}
	other := func(kind NodeKind, label string) string {
		key := string(kind) + "\x00" + label
		if i, ok := ids[key]; ok {
			return g.Nodes[i].ID
		}
		prefix := map[NodeKind]string{ImageNode: "i", ContextNode: "c", UnresolvedNode: "u"}[kind]
		n := 0
		for _, nd := range g.Nodes {
			if nd.Kind == kind {
				n++
			}
		}
		id := prefix + strconv.Itoa(n)
		ids[key] = len(g.Nodes)
		ids[id] = len(g.Nodes)
		g.Nodes = append(g.Nodes, Node{ID: id, Kind: kind, Label: label, Stage: -1})
		return id
	}
	edges := map[[3]string]int{}
	addEdge := func(from, to, label string) {
		k := [3]string{from, to, label}
		if i, ok := edges[k]; ok {
			g.Edges[i].Count++
			return
		}
		edges[k] = len(g.Edges)
		g.Edges = append(g.Edges, Edge{From: from, To: to, Label: label, Count: 1})
	}
	lex := df.Lexer()
	// source resolves a --from value (or a FROM base) used in stage i to a node.
	source := func(i int, raw string, expanded bool) string {
		v := raw
		if !expanded {
			x, _, err := lex.ProcessWord(raw, globals)
			if err != nil || x == "" {
				return other(UnresolvedNode, raw)
			}
			v = x
		}
		if p.IsNamed(v) {
			return other(ContextNode, "context: "+v)
		}
		if j, isStage, err := p.ResolveFrom(df, i, v); err == nil && isStage {
			return stageID(j)
		}
		return other(ImageNode, v)
	}
	for _, st := range p.All {
		to := stageID(st.Index)
		switch {
		case st.BaseStage >= 0:
			addEdge(stageID(st.BaseStage), to, EdgeFrom)
		case strings.EqualFold(st.Base, "scratch"):
		default:
			addEdge(source(st.Index, st.Base, true), to, EdgeFrom)
		}
		for _, c := range st.Source.Commands {
			switch c := c.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					addEdge(source(st.Index, c.From, false), to, EdgeCopy)
				}
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					if m.From != "" {
						addEdge(source(st.Index, m.From, false), to, EdgeMount)
					}
				}
			}
		}
	}
	// An edge (and an image or context) is needed when a needed stage uses it.
	for i := range g.Edges {
		e := &g.Edges[i]
		if g.Nodes[ids[e.To]].Needed {
			e.Needed = true
			g.Nodes[ids[e.From]].Needed = true
		}
	}
	return g
}

func stageID(i int) string { return "s" + strconv.Itoa(i) }

func (e Edge) text() string {
	if e.Count > 1 {
		return fmt.Sprintf("%s (%d)", e.Label, e.Count)
	}
	return e.Label
}

// Dot writes the graph in Graphviz's dot language. Stages are rounded boxes,
// images cylinders, named contexts folders; the target has a double border;
// what the target does not need is dashed and grey.
func (g *Graph) Dot(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(g.Name))
	b.WriteString("\tnode [shape=box, style=rounded, fontname=\"Helvetica\"];\n")
	b.WriteString("\tedge [fontname=\"Helvetica\", fontsize=10];\n")
	for _, n := range g.Nodes {
		attrs := []string{"label=" + dotQuote(n.Label)}
		style := []string{}
		switch n.Kind {
		case StageNode:
			style = append(style, "rounded")
		case ImageNode:
			attrs = append(attrs, "shape=cylinder")
		case ContextNode:
			attrs = append(attrs, "shape=folder")
		case UnresolvedNode:
			attrs = append(attrs, "shape=note")
		}
		if n.Target {
			attrs = append(attrs, "peripheries=2", "penwidth=2")
		}
		if !n.Needed {
			style = append(style, "dashed")
			attrs = append(attrs, "color=grey", "fontcolor=grey")
		}
		if len(style) > 0 {
			attrs = append(attrs, "style="+dotQuote(strings.Join(style, ",")))
		}
		fmt.Fprintf(&b, "\t%s [%s];\n", n.ID, strings.Join(attrs, ", "))
	}
	for _, e := range g.Edges {
		attrs := []string{"label=" + dotQuote(e.text())}
		if !e.Needed {
			attrs = append(attrs, "style=dashed", "color=grey", "fontcolor=grey")
		}
		fmt.Fprintf(&b, "\t%s -> %s [%s];\n", e.From, e.To, strings.Join(attrs, ", "))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// Mermaid writes the graph as a Mermaid flowchart (renders in GitHub and
// GitLab markdown). Shapes and styles follow Dot.
func (g *Graph) Mermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	var unused, target []string
	for _, n := range g.Nodes {
		l := mermaidQuote(n.Label)
		switch n.Kind {
		case StageNode:
			fmt.Fprintf(&b, "    %s(%s)\n", n.ID, l)
		case ImageNode:
			fmt.Fprintf(&b, "    %s[(%s)]\n", n.ID, l)
		case ContextNode:
			fmt.Fprintf(&b, "    %s[/%s/]\n", n.ID, l)
		default:
			fmt.Fprintf(&b, "    %s{{%s}}\n", n.ID, l)
		}
		if !n.Needed {
			unused = append(unused, n.ID)
		}
		if n.Target {
			target = append(target, n.ID)
		}
	}
	var greyLinks []string
	for i, e := range g.Edges {
		arrow := "-->"
		if !e.Needed {
			arrow = "-.->"
			greyLinks = append(greyLinks, strconv.Itoa(i))
		}
		fmt.Fprintf(&b, "    %s %s|%s| %s\n", e.From, arrow, mermaidQuote(e.text()), e.To)
	}
	if len(greyLinks) > 0 {
		fmt.Fprintf(&b, "    linkStyle %s stroke:#999,color:#999\n", strings.Join(greyLinks, ","))
	}
	if len(target) > 0 {
		b.WriteString("    classDef target stroke-width:3px\n")
		fmt.Fprintf(&b, "    class %s target\n", strings.Join(target, ","))
	}
	if len(unused) > 0 {
		b.WriteString("    classDef unused stroke-dasharray:5 5,stroke:#999,color:#999\n")
		fmt.Fprintf(&b, "    class %s unused\n", strings.Join(unused, ","))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mermaidQuote(s string) string {
	return `"` + strings.NewReplacer(`"`, "#quot;", "\n", "<br>").Replace(s) + `"`
}

// Write renders g in format: "dot" (Graphviz), "mermaid" or "json" (the
// nodes and edges, indented).
func (g *Graph) Write(w io.Writer, format string) error {
	switch format {
	case "dot":
		return g.Dot(w)
	case "mermaid":
		return g.Mermaid(w)
	case "json":
		return WriteJSON(w, g, "  ")
	}
	return fmt.Errorf("graph format %q: use dot, mermaid or json", format)
}
