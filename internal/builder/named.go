package builder

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
)

// namedContext is a resolved --build-context: an image, or a directory.
type namedContext struct {
	img *image.Image
	dir string
}

// resolveNamed resolves the --build-context called name.
func (r *run) resolveNamed(ctx context.Context, name string) (namedContext, error) {
	v := r.opts.Contexts[strings.ToLower(name)]
	switch {
	case strings.HasPrefix(v, "docker-image://"):
		img, err := r.b.ResolveImage(ctx, strings.TrimPrefix(v, "docker-image://"), r.opts.Pull, r.opts.Platform, r.opts.Progress)
		if err != nil {
			return namedContext{}, fmt.Errorf("--build-context %s: %w", name, err)
		}
		return namedContext{img: img}, nil
	case strings.HasPrefix(v, "oci-layout://"):
		img, err := r.ociLayoutImage(ctx, strings.TrimPrefix(v, "oci-layout://"))
		if err != nil {
			return namedContext{}, fmt.Errorf("--build-context %s: %w", name, err)
		}
		return namedContext{img: img}, nil
	case strings.Contains(v, "://"):
		return namedContext{}, fmt.Errorf("--build-context %s=%s: only directories, docker-image:// and oci-layout:// are supported", name, v)
	}
	return namedContext{dir: v}, nil
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
