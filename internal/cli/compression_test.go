package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// TestBuildCompressionLevel: --compression-level reaches the layers (a
// higher gzip level gives a smaller layer of compressible files), and a
// level the compression does not have is a usage error.
func TestBuildCompressionLevel(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"--compression-level", "10"},
		{"--compression-level", "-1"},
		{"--compression", "zstd", "--compression-level", "23"},
		{"--compression", "uncompressed", "--compression-level", "3"},
	} {
		r := strataIn(t, root, append(append([]string{"build"}, args...), t.TempDir())...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, "--compression-level") {
			t.Errorf("build %q: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("strata build needs root")
	}
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY . /\n"), 0o644)
	var b strings.Builder
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "line %d of a compressible file, %x\n", i, i*i)
	}
	os.WriteFile(filepath.Join(ctxDir, "data"), []byte(b.String()), 0o644)
	size := map[string]int64{}
	for _, level := range []string{"1", "9"} {
		mustStrata(t, root, "build", "-q", "--compression-level", level, "-t", "level:"+level, ctxDir)
		s, err := store.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		desc, ok, err := s.Lookup("level:" + level)
		if err != nil || !ok {
			t.Fatalf("level:%s not stored: %v", level, err)
		}
		img, err := image.Load(s, desc.Descriptor.Digest)
		if err != nil {
			t.Fatal(err)
		}
		size[level] = img.Layers[len(img.Layers)-1].Size
	}
	if size["9"] >= size["1"] {
		t.Errorf("layer sizes by level: %v: the level is not applied", size)
	}
}
