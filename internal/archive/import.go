package archive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// ImportOptions says how Import makes its image.
type ImportOptions struct {
	// Platform is the image's OS, architecture and variant.
	Platform v1.Platform
	// Epoch, when set, is the image's and its history's time (and, for a
	// directory, clamps the files' times), as SOURCE_DATE_EPOCH; else the
	// current time, to the second.
	Epoch *time.Time
	// Message is the history entry's comment; default "Imported from BASE".
	Message string
	// Change edits the config before it is written (docker import --change);
	// nil for none.
	Change func(*v1.ConfigFile) error
	// Name tags the image; "" stores it untagged.
	Name string
}

// Import makes a one-layer image from src, a directory (its tree becomes the
// layer) or a tarball of a root filesystem (plain or compressed, taken as
// it is), as `docker import` does, and stores it in s. The layer is gzip
// compressed. The history entry says "strata import".
func Import(ctx context.Context, s *store.Store, src string, opts ImportOptions) (*image.Image, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	blob, err := importLayer(ctx, s, src, fi.IsDir(), opts.Epoch)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	if opts.Epoch != nil {
		now = *opts.Epoch
	}
	msg := opts.Message
	if msg == "" {
		msg = "Imported from " + filepath.Base(src)
	}
	cfg := v1.ConfigFile{
		OS: opts.Platform.OS, Architecture: opts.Platform.Architecture, Variant: opts.Platform.Variant,
		Created: v1.Time{Time: now},
		History: []v1.History{{Created: v1.Time{Time: now}, CreatedBy: "strata import", Comment: msg}},
	}
	if opts.Change != nil {
		if err := opts.Change(&cfg); err != nil {
			return nil, err
		}
	}
	img, err := image.Write(s, cfg, []image.Layer{{Digest: blob.Digest, DiffID: blob.DiffID, Size: blob.Size, MediaType: blob.MediaType}})
	if err != nil {
		return nil, err
	}
	if opts.Name != "" {
		err = s.Tag(opts.Name, img.Descriptor)
	} else {
		err = s.AddImage(img.Descriptor)
	}
	if err != nil {
		return nil, err
	}
	return img, nil
}

// importLayer writes src as one gzip layer blob into s.
func importLayer(ctx context.Context, s *store.Store, src string, isDir bool, epoch *time.Time) (layer.Blob, error) {
	w, err := s.NewBlobWriter()
	if err != nil {
		return layer.Blob{}, err
	}
	defer w.Close()
	var blob layer.Blob
	if isDir {
		blob, _, err = layer.Commit(ctx, src, w, layer.Gzip, layer.DiffOptions{Epoch: epoch})
	} else {
		blob, err = compressFile(ctx, src, w)
	}
	if err != nil {
		return layer.Blob{}, fmt.Errorf("import %s: %w", src, err)
	}
	if _, _, err := w.Commit(blob.Digest); err != nil {
		return layer.Blob{}, err
	}
	return blob, nil
}

// compressFile gzips the tarball at src (decompressing it first when it
// is compressed) into w.
func compressFile(ctx context.Context, src string, w *store.BlobWriter) (layer.Blob, error) {
	f, err := os.Open(src)
	if err != nil {
		return layer.Blob{}, err
	}
	defer f.Close()
	r, err := layer.Decompress(f)
	if err != nil {
		return layer.Blob{}, err
	}
	defer r.Close()
	return layer.Compress(ctx, r, w, layer.Gzip)
}
