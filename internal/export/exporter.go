package export

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// Output is one output of a build (`--output type=TYPE,...`).
type Output struct {
	Type  string   // a key of Exporters: docker, oci, tar, local, image or registry
	Dest  string   // the file (docker, oci, tar) or folder (local) written
	Names []string // the names the image gets; none: the build's tags
	Push  bool     // push the names to their registries (registry; image,push=true)
	// ByDigest pushes to the names' repositories by digest, with no tag
	// (push-by-digest=true): one shard of a release that `strata manifest
	// create` joins later. The store does not name the image either.
	ByDigest bool
}

// Exporter puts a built image, or a built image index (a build of several
// platforms), where one kind of output says.
type Exporter interface {
	// Export writes img to o's destination under names (o.Names, else the
	// build's tags).
	Export(ctx context.Context, img *image.Image, o Output, names []string) error
	// ExportIndex writes idx there (an error where the output type holds
	// one platform: see SupportsIndex).
	ExportIndex(ctx context.Context, idx *image.Index, o Output, names []string) error
}

// SupportsIndex reports whether an output of type typ can hold an image
// index: all but docker (its image archive holds one platform, as
// BuildKit says).
func SupportsIndex(typ string) bool { return typ != "docker" }

// Env is what the exporters work with.
type Env struct {
	Store    *store.Store
	Registry *registry.Client
	// Rootfs writes img's filesystem into the folder dir (type=local).
	Rootfs func(ctx context.Context, img *image.Image, dir string) error
	// Logf reports a push's progress.
	Logf func(format string, args ...any)
}

// Exporters returns the exporter of each output type. tar is an OCI
// layout archive, as oci.
func Exporters(env Env) map[string]Exporter {
	names := storeNames{env: env}
	return map[string]Exporter{
		"docker":   archiveFile{s: env.Store, write: Docker},
		"oci":      archiveFile{s: env.Store, write: OCI, writeIndex: OCIIndex},
		"tar":      archiveFile{s: env.Store, write: OCI, writeIndex: OCIIndex},
		"local":    rootfsDir{rootfs: env.Rootfs},
		"image":    names,
		"registry": names,
	}
}

// StoresImage reports whether a build with these outputs keeps its image in
// the store, named or not (so that its ID works in every command): with no
// output (the default), type=image or type=registry; not a build that only
// writes files or a folder (as docker buildx with those exporters).
func StoresImage(outs []Output) bool {
	if len(outs) == 0 {
		return true
	}
	return slices.ContainsFunc(outs, func(o Output) bool { return o.Type == "image" || o.Type == "registry" })
}

// archiveFile writes an image archive to o.Dest, through a temp file renamed
// into place, so a failed export leaves no half archive.
type archiveFile struct {
	s          *store.Store
	write      func(io.Writer, *store.Store, *image.Image, []string) error
	writeIndex func(io.Writer, *store.Store, *image.Index, []string) error // nil: the format holds one platform
}

func (e archiveFile) Export(_ context.Context, img *image.Image, o Output, names []string) error {
	return e.writeFile(o, func(w io.Writer) error { return e.write(w, e.s, img, names) })
}

func (e archiveFile) ExportIndex(_ context.Context, idx *image.Index, o Output, names []string) error {
	if e.writeIndex == nil {
		return fmt.Errorf("output %s: docker exporter does not currently support exporting manifest lists", o.Dest)
	}
	return e.writeFile(o, func(w io.Writer) error { return e.writeIndex(w, e.s, idx, names) })
}

func (e archiveFile) writeFile(o Output, write func(io.Writer) error) error {
	tmp := o.Dest + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("output %s: %w", o.Dest, err)
	}
	defer os.Remove(tmp)
	err = write(fh)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, o.Dest)
}

// rootfsDir writes the image's filesystem into the folder o.Dest.
type rootfsDir struct {
	rootfs func(ctx context.Context, img *image.Image, dir string) error
}

func (e rootfsDir) Export(ctx context.Context, img *image.Image, o Output, _ []string) error {
	return e.rootfs(ctx, img, o.Dest)
}

// ExportIndex writes each platform's filesystem into a folder of its own
// in o.Dest, named as BuildKit names them (linux_amd64, linux_arm_v7).
func (e rootfsDir) ExportIndex(ctx context.Context, idx *image.Index, o Output, _ []string) error {
	for _, img := range idx.Images {
		if err := e.rootfs(ctx, img, filepath.Join(o.Dest, platform.PathID(image.PlatformOf(img)))); err != nil {
			return err
		}
	}
	return nil
}

// storeNames names the image in the store and, with o.Push, pushes every
// name to its registry.
type storeNames struct{ env Env }

func (e storeNames) Export(ctx context.Context, img *image.Image, o Output, names []string) error {
	names, err := e.name(o, names, img.Descriptor)
	if err != nil || !o.Push {
		return err
	}
	for _, n := range names {
		if err := Push(ctx, e.env.Registry, e.env.Store, img, n, e.env.Logf); err != nil {
			return err
		}
	}
	return nil
}

// name tags d in the store as names and returns the references to push:
// names, or with o.ByDigest their repositories at d's digest (and no tag
// in the store).
func (e storeNames) name(o Output, names []string, d ocispec.Descriptor) ([]string, error) {
	if o.ByDigest {
		refs := make([]string, 0, len(names))
		for _, n := range names {
			t, err := registry.ParseTag(n)
			if err != nil {
				return nil, err
			}
			refs = append(refs, t.Context().Name()+"@"+d.Digest.String())
		}
		return refs, nil
	}
	for _, n := range names {
		if err := e.env.Store.Tag(n, d); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// ExportIndex names the index in the store and, with o.Push, pushes every
// name (the images by digest, then the index) to its registry.
func (e storeNames) ExportIndex(ctx context.Context, idx *image.Index, o Output, names []string) error {
	names, err := e.name(o, names, idx.Descriptor)
	if err != nil || !o.Push {
		return err
	}
	for _, n := range names {
		if err := PushIndex(ctx, e.env.Registry, e.env.Store, idx, n, e.env.Logf); err != nil {
			return err
		}
	}
	return nil
}

// PushIndex pushes the images of idx to ref's repository by digest, then
// idx as ref.
func PushIndex(ctx context.Context, r *registry.Client, s *store.Store, idx *image.Index, ref string, logf func(format string, args ...any)) error {
	if r == nil {
		return fmt.Errorf("push %s: no registry client", ref)
	}
	imgs := make([]v1.Image, 0, len(idx.Images))
	for _, img := range idx.Images {
		v, err := img.V1(s)
		if err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		imgs = append(imgs, v)
	}
	raw, err := s.ReadBlob(idx.Descriptor.Digest)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	if logf != nil {
		logf("pushing %s (an index of %d images)", ref, len(imgs))
	}
	if err := r.PushIndex(ctx, ref, imgs, raw, types.MediaType(idx.Descriptor.MediaType)); err != nil {
		return err
	}
	if logf != nil {
		logf("pushed %s@%s", ref, idx.Descriptor.Digest)
	}
	return nil
}

// Push pushes img to ref, reporting with logf ("pushing REF", then the
// bytes sent, at most once a second, and a last line).
func Push(ctx context.Context, r *registry.Client, s *store.Store, img *image.Image, ref string, logf func(format string, args ...any)) error {
	v, err := img.V1(s)
	if err != nil {
		return err
	}
	logf("pushing %s", ref)
	start := time.Now()
	var last time.Time
	var lastDone, lastTotal int64
	report := func(done, total int64) {
		logf("  pushed %s of %s (%s)", human.Size(done), human.Size(total), human.Rate(done, time.Since(start)))
	}
	err = r.PushProgress(ctx, ref, v, func(done, total int64) {
		lastDone, lastTotal = done, total
		if time.Since(last) >= time.Second {
			last = time.Now()
			report(done, total)
		}
	})
	if err == nil && lastTotal > 0 {
		report(lastDone, lastTotal)
	}
	return err
}

// Known reports whether typ is an output type Exporters has.
func Known(typ string) bool {
	_, ok := Exporters(Env{})[typ]
	return ok
}
