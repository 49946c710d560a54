package builder

import (
	"context"
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/source"
)

// stageNames are the names a from value used in stage in may use besides
// image references (source.Names): the named contexts, and the stages
// before it.
type stageNames struct {
	r  *run
	in int
}

func (n stageNames) Context(name string) (string, bool) {
	if !n.r.plan.IsNamed(name) {
		return "", false
	}
	return n.r.opts.Contexts[strings.ToLower(name)], true
}

func (n stageNames) Stage(v string) (int, string, bool, error) {
	idx, ok, err := n.r.plan.ResolveFrom(n.r.df, n.in, v)
	if err != nil || !ok {
		return 0, "", false, err
	}
	return idx, n.r.plan.All[idx].Display(), true, nil
}

func (n stageNames) Suggest(v string) string { return n.r.plan.Suggest(v) }

// resolveFrom resolves the from value of a COPY, ADD or RUN --mount (bind
// or cache) of the stage: the one resolver of from values (FROM uses
// source.ResolveBase once the plan found no stage).
func (sb *stageBuilder) resolveFrom(from string) (source.Ref, error) {
	return source.Resolve(from, stageNames{r: sb.r, in: sb.st.Index})
}

// refImage returns the image an Image or NamedImage ref names: from the
// store, pulled (with --pull, or when it is not there), or imported from
// an OCI layout.
func (r *run) refImage(ctx context.Context, ref source.Ref, plat v1.Platform) (*image.Image, error) {
	if ref.Kind == source.Image {
		return r.resolveImage(ctx, ref.Image, r.opts.Pull, true, plat)
	}
	var img *image.Image
	var err error
	if ref.OCILayout {
		img, err = r.ociLayoutImage(ctx, ref.Image)
	} else {
		img, err = r.resolveImage(ctx, ref.Image, r.opts.Pull, true, plat)
	}
	if err != nil {
		return nil, fmt.Errorf("--build-context %s: %w", ref.From, err)
	}
	return img, nil
}

// sourceUse is what a source is opened for.
type sourceUse int

const (
	// forCopy: COPY and ADD read the build context through its ignore
	// rules, and the error of an image that cannot be resolved explains
	// that the value names no stage either (source.Ref.PullError).
	forCopy sourceUse = iota
	// forMount: RUN --mount binds a directory, so the build context is its
	// filtered copy (filteredContext).
	forMount
)

// openSource opens what ref names for reading: the build context, a named
// context, or a read-only view of a stage's or an image's layers (an image
// is pulled when needed). The caller must Close it.
func (sb *stageBuilder) openSource(ctx context.Context, ref source.Ref, use sourceUse) (*source.Source, error) {
	switch ref.Kind {
	case source.BuildContext:
		if use == forMount {
			dir, err := sb.r.filteredContext(ctx)
			if err != nil {
				return nil, err
			}
			return source.Dir(dir, ref.Name), nil
		}
		return source.Context(sb.r.bctx, sb.r.sums), nil
	case source.NamedDir:
		return source.Dir(ref.Dir, ref.Name), nil
	case source.Stage:
		res := sb.r.results[ref.Stage]
		if res == nil {
			return nil, fmt.Errorf("stage %s was not built", ref.From)
		}
		dirs, err := sb.r.ensureDirs(ctx, res)
		if err != nil {
			return nil, err
		}
		return source.Open(ctx, sb.svc.snapshots, dirs, ref.Name, "")
	case source.Image, source.NamedImage:
		img, err := sb.r.refImage(ctx, ref, sb.svc.opts.Platform) // as BuildKit: the target's
		if err != nil {
			if use == forCopy && ref.Kind == source.Image {
				err = ref.PullError(err)
			}
			return nil, err
		}
		return sb.svc.openImage(ctx, img, ref.Name, "image "+img.Descriptor.Digest.String())
	}
	return nil, fmt.Errorf("%s: no files to read", ref.Name)
}

// withSource gives fn the opened source ref names (see openSource) and
// closes it after.
func (sb *stageBuilder) withSource(ctx context.Context, ref source.Ref, use sourceUse, fn func(src *source.Source) error) error {
	src, err := sb.openSource(ctx, ref, use)
	if err != nil {
		return err
	}
	err = fn(src)
	if cerr := src.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// mountKey is what a RUN's cache key takes of a bind mount of the path src
// of ref: a stage by its key, an image by its digest, the build context or
// a named directory by the files (source.Item.Key).
func (sb *stageBuilder) mountKey(ctx context.Context, ref source.Ref, src string) (string, error) {
	switch ref.Kind {
	case source.Stage:
		return string(sb.r.results[ref.Stage].key), nil
	case source.Image, source.NamedImage:
		img, err := sb.r.refImage(ctx, ref, sb.svc.opts.Platform) // as BuildKit: the target's
		if err != nil {
			return "", err
		}
		return "image " + img.Descriptor.Digest.String(), nil
	}
	var key string
	err := sb.withSource(ctx, ref, forCopy, func(s *source.Source) error {
		it, err := s.Stat(path.Clean("/" + src))
		if err != nil {
			return fmt.Errorf("--mount source %q: %w", src, err)
		}
		key, err = it.Key(ctx, nil)
		return err
	})
	return key, err
}

// ociLayoutImage imports the image PATH[:TAG|@DIGEST] of a local OCI layout.
func (r *run) ociLayoutImage(ctx context.Context, ref string) (*image.Image, error) {
	p, sel := ref, ""
	if i := strings.LastIndex(ref, "@"); i > 0 {
		p, sel = ref[:i], ref[i:]
	} else if i := strings.LastIndex(ref, ":"); i > 0 && !strings.Contains(ref[i:], "/") {
		p, sel = ref[:i], ref[i+1:]
	}
	idx, err := layout.ImageIndexFromPath(p)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", p, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var pick string
	for _, d := range im.Manifests {
		switch {
		case strings.HasPrefix(sel, "@"):
			if d.Digest.String() == sel[1:] {
				pick = d.Digest.String()
			}
		case sel != "":
			if d.Annotations[ocispec.AnnotationRefName] == sel {
				pick = d.Digest.String()
			}
		case len(im.Manifests) == 1:
			pick = d.Digest.String()
		}
	}
	if pick == "" {
		return nil, fmt.Errorf("OCI layout %s: no image %q (give :TAG or @DIGEST when the layout holds several)", p, sel)
	}
	h, err := v1.NewHash(pick)
	if err != nil {
		return nil, err
	}
	vimg, err := idx.Image(h)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", p, err)
	}
	return image.Import(ctx, r.b.Store, vimg)
}
