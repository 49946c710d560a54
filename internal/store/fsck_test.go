package store_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// fsckFixture is a store holding one tagged image of two layers (unpacked
// when running as root) and a cache record for each layer.
type fsckFixture struct {
	s      *store.Store
	img    *image.Image
	layers []image.Layer
	ix     *cache.Index
	keys   []cache.Key
}

type fentry struct {
	name, body, link string
	typ              byte
}

// layerBlob makes a gzip layer of entries and returns blob, diffID.
func layerBlob(t *testing.T, entries []fentry) ([]byte, digest.Digest) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		switch e.typ {
		case 0, tar.TypeReg:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	return gz.Bytes(), digest.FromBytes(tb.Bytes())
}

func newFixture(t *testing.T) *fsckFixture {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	fx := &fsckFixture{s: s}
	for _, entries := range [][]fentry{
		{{name: "etc/", typ: tar.TypeDir}, {name: "etc/passwd", body: "root:x:0:0::/root:/bin/sh\n"}, {name: "bin/", typ: tar.TypeDir}, {name: "bin/sh", body: strings.Repeat("#!", 500)}, {name: "bin/ash", typ: tar.TypeSymlink, link: "sh"}},
		{{name: "etc/", typ: tar.TypeDir}, {name: "etc/.wh.passwd"}, {name: "etc/group", body: "root:x:0:\n"}, {name: "opt/", typ: tar.TypeDir}, {name: "opt/.wh..wh..opq"}, {name: "opt/app", body: "app"}, {name: "opt/app2", typ: tar.TypeLink, link: "opt/app"}},
	} {
		blob, diffID := layerBlob(t, entries)
		d, size, err := s.WriteBlob(ctx, bytes.NewReader(blob), "")
		if err != nil {
			t.Fatal(err)
		}
		l := image.Layer{Digest: d, DiffID: diffID, Size: size, MediaType: ocispec.MediaTypeImageLayerGzip}
		fx.layers = append(fx.layers, l)
		if os.Geteuid() == 0 {
			if _, err := s.EnsureLayer(ctx, diffID, d, func(ctx context.Context, dir string, blob *os.File) (digest.Digest, error) {
				return layer.Apply(ctx, dir, blob, layer.ApplyOptions{})
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	img, err := image.Write(s, v1.ConfigFile{OS: "linux", Architecture: "amd64"}, fx.layers)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("fixture:1", img.Descriptor); err != nil {
		t.Fatal(err)
	}
	fx.img = img
	if fx.ix, err = cache.Open(s.Path("cache")); err != nil {
		t.Fatal(err)
	}
	for i, l := range fx.layers {
		k := cache.NewKey("", cache.Input{Name: "step", Value: fmt.Sprint(i)})
		rec := &cache.Record{Layer: &cache.Layer{Blob: l}, Created: time.Now()}
		if err := fx.ix.Put(k, rec); err != nil {
			t.Fatal(err)
		}
		fx.keys = append(fx.keys, k)
	}
	// a record of a step that changed nothing
	if err := fx.ix.Put(cache.NewKey("", cache.Input{Name: "empty"}), &cache.Record{Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return fx
}

func fsckOpts(repair bool) store.FsckOptions {
	return store.FsckOptions{Repair: repair, Decompress: layer.Decompress, DiffDir: diffDir, MemberStates: layer.MemberStates, LayerSample: -1}
}

func diffDir(ctx context.Context, dir string, epoch *time.Time) (digest.Digest, error) {
	return layer.DiffID(ctx, dir, layer.DiffOptions{Epoch: epoch})
}

func runFsck(t *testing.T, s *store.Store, opts store.FsckOptions) *store.FsckReport {
	t.Helper()
	rep, err := s.Fsck(context.Background(), opts)
	if err != nil {
		t.Fatalf("Fsck: %v", err)
	}
	for _, p := range rep.Problems {
		t.Logf("fsck (repair=%v): %s", opts.Repair, p)
	}
	return rep
}

// kinds lists "kind subject-prefix" of the problems, for comparisons.
func problemKinds(rep *store.FsckReport) []string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, p.Kind)
	}
	slices.Sort(out)
	return out
}

func requireClean(t *testing.T, s *store.Store) {
	t.Helper()
	rep := runFsck(t, s, fsckOpts(false))
	if len(rep.Problems) != 0 {
		t.Fatalf("fsck of a sound store found %d problems: %v", len(rep.Problems), rep.Problems)
	}
}

func TestFsckClean(t *testing.T) {
	fx := newFixture(t)
	rep := runFsck(t, fx.s, fsckOpts(false))
	if len(rep.Problems) != 0 || rep.Remaining() != 0 {
		t.Fatalf("problems in a sound store: %v", rep.Problems)
	}
	// 2 layers + config + manifest
	if rep.Blobs != 4 || rep.Images != 1 || rep.CacheRecords != 3 {
		t.Errorf("counts: blobs %d images %d records %d, want 4 1 3", rep.Blobs, rep.Images, rep.CacheRecords)
	}
	if os.Geteuid() == 0 && (rep.Layers != 2 || rep.LayersVerified != 2) {
		t.Errorf("layers %d verified %d, want 2 2", rep.Layers, rep.LayersVerified)
	}
	// Without Decompress no layer is re-read.
	rep = runFsck(t, fx.s, store.FsckOptions{})
	if len(rep.Problems) != 0 || rep.LayersVerified != 0 {
		t.Errorf("without Decompress: %v, %d re-read", rep.Problems, rep.LayersVerified)
	}
	// A repair of a sound store changes nothing.
	before := listTree(t, fx.s.Root())
	rep = runFsck(t, fx.s, fsckOpts(true))
	if len(rep.Problems) != 0 {
		t.Errorf("repair of a sound store: %v", rep.Problems)
	}
	if after := listTree(t, fx.s.Root()); !slices.Equal(before, after) {
		t.Errorf("repair of a sound store changed it:\nbefore %v\nafter  %v", before, after)
	}
}

func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !strings.HasSuffix(p, ".lock") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size()))
		}
		return nil
	})
	return out
}

func TestFsckCorruptLayerBlob(t *testing.T) {
	fx := newFixture(t)
	l := fx.layers[1]
	p := fx.s.BlobPath(l.Digest)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rep := runFsck(t, fx.s, fsckOpts(false))
	// the blob, the image that needs it, the cache record of the layer
	if got, want := problemKinds(rep), []string{"blob", "cache", "image"}; !slices.Equal(got, want) {
		t.Fatalf("problems %v, want %v", got, want)
	}
	if rep.Remaining() != 3 {
		t.Errorf("Remaining = %d without repair", rep.Remaining())
	}
	if !fx.s.HasBlob(l.Digest) {
		t.Fatal("fsck without --repair deleted the blob")
	}

	rep = runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 0 || len(rep.Problems) != 3 {
		t.Fatalf("repair left %d of %d problems", rep.Remaining(), len(rep.Problems))
	}
	for _, pr := range rep.Problems {
		if pr.Kind == "image" && (pr.Subject != "docker.io/library/fixture:1" || pr.Action != "untagged") {
			t.Errorf("image problem %+v, want fixture:1 untagged", pr)
		}
	}
	if fx.s.HasBlob(l.Digest) {
		t.Error("corrupt blob still there after repair")
	}
	if _, ok, _ := fx.s.Lookup("fixture:1"); ok {
		t.Error("the image needing the corrupt blob is still tagged")
	}
	if _, ok := fx.ix.Get(fx.keys[1]); ok {
		t.Error("the cache record of the corrupt layer is still there")
	}
	if _, ok := fx.ix.Get(fx.keys[0]); !ok {
		t.Error("repair deleted the sound cache record of the other layer")
	}
	requireClean(t, fx.s)
}

func TestFsckMissingBlobs(t *testing.T) {
	for _, which := range []string{"manifest", "config", "layer"} {
		t.Run(which, func(t *testing.T) {
			fx := newFixture(t)
			d := map[string]digest.Digest{"manifest": fx.img.Descriptor.Digest, "config": digest.Digest(fx.img.Manifest.Config.Digest.String()), "layer": fx.layers[0].Digest}[which]
			if err := os.Remove(fx.s.BlobPath(d)); err != nil {
				t.Fatal(err)
			}
			rep := runFsck(t, fx.s, fsckOpts(false))
			want := []string{"image"}
			if which == "layer" {
				want = []string{"cache", "image"}
			}
			if got := problemKinds(rep); !slices.Equal(got, want) {
				t.Fatalf("problems %v, want %v", got, want)
			}
			if !strings.Contains(rep.Problems[len(rep.Problems)-1].Detail+rep.Problems[0].Detail, "missing") {
				t.Errorf("problem does not say what is missing: %v", rep.Problems)
			}
			rep = runFsck(t, fx.s, fsckOpts(true))
			if rep.Remaining() != 0 {
				t.Fatalf("repair left problems: %v", rep.Problems)
			}
			imgs, _ := fx.s.Images()
			if len(imgs) != 0 {
				t.Errorf("images after repair: %v", imgs)
			}
			requireClean(t, fx.s)
		})
	}
}

func TestFsckBadManifestAndConfig(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	// A tagged manifest that is not JSON, and one whose config has fewer
	// diffIDs than layers: both are stored under their true digests.
	bad, _, err := fx.s.WriteBlob(ctx, strings.NewReader("not json"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.s.Tag("garbage:1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: bad, Size: 8}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := fx.s.PutBlob([]byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":41},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, cfg, fx.layers[0].MediaType, fx.layers[0].Digest, fx.layers[0].Size)
	md, _ := fx.s.PutBlob([]byte(m))
	if err := fx.s.Tag("mismatch:1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m))}); err != nil {
		t.Fatal(err)
	}
	rep := runFsck(t, fx.s, fsckOpts(false))
	var subjects []string
	for _, p := range rep.Problems {
		subjects = append(subjects, p.Kind+" "+p.Subject)
	}
	slices.Sort(subjects)
	want := []string{"image docker.io/library/garbage:1", "image docker.io/library/mismatch:1"}
	if !slices.Equal(subjects, want) {
		t.Fatalf("problems %v, want %v", subjects, want)
	}
	runFsck(t, fx.s, fsckOpts(true))
	imgs, _ := fx.s.Images()
	if len(imgs) != 1 || imgs[0].Name != "docker.io/library/fixture:1" {
		t.Errorf("after repair the images are %v, want only fixture:1", imgs)
	}
	requireClean(t, fx.s)
}

// A layer whose blob does not have the diffID the image config names: the
// image cannot be unpacked.
func TestFsckDiffIDMismatch(t *testing.T) {
	fx := newFixture(t)
	layers := slices.Clone(fx.layers)
	layers[0].DiffID = layers[1].DiffID // a lie
	img, err := image.Write(fx.s, v1.ConfigFile{OS: "linux", Architecture: "amd64", Author: "liar"}, layers)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.s.Tag("liar:1", img.Descriptor); err != nil {
		t.Fatal(err)
	}
	rep := runFsck(t, fx.s, fsckOpts(false))
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != "image" || rep.Problems[0].Subject != "docker.io/library/liar:1" || !strings.Contains(rep.Problems[0].Detail, "has diffID") {
		t.Fatalf("problems %v, want one for liar:1 naming the diffID", rep.Problems)
	}
	rep = runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 0 {
		t.Fatalf("left: %v", rep.Problems)
	}
	if _, ok, _ := fx.s.Lookup("liar:1"); ok {
		t.Error("liar:1 still tagged")
	}
	if _, ok, _ := fx.s.Lookup("fixture:1"); !ok {
		t.Error("fixture:1 was untagged")
	}
	requireClean(t, fx.s)
}

func TestFsckCacheRecords(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	// a record whose blob never made it, one that is not JSON, and a temp
	// file of a record write that was cut short
	gone := cache.NewKey("", cache.Input{Name: "gone"})
	fx.ix.Put(gone, &cache.Record{Layer: &cache.Layer{Blob: layer.Blob{Digest: digest.FromString("never stored"), DiffID: digest.FromString("x")}}})
	garbage := cache.NewKey("", cache.Input{Name: "garbage"})
	gp := filepath.Join(fx.s.Path("cache", "keys"), string(garbage)[:2], string(garbage))
	os.MkdirAll(filepath.Dir(gp), 0o700)
	os.WriteFile(gp, []byte("{\"layer\":"), 0o600)
	tmp := filepath.Join(fx.s.Path("cache", "keys"), string(garbage)[:2], ".tmp-123")
	os.WriteFile(tmp, []byte("{"), 0o600)
	// a record whose blob is there but whose unpacked layer is not: sound
	// (a build unpacks it when a step needs its files)
	blob, diffID := layerBlob(t, []fentry{{name: "f", body: "f"}})
	d, _, err := fx.s.WriteBlob(ctx, bytes.NewReader(blob), "")
	if err != nil {
		t.Fatal(err)
	}
	noDir := cache.NewKey("", cache.Input{Name: "nodir"})
	fx.ix.Put(noDir, &cache.Record{Layer: &cache.Layer{Blob: layer.Blob{Digest: d, DiffID: diffID}}})

	rep := runFsck(t, fx.s, fsckOpts(false))
	got := map[string]string{}
	for _, p := range rep.Problems {
		got[p.Kind+" "+filepath.Base(p.Subject)] = p.Detail
	}
	want := []string{"cache " + string(gone), "cache " + string(garbage), "temp .tmp-123"}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			t.Errorf("no problem %q in %v", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v, want %v", got, want)
	}
	rep = runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 0 {
		t.Fatalf("left: %v", rep.Problems)
	}
	for _, k := range []cache.Key{gone, garbage} {
		if _, ok := fx.ix.Get(k); ok {
			t.Errorf("record %s kept", k)
		}
	}
	for _, k := range append(fx.keys, noDir) {
		if _, ok := fx.ix.Get(k); !ok {
			t.Errorf("sound record %s deleted", k)
		}
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temp record file kept: %v", err)
	}
	requireClean(t, fx.s)
}

func TestFsckLayerDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers needs root")
	}
	ctx := context.Background()
	fx := newFixture(t)
	// stray entries in layers/
	os.WriteFile(fx.s.Path("layers", "README"), []byte("x"), 0o644)
	os.Mkdir(fx.s.Path("layers", strings.Repeat("z", 64)), 0o755)
	// an incomplete unpacked layer: a file is gone, another was cut short
	ldir := fx.s.LayerDir(fx.layers[0].DiffID)
	if err := os.Remove(filepath.Join(ldir, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(ldir, "bin", "sh"), 10); err != nil {
		t.Fatal(err)
	}
	// a lost whiteout and opaque marker in the other
	l2 := fx.s.LayerDir(fx.layers[1].DiffID)
	os.Remove(filepath.Join(l2, "etc", "passwd"))
	unix.Removexattr(filepath.Join(l2, "opt"), "trusted.overlay.opaque")

	rep := runFsck(t, fx.s, fsckOpts(false))
	var layerProblems []string
	for _, p := range rep.Problems {
		if p.Kind == "layer" {
			layerProblems = append(layerProblems, filepath.Base(p.Subject)+": "+p.Detail)
		}
	}
	if len(layerProblems) != 4 {
		t.Fatalf("layer problems %q, want 4 (2 strays, 2 incomplete)", layerProblems)
	}
	joined := strings.Join(layerProblems, "\n")
	for _, w := range []string{"etc/passwd (missing)", "bin/sh (10 bytes", "etc/passwd (missing)", "opt (not marked opaque)"} {
		if !strings.Contains(joined, w) {
			t.Errorf("layer problems do not mention %q:\n%s", w, joined)
		}
	}
	rep = runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 0 {
		t.Fatalf("left: %v", rep.Problems)
	}
	if fx.s.HasLayer(fx.layers[0].DiffID) {
		t.Error("incomplete layer dir kept")
	}
	// The image and the cache records stay: the layers are unpacked again
	// from their blobs on use.
	if _, ok, _ := fx.s.Lookup("fixture:1"); !ok {
		t.Error("the image was untagged for a removable layer dir")
	}
	for _, k := range fx.keys {
		if _, ok := fx.ix.Get(k); !ok {
			t.Errorf("the cache record %s of a removed layer dir was deleted", k)
		}
	}
	for _, l := range fx.layers {
		if _, err := fx.s.EnsureLayer(ctx, l.DiffID, l.Digest, func(ctx context.Context, dir string, blob *os.File) (digest.Digest, error) {
			return layer.Apply(ctx, dir, blob, layer.ApplyOptions{})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(fx.s.LayerDir(fx.layers[0].DiffID), "etc", "passwd")); err != nil {
		t.Errorf("layer not unpacked again: %v", err)
	}
	requireClean(t, fx.s)
}

// lazyLayer adopts a directory of files as an unpacked layer recorded by a
// cache record without a blob (a layer of a stage a build did not export),
// as a build does, and returns the record's key and the layer dir.
func lazyLayer(t *testing.T, fx *fsckFixture, name string, epoch *int64) (cache.Key, string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "upper")
	if err := os.MkdirAll(filepath.Join(tmp, "cache", name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "cache", name, "obj"), []byte(strings.Repeat(name, 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	var ep *time.Time
	if epoch != nil {
		e := time.Unix(*epoch, 0)
		ep = &e
	}
	id, err := diffDir(context.Background(), tmp, ep)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.s.AdoptLayerDir(id, tmp); err != nil {
		t.Fatal(err)
	}
	k := cache.NewKey("", cache.Input{Name: "lazy", Value: name})
	if err := fx.ix.Put(k, &cache.Record{Layer: &cache.Layer{Blob: layer.Blob{DiffID: id}, Epoch: epoch}, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return k, fx.s.LayerDir(id)
}

// Layers recorded without a blob: their directory is the only copy, so
// fsck --repair must keep it (it is in no image), check it against the
// recorded diffID (with the recorded epoch), and drop the records of one
// that changed or went.
func TestFsckLazyLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("layer dirs with root-owned files need root")
	}
	fx := newFixture(t)
	epoch := int64(1000)
	kPlain, dPlain := lazyLayer(t, fx, "plain", nil)
	kEpoch, _ := lazyLayer(t, fx, "epoch", &epoch)
	kGone, dGone := lazyLayer(t, fx, "gone", nil)
	rep := runFsck(t, fx.s, fsckOpts(true))
	if len(rep.Problems) != 0 {
		t.Fatalf("problems in a sound store with layers without blob: %v", rep.Problems)
	}
	if rep.LayersVerified != 5 {
		t.Errorf("verified %d layers, want 5 (2 with blobs, 3 without)", rep.LayersVerified)
	}
	for _, k := range []cache.Key{kPlain, kEpoch, kGone} {
		if _, ok := fx.ix.Get(k); !ok {
			t.Fatalf("repair of a sound store deleted the record %s", k)
		}
	}

	// one layer changed behind strata's back, one removed
	if err := os.WriteFile(filepath.Join(dPlain, "cache", "plain", "obj"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dGone); err != nil {
		t.Fatal(err)
	}
	rep = runFsck(t, fx.s, fsckOpts(false))
	if got, want := problemKinds(rep), []string{"cache", "cache", "layer"}; !slices.Equal(got, want) {
		t.Fatalf("problems %v, want %v", got, want)
	}
	joined := fmt.Sprint(rep.Problems)
	for _, w := range []string{"now has diffID", "has no blob and is not unpacked"} {
		if !strings.Contains(joined, w) {
			t.Errorf("problems do not say %q: %s", w, joined)
		}
	}
	rep = runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 0 {
		t.Fatalf("left: %v", rep.Problems)
	}
	if _, err := os.Stat(dPlain); err == nil {
		t.Error("the changed layer dir is still there")
	}
	for k, want := range map[cache.Key]bool{kPlain: false, kGone: false, kEpoch: true} {
		if _, ok := fx.ix.Get(k); ok != want {
			t.Errorf("record %s present %v, want %v", k, ok, want)
		}
	}
	requireClean(t, fx.s)
}

func TestFsckLeftovers(t *testing.T) {
	fx := newFixture(t)
	s := fx.s
	live, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead := s.Path("run", "999999-1") // no such process
	os.MkdirAll(filepath.Join(dead, "snap-1", "upper"), 0o700)
	os.MkdirAll(s.Path("run", "junk"), 0o700)
	var mnt string
	if os.Geteuid() == 0 {
		mnt = filepath.Join(dead, "snap-1", "merged")
		os.MkdirAll(mnt, 0o700)
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for unix.Unmount(mnt, unix.MNT_DETACH) == nil {
			}
		})
	}
	os.WriteFile(s.Path("tmp", "blob-123"), []byte("half"), 0o600)
	os.MkdirAll(s.Path("tmp", "layer-456", "usr"), 0o755)
	os.MkdirAll(s.Path("cache", "mounts", ".new-789"), 0o700)
	containers := []string{"strata-999999-1-3", "strata-" + live.Name + "-1", "someone-else"}
	var deleted []string
	opts := fsckOpts(false)
	opts.Containers = func(context.Context) ([]string, error) { return containers, nil }
	opts.DeleteContainer = func(_ context.Context, id string) error {
		deleted = append(deleted, id)
		return nil
	}

	// The live session holds no lock here (the test is its process), so
	// Fsck has the store to itself and judges every temp file.
	rep := runFsck(t, s, opts)
	got := map[string]bool{}
	for _, p := range rep.Problems {
		got[p.Kind+" "+p.Subject] = true
	}
	want := []string{
		"container strata-999999-1-3", "container someone-else",
		"session run/999999-1", "session run/junk",
		"temp tmp/blob-123", "temp tmp/layer-456", "temp cache/mounts/.new-789",
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing problem %q", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v, want %v", got, want)
	}
	if len(deleted) != 0 {
		t.Errorf("fsck without repair deleted containers %v", deleted)
	}
	if mnt != "" && len(store.MountsUnder(dead)) == 0 {
		t.Error("fsck without repair unmounted")
	}

	opts.Repair = true
	rep = runFsck(t, s, opts)
	if rep.Remaining() != 0 {
		t.Fatalf("left: %v", rep.Problems)
	}
	slices.Sort(deleted)
	if !slices.Equal(deleted, []string{"someone-else", "strata-999999-1-3"}) {
		t.Errorf("deleted containers %v", deleted)
	}
	if m := store.MountsUnder(s.Root()); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	for _, p := range []string{dead, s.Path("run", "junk"), s.Path("tmp", "blob-123"), s.Path("tmp", "layer-456"), s.Path("cache", "mounts", ".new-789")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}
	if _, err := os.Stat(live.Dir); err != nil {
		t.Errorf("the live session was removed: %v", err)
	}
	containers = []string{"strata-" + live.Name + "-1"}
	opts.Repair = false
	if rep := runFsck(t, s, opts); len(rep.Problems) != 0 {
		t.Errorf("after repair: %v", rep.Problems)
	}
}

// A stray mount below the store (not in any session) is reported and released.
func TestFsckStrayMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	fx := newFixture(t)
	mnt := fx.s.Path("cache", "mounts", "abc")
	os.MkdirAll(mnt, 0o700)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(mnt, unix.MNT_DETACH) == nil {
		}
	})
	rep := runFsck(t, fx.s, fsckOpts(false))
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != "mount" || rep.Problems[0].Subject != mnt {
		t.Fatalf("problems %v, want the mount %s", rep.Problems, mnt)
	}
	runFsck(t, fx.s, fsckOpts(true))
	if m := store.MountsUnder(fx.s.Root()); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
	requireClean(t, fx.s)
}

// While another strata process uses the store, fsck checks what it can
// without judging fresh temp files, and --repair refuses.
func TestFsckStoreInUse(t *testing.T) {
	fx := newFixture(t)
	lock, err := fx.s.LockShared() // flock: a second open conflicts even in one process
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	fresh := fx.s.Path("tmp", "blob-fresh")
	old := fx.s.Path("tmp", "blob-old")
	os.WriteFile(fresh, []byte("being written"), 0o600)
	os.WriteFile(old, []byte("left"), 0o600)
	then := time.Now().Add(-2 * store.StaleTempAge)
	os.Chtimes(old, then, then)

	rep := runFsck(t, fx.s, fsckOpts(false))
	if !rep.InUse {
		t.Error("InUse not set")
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Subject != "tmp/blob-old" {
		t.Errorf("problems %v, want only the old temp file", rep.Problems)
	}
	if _, err := fx.s.Fsck(context.Background(), fsckOpts(true)); err == nil || !strings.Contains(err.Error(), "another strata") {
		t.Errorf("repair while the store is in use: err = %v", err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Error("the refused repair removed a file")
	}
}

func TestFsckBrokenLayout(t *testing.T) {
	fx := newFixture(t)
	os.WriteFile(filepath.Join(fx.s.Root(), "oci-layout"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(fx.s.Root(), "blobs", "sha256", "not-a-digest"), []byte("x"), 0o644)
	rep := runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 0 || len(rep.Problems) != 2 {
		t.Fatalf("problems %v", rep.Problems)
	}
	requireClean(t, fx.s)

	// An unreadable index cannot be repaired: the names are lost.
	os.WriteFile(filepath.Join(fx.s.Root(), "index.json"), []byte("{\"manifests\": [tru"), 0o644)
	rep = runFsck(t, fx.s, fsckOpts(true))
	if rep.Remaining() != 1 || rep.Problems[0].Kind != "layout" {
		t.Fatalf("problems %v, want the index.json one left", rep.Problems)
	}
}

// TestFsckMemberStates: the hash states a members sidecar records (which a
// later commit takes up without hashing) are checked against the blob's
// tar; a wrong sidecar is removed with Repair.
func TestFsckMemberStates(t *testing.T) {
	fx := newFixture(t)
	l := fx.layers[0]
	rc, err := fx.s.OpenBlob(l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := layer.Decompress(rc)
	if err != nil {
		t.Fatal(err)
	}
	tarBytes, err := io.ReadAll(zr)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	stateAfter := func(n int) []byte {
		h := sha256.New()
		h.Write(tarBytes[:n])
		b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
		return b
	}
	half := len(tarBytes) / 2
	put := func(states ...[]byte) {
		t.Helper()
		m := layer.Members{Format: layer.MemberFormat(layer.Gzip, 0), List: []layer.Member{
			{Size: int64(half), DiffState: states[0]},
			{Size: int64(len(tarBytes) - half), DiffState: states[1]},
		}}
		if err := fx.s.PutSidecar(store.SidecarMembers, l.Digest, m); err != nil {
			t.Fatal(err)
		}
	}

	put(stateAfter(half), stateAfter(len(tarBytes)))
	if rep := runFsck(t, fx.s, fsckOpts(false)); len(rep.Problems) != 0 {
		t.Fatalf("a right sidecar: %v", rep.Problems)
	}

	put(stateAfter(half-1), stateAfter(len(tarBytes)))
	rep := runFsck(t, fx.s, fsckOpts(true))
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Detail, "members sidecar is wrong") || !rep.Problems[0].Repaired {
		t.Fatalf("a wrong hash state: %v", rep.Problems)
	}
	var m layer.Members
	if fx.s.Sidecar(store.SidecarMembers, l.Digest, &m) {
		t.Fatal("the wrong sidecar is still there")
	}
	if rep := runFsck(t, fx.s, fsckOpts(false)); len(rep.Problems) != 0 {
		t.Fatalf("after the repair: %v", rep.Problems)
	}
}
