package export

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// Output is one output of a build (`--output type=TYPE,...`).
type Output struct {
	Type  string   // a key of Exporters: docker, oci, tar, local, image or registry
	Dest  string   // the file (docker, oci, tar) or folder (local) written
	Names []string // the names the image gets; none: the build's tags
	Push  bool     // push the names to their registries (registry; image,push=true)
}

// Exporter puts a built image where one kind of output says.
type Exporter interface {
	// Export writes img to o's destination under names (o.Names, else the
	// build's tags).
	Export(ctx context.Context, img *image.Image, o Output, names []string) error
}

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
		"oci":      archiveFile{s: env.Store, write: OCI},
		"tar":      archiveFile{s: env.Store, write: OCI},
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
	s     *store.Store
	write func(io.Writer, *store.Store, *image.Image, []string) error
}

func (e archiveFile) Export(_ context.Context, img *image.Image, o Output, names []string) error {
	tmp := o.Dest + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("output %s: %w", o.Dest, err)
	}
	defer os.Remove(tmp)
	err = e.write(fh, e.s, img, names)
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

// storeNames names the image in the store and, with o.Push, pushes every
// name to its registry.
type storeNames struct{ env Env }

func (e storeNames) Export(ctx context.Context, img *image.Image, o Output, names []string) error {
	for _, n := range names {
		if err := e.env.Store.Tag(n, img.Descriptor); err != nil {
			return err
		}
	}
	if !o.Push {
		return nil
	}
	for _, n := range names {
		if err := Push(ctx, e.env.Registry, e.env.Store, img, n, e.env.Logf); err != nil {
			return err
		}
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
