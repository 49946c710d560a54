// Package inspect looks into images and Dockerfiles for the inspection
// commands: the docker-inspect view of a stored image, its history mapped
// onto its layers, what files each layer adds, changes and deletes (what
// users install dive for), Go templates with docker's functions, and the
// stage graph of a Dockerfile rendered as Graphviz dot or Mermaid.
package inspect

import (
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// Info is one element of `strata inspect`: docker inspect's fields for an
// image, plus its manifest.
type Info struct {
	// Id is the image ID: the digest of the config.
	Id          string //nolint:revive // docker's spelling
	RepoTags    []string
	RepoDigests []string
	Parent      string
	Comment     string
	Created     string
	Author      string
	// Config is the container configuration (Env, Cmd, Entrypoint, ...),
	// the config's "config" object.
	Config       *v1.Config
	Architecture string
	Variant      string `json:",omitempty"`
	Os           string
	OsVersion    string `json:",omitempty"`
	// Size is the sum of the layers' content sizes (what `strata history`
	// shows per layer).
	Size   int64
	RootFS RootFS
	// Descriptor is the manifest's descriptor in the store.
	Descriptor ocispec.Descriptor
	Manifest   v1.Manifest
}

// RootFS lists the layers' diffIDs, as docker inspect does.
type RootFS struct {
	Type   string
	Layers []string
}

// NewInfo describes img. names are the store's names (canonical references)
// that point at img's manifest; size is the image's content size.
func NewInfo(img *image.Image, names []string, size int64) Info {
	cfg := img.Config.Config
	info := Info{
		Id:           img.Manifest.Config.Digest.String(),
		RepoTags:     []string{},
		RepoDigests:  []string{},
		Author:       img.Config.Author,
		Config:       &cfg,
		Architecture: img.Config.Architecture,
		Variant:      img.Config.Variant,
		Os:           img.Config.OS,
		OsVersion:    img.Config.OSVersion,
		Size:         size,
		RootFS:       RootFS{Type: img.Config.RootFS.Type, Layers: []string{}},
		Descriptor:   img.Descriptor,
		Manifest:     img.Manifest,
	}
	if !img.Config.Created.IsZero() {
		info.Created = img.Config.Created.UTC().Format(time.RFC3339Nano)
	}
	if h := img.Config.History; len(h) > 0 {
		// docker shows the comment of the last step (buildkit.dockerfile.v0,
		// or an import's message).
		info.Comment = h[len(h)-1].Comment
	}
	for _, d := range img.Config.RootFS.DiffIDs {
		info.RootFS.Layers = append(info.RootFS.Layers, d.String())
	}
	seen := map[string]bool{}
	for _, n := range names {
		f := store.FamiliarName(n)
		info.RepoTags = append(info.RepoTags, f)
		repo := repository(f)
		if d := repo + "@" + img.Descriptor.Digest.String(); !seen[d] {
			seen[d] = true
			info.RepoDigests = append(info.RepoDigests, d)
		}
	}
	return info
}

// repository strips the tag (or digest) from a familiar name.
func repository(n string) string {
	if i := strings.IndexByte(n, '@'); i >= 0 {
		n = n[:i]
	}
	for i := len(n) - 1; i >= 0; i-- {
		switch n[i] {
		case ':':
			return n[:i]
		case '/':
			return n
		}
	}
	return n
}

// NamesOf returns the names in imgs that point at the manifest of img.
func NamesOf(imgs []store.Image, img *image.Image) []string {
	var out []string
	for _, im := range imgs {
		if im.Descriptor.Digest == img.Descriptor.Digest {
			out = append(out, im.Name)
		}
	}
	return out
}
