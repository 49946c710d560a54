package archive

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestLoadIndexFanout: a hostile OCI archive can list one image index many
// times at each level of a nesting, which a plain walk visits (and reads)
// N^depth times; an index is walked once, and the walk is bounded. The
// platforms not chosen are named once each in the error.
func TestLoadIndexFanout(t *testing.T) {
	// leaf returns a manifest descriptor for os/amd64 (the manifest is
	// never read: it is for another platform).
	leaf := func(os string) ocispec.Descriptor {
		b := []byte(`{"schemaVersion":2}`)
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)),
			Platform: &ocispec.Platform{OS: os, Architecture: "amd64"}}
	}
	t.Run("shared-child", func(t *testing.T) {
		// 7 levels, each index lists the next one 8 times: 8^7 (2 million)
		// paths to a leaf for another platform, in a 20 KB archive.
		a := newTestArchive(t)
		child := leaf("plan9")
		for range 7 {
			var kids []ocispec.Descriptor
			for range 8 {
				kids = append(kids, child)
			}
			child = a.blob(ocispec.MediaTypeImageIndex, index(kids...))
		}
		a.ociLayout(child)
		path := a.close()
		start := time.Now()
		_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
		t.Logf("%v", time.Since(start))
		if err == nil {
			t.Fatal("loaded an archive without a linux/amd64 image")
		}
		msg := err.Error()
		if len(msg) > 1000 {
			msg = msg[:1000] + "..."
		}
		if !strings.Contains(msg, path) || !strings.Contains(msg, "no image for linux/amd64") || strings.Count(msg, "plan9/amd64") != 1 {
			t.Errorf("error %q; want one naming the archive, linux/amd64 and plan9/amd64 once", msg)
		}
	})
	t.Run("shared-index", func(t *testing.T) {
		// Two names for one multi-platform index: the image chosen from
		// it (once) gets both.
		a := newTestArchive(t)
		host := a.ociImage("host\n")
		host.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
		idx := a.blob(ocispec.MediaTypeImageIndex, index(leaf("plan9"), host))
		var entries []ocispec.Descriptor
		for _, n := range []string{"a:1", "b:1"} {
			e := idx
			e.Annotations = map[string]string{ocispec.AnnotationRefName: n}
			entries = append(entries, e)
		}
		a.ociLayout(entries...)
		loaded, err := Load(context.Background(), openTestStore(t), a.close(), linuxAmd64)
		if err != nil {
			t.Fatal(err)
		}
		if len(loaded) != 1 || !slices.Equal(loaded[0].Tags, []string{"a:1", "b:1"}) || loaded[0].Image.Descriptor.Digest != host.Digest {
			t.Errorf("loaded %+v; want the linux/amd64 image %s as a:1 and b:1", loaded, host.Digest)
		}
	})
	t.Run("too-many", func(t *testing.T) {
		// Beyond maxDescriptors manifests and indexes, the walk stops.
		a := newTestArchive(t)
		var kids []ocispec.Descriptor
		for range maxDescriptors {
			kids = append(kids, leaf("plan9"))
		}
		a.ociLayout(a.blob(ocispec.MediaTypeImageIndex, index(kids...)))
		path := a.close()
		_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("more than %d", maxDescriptors)) {
			t.Errorf("error %v; want one naming the archive and the limit", err)
		}
	})
	t.Run("many-platforms", func(t *testing.T) {
		// The error names the first platforms not chosen, each once.
		a := newTestArchive(t)
		var kids []ocispec.Descriptor
		for i := range 3 * maxOthers {
			kids = append(kids, leaf(fmt.Sprintf("os%d", i%(2*maxOthers))))
		}
		a.ociLayout(a.blob(ocispec.MediaTypeImageIndex, index(kids...)))
		path := a.close()
		_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
		if err == nil {
			t.Fatal("loaded an archive without a linux/amd64 image")
		}
		msg := err.Error()
		if strings.Count(msg, "os0/amd64") != 1 || len(regexp.MustCompile(`os\d+/amd64`).FindAllString(msg, -1)) != maxOthers || !strings.Contains(msg, fmt.Sprintf("and %d more", maxOthers)) {
			t.Errorf("error %q; want %d platforms, each once, and %d more", msg, maxOthers, maxOthers)
		}
	})
}
