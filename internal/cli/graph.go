package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/inspect"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/platform"
)

func (a *app) graphCmd() *cobra.Command {
	var file, target, format string
	var buildArgs, contexts []string
	cmd := &cobra.Command{
		Use:   "graph [OPTIONS] [PATH]",
		Short: "Draw the stage graph of a Dockerfile (Graphviz dot or Mermaid)",
		Long: `Draw the stages of a Dockerfile and what they use, without building:
every FROM stage, the images and named build contexts they start from or copy
from, and the edges between them, labelled FROM, COPY --from or RUN --mount.

The target stage (--target, else the last one) has a thick border; the stages
the target does not need, which a build skips, and what only they use are
drawn dashed and grey. PATH is the build context (default: the current
directory); the Dockerfile is PATH/Dockerfile unless -f names another.

--format dot writes Graphviz's language (render with 'dot -Tsvg'), mermaid a
Mermaid flowchart (GitHub and GitLab render it in markdown), json the nodes
and edges.`,
		Example: `  strata graph | dot -Tsvg > stages.svg
  strata graph -f build/Dockerfile --target test --format mermaid .
  strata graph --build-arg BASE=alpine:3.20 --format json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "dot", "mermaid", "json":
			default:
				return usagef("--format=%s: use dot, mermaid or json", format)
			}
			ctxDir := "."
			if len(args) == 1 {
				ctxDir = args[0]
			}
			name, src, err := a.readDockerfile(ctxDir, file)
			if err != nil {
				return err
			}
			df, err := dockerfile.Parse(filepath.Base(name), src)
			if err != nil {
				return err
			}
			args1 := parseBuildArgs(buildArgs)
			var names []string
			for _, c := range contexts {
				n, _, _ := strings.Cut(c, "=")
				if n == "" {
					return usagef("--build-context %q: want NAME=VALUE", c)
				}
				names = append(names, n)
			}
			globals, err := inspect.GlobalArgs(df, args1, platform.Host())
			if err != nil {
				return err
			}
			p, err := plan.New(df, target, globals, plan.WithNamedContexts(names))
			if err != nil {
				return err
			}
			g := inspect.NewGraph(df, p, globals)
			var out bytes.Buffer
			if err := g.Write(&out, format); err != nil {
				return err
			}
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "name of the Dockerfile (default: PATH/Dockerfile; - reads stdin)")
	fl.StringVar(&target, "target", "", "the target stage (default: the last one)")
	fl.StringVar(&format, "format", "dot", "output format: dot, mermaid or json")
	fl.StringArrayVar(&buildArgs, "build-arg", nil, "set build-time variables used in FROM and --from (KEY=VALUE, or KEY to take it from the environment)")
	fl.StringArrayVar(&contexts, "build-context", nil, "named build context (NAME=VALUE): FROM and --from NAME use it")
	return cmd
}

// readDockerfile reads the Dockerfile that -f names (- is stdin), else the
// context's; name is its path, "Dockerfile" for stdin.
func (a *app) readDockerfile(ctxDir, file string) (name string, src []byte, err error) {
	switch file {
	case "-":
		name = "Dockerfile"
		src, err = io.ReadAll(a.stdin)
	case "":
		name = filepath.Join(ctxDir, "Dockerfile")
		src, err = os.ReadFile(name)
	default:
		name = file
		src, err = os.ReadFile(file)
	}
	if err != nil {
		return "", nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	return name, src, nil
}
