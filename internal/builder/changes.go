package builder

import (
	"context"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/source"
)

// ApplyChanges applies Dockerfile instructions that only touch the image
// config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME,
// WORKDIR, STOPSIGNAL, SHELL, HEALTHCHECK) to cfg, like `docker import --change`.
func ApplyChanges(cfg *v1.ConfigFile, changes []string) error {
	out := *cfg
	s := &imageState{cfg: &out, env: envList(cfg.Config.Env)}
	for _, ch := range changes {
		res, err := parser.Parse(strings.NewReader(ch))
		if err != nil {
			return fmt.Errorf("--change %q: %w", ch, err)
		}
		for _, n := range res.AST.Children {
			c, err := instructions.ParseCommand(n)
			if err != nil {
				return fmt.Errorf("--change %q: %w", ch, err)
			}
			if err := s.expand(c); err != nil {
				return fmt.Errorf("--change %q: %w", ch, err)
			}
			switch c := c.(type) {
			case *instructions.WorkdirCommand:
				s.cfg.Config.WorkingDir = s.resolvePath(c.Path)
			case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.ArgCommand:
				return fmt.Errorf("--change %q: %s cannot be used with import", ch, strings.ToUpper(c.Name()))
			default:
				if err := s.config(c); err != nil {
					return fmt.Errorf("--change %q: %w", ch, err)
				}
			}
		}
	}
	*cfg = out
	image.FillHistoryTimes(cfg.History)
	for i := range cfg.History {
		if cfg.History[i].Comment == historyComment {
			cfg.History[i].Comment = "" // not a Dockerfile build
		}
	}
	return nil
}

// ExportRootfs writes the flattened filesystem of img into dest (created if
// missing), keeping modes and owners: `--output type=local`.
func (b *Builder) ExportRootfs(ctx context.Context, img *image.Image, dest string) error {
	dirs, err := b.LayerDirs(ctx, img)
	if err != nil {
		return err
	}
	src, err := source.Open(ctx, b.snapshots(), dirs, "image", "")
	if err != nil {
		return err
	}
	err = exportTree(ctx, src.WithOwners("image"), dest)
	if cerr := src.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// exportTree copies the whole tree of src into the host directory dest
// (created if missing).
func exportTree(ctx context.Context, src *source.Source, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	it, err := src.Stat("/")
	if err != nil {
		return err
	}
	return copyTree(ctx, it, dest)
}
