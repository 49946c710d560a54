package export

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/image"
)

// Metadata is the build result in buildx's --metadata-file format: the
// manifest digest, the config digest (the image ID), the manifest's
// descriptor and, when it has any, the image's names joined by commas.
func Metadata(img *image.Image, names []string) map[string]any {
	md := map[string]any{
		"containerimage.digest":        img.Descriptor.Digest.String(),
		"containerimage.config.digest": img.Manifest.Config.Digest.String(),
		"containerimage.descriptor":    img.Descriptor,
	}
	if len(names) > 0 {
		md["image.name"] = strings.Join(names, ",")
	}
	return md
}

// IndexMetadata is Metadata of an image index (a build of several
// platforms), as buildx writes it: the index's digest and descriptor, no
// config digest.
func IndexMetadata(idx *image.Index, names []string) map[string]any {
	md := map[string]any{
		"containerimage.digest":     idx.Descriptor.Digest.String(),
		"containerimage.descriptor": idx.Descriptor,
	}
	if len(names) > 0 {
		md["image.name"] = strings.Join(names, ",")
	}
	return md
}

// WriteMetadataFile writes Metadata(img, names) to path as indented JSON.
func WriteMetadataFile(path string, img *image.Image, names []string) error {
	return writeMetadata(path, Metadata(img, names))
}

// WriteIndexMetadataFile writes IndexMetadata(idx, names) to path as
// indented JSON.
func WriteIndexMetadataFile(path string, idx *image.Index, names []string) error {
	return writeMetadata(path, IndexMetadata(idx, names))
}

func writeMetadata(path string, md map[string]any) error {
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return fmt.Errorf("write metadata file: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write metadata file: %w", err)
	}
	return nil
}

// WriteIDFile writes an image's ID (its config digest; an image index's
// digest), no newline, to path, as docker build --iidfile.
func WriteIDFile(path string, id digest.Digest) error {
	if err := os.WriteFile(path, []byte(id.String()), 0o644); err != nil {
		return fmt.Errorf("write iidfile: %w", err)
	}
	return nil
}
