package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// TestLoadIntoDocker checks what --load sends: a POST of a docker-archive
// that go-containerregistry's reader accepts, tagged with the names, to a
// fake daemon on a unix socket.
func TestLoadIntoDocker(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	// a one-file image
	root := filepath.Join(dir, "rootfs")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644)
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := layer.Commit(context.Background(), root, w, layer.Gzip, layer.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(blob.Digest); err != nil {
		t.Fatal(err)
	}
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64"}
	cfg.History = []v1.History{{CreatedBy: "test"}}
	img, err := image.Write(s, cfg, []image.Layer{{Digest: blob.Digest, DiffID: blob.DiffID, Size: blob.Size, MediaType: blob.MediaType}})
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	var path string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.Method + " " + r.URL.Path
		io.Copy(&got, r.Body)
		w.Write([]byte(`{"stream":"Loaded image: app:1\n"}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	t.Setenv("DOCKER_HOST", "unix://"+sock)

	b := &build.Builder{Store: s}
	if err := loadIntoDocker(context.Background(), b, img, []string{"app:1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, "/images/load") || !strings.HasPrefix(path, "POST") {
		t.Errorf("request %q, want POST .../images/load", path)
	}
	data := got.Bytes()
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		t.Fatalf("the daemon got no docker archive: %v", err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || !strings.Contains(m[0].RepoTags[0], "app:1") {
		t.Fatalf("archive manifest %+v, want one image tagged app:1", m)
	}
	vimg, err := tarball.Image(opener, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := vimg.ConfigName()
	if d.String() != img.Manifest.Config.Digest.String() {
		t.Errorf("loaded image id %s, want %s", d, img.Manifest.Config.Digest)
	}

	// no daemon: a clear error
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "none.sock"))
	if err := loadIntoDocker(context.Background(), b, img, nil); err == nil || !strings.Contains(err.Error(), "no Docker daemon socket") {
		t.Errorf("without a daemon: err = %v", err)
	}
}

// archiveMember is one regular file of a tar archive.
type archiveMember struct {
	name string
	body []byte
}

// writeTar writes the members as a tar file at path.
func writeTar(t *testing.T, path string, members []archiveMember) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dockerArchiveAt writes a one-image docker archive: the config under
// cfgName, the layers under their names, and a manifest.json naming them.
func dockerArchiveAt(t *testing.T, path, tag, cfgName string, cfg []byte, layers []archiveMember) {
	t.Helper()
	d := tarball.Descriptor{Config: cfgName, RepoTags: []string{tag}}
	members := []archiveMember{{cfgName, cfg}}
	for _, l := range layers {
		d.Layers = append(d.Layers, l.name)
		members = append(members, l)
	}
	m, err := json.Marshal(tarball.Manifest{d})
	if err != nil {
		t.Fatal(err)
	}
	writeTar(t, path, append(members, archiveMember{"manifest.json", m}))
}

func hexOf(b []byte) string { return digest.FromBytes(b).Encoded() }

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blobFiles lists the blob files of the store at root.
func blobFiles(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestLoadRefusesDamagedArchives: `strata load` checks every layer against
// the config's rootfs.diff_ids (and every member named by a digest against
// it) before it writes anything, as `docker load` does, in the three archive
// layouts: go-containerregistry's (what `strata save` writes: HEX.tar.gz
// layers), docker 25's (blobs/sha256/, uncompressed) and older docker's
// (ID/layer.tar). A damaged archive is refused whole, with an error that
// names the archive, the layer and both diffIDs, and leaves the store as it
// was: no new blob, no tag, nothing for fsck to find.
func TestLoadRefusesDamagedArchives(t *testing.T) {
	root, _ := importedStore(t)
	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.tar")
	mustStrata(t, root, "save", "-o", saved, "small:1")

	// The parts of the saved archive: its config and its one gzip layer.
	opener := func() (io.ReadCloser, error) { return os.Open(saved) }
	m, err := tarball.LoadManifest(opener)
	if err != nil || len(m) != 1 || len(m[0].Layers) != 1 {
		t.Fatalf("saved archive: manifest %+v, %v", m, err)
	}
	vimg, err := tarball.Image(opener, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := vimg.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := vimg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	layerTar, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromBytes(layerTar)
	// One byte flipped inside a file's content (data/blob is all 'a'): the
	// tar stays valid, only its digest changes.
	i := bytes.Index(layerTar, bytes.Repeat([]byte{'a'}, 1000))
	if i < 0 {
		t.Fatal("no file content found in the layer")
	}
	flipped := bytes.Clone(layerTar)
	flipped[i+500] = 'b'
	badDiffID := digest.FromBytes(flipped)
	gz := gzipped(t, layerTar)
	cfgHex := hexOf(cfg)

	type variant struct {
		name      string
		cfgName   string
		layerName func(content []byte) string
		layer     []byte
		words     []string // the error must contain each
	}
	ggcr := func(b []byte) string { return hexOf(b) + ".tar.gz" }
	docker25 := func(b []byte) string { return "blobs/sha256/" + hexOf(b) }
	legacy := func([]byte) string { return "0123abcd/layer.tar" }
	bad := []variant{
		{name: "ggcr-diffid", cfgName: "sha256:" + cfgHex, layerName: ggcr, layer: gzipped(t, flipped),
			words: []string{badDiffID.String(), diffID.String()}},
		{name: "docker25-diffid", cfgName: "blobs/sha256/" + cfgHex, layerName: docker25, layer: flipped,
			words: []string{badDiffID.String(), diffID.String()}},
		{name: "legacy-diffid", cfgName: cfgHex + ".json", layerName: legacy, layer: flipped,
			words: []string{badDiffID.String(), diffID.String()}},
		{name: "truncated-gzip", cfgName: "sha256:" + cfgHex, layerName: ggcr, layer: gz[:len(gz)-8],
			words: []string{"EOF"}},
		{name: "corrupt-gzip", cfgName: "sha256:" + cfgHex, layerName: ggcr, layer: func() []byte {
			b := bytes.Clone(gz)
			b[len(b)/2] ^= 0xff
			return b
		}()},
	}
	good := []variant{
		{name: "ggcr", cfgName: "sha256:" + cfgHex, layerName: ggcr, layer: gz},
		{name: "docker25", cfgName: "blobs/sha256/" + cfgHex, layerName: docker25, layer: layerTar},
		{name: "legacy", cfgName: cfgHex + ".json", layerName: legacy, layer: layerTar},
	}

	imagesBefore := mustStrata(t, root, "images").stdout
	blobsBefore := blobFiles(t, root)
	check := func(t *testing.T, path, layerPath string, words []string) {
		t.Helper()
		r := strataIn(t, root, "load", "-i", path)
		if r.code == 0 {
			t.Fatalf("strata load accepted the damaged archive:\n%s%s", r.stdout, r.stderr)
		}
		for _, w := range append([]string{path, layerPath}, words...) {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("the error does not name %q:\n%s", w, r.stderr)
			}
		}
		if got := mustStrata(t, root, "images").stdout; got != imagesBefore {
			t.Errorf("strata images changed:\n%s\nwas:\n%s", got, imagesBefore)
		}
		if got := blobFiles(t, root); !slices.Equal(got, blobsBefore) {
			t.Errorf("blobs changed: %v, was %v", got, blobsBefore)
		}
		if left, _ := os.ReadDir(filepath.Join(root, "tmp")); len(left) != 0 {
			t.Errorf("temp files left in the store: %v", left)
		}
		mustStrata(t, root, "fsck")
	}
	for _, v := range bad {
		t.Run(v.name, func(t *testing.T) {
			path := filepath.Join(dir, v.name+".tar")
			ln := v.layerName(v.layer)
			dockerArchiveAt(t, path, "damaged:1", v.cfgName, cfg, []archiveMember{{ln, v.layer}})
			check(t, path, ln, v.words)
		})
	}
	t.Run("config-renamed", func(t *testing.T) {
		// A config whose content does not match the digest in its name.
		path := filepath.Join(dir, "config.tar")
		bent := bytes.Replace(cfg, []byte(`"A=1"`), []byte(`"A=2"`), 1)
		if bytes.Equal(bent, cfg) {
			t.Fatalf("no A=1 in the config %s", cfg)
		}
		dockerArchiveAt(t, path, "damaged:1", "sha256:"+cfgHex, bent, []archiveMember{{ggcr(gz), gz}})
		check(t, path, "sha256:"+cfgHex, []string{hexOf(bent)})
	})
	t.Run("layer-count", func(t *testing.T) {
		// Two layers in manifest.json, one diffID in the config.
		path := filepath.Join(dir, "count.tar")
		dockerArchiveAt(t, path, "damaged:1", "sha256:"+cfgHex, cfg, []archiveMember{{ggcr(gz), gz}, {"extra.tar.gz", gz}})
		check(t, path, "", []string{"2 layers", "1 diff"})
	})
	t.Run("second-image", func(t *testing.T) {
		// A good image and a damaged one in one archive: neither is loaded.
		path := filepath.Join(dir, "two.tar")
		bl := gzipped(t, flipped)
		m, _ := json.Marshal(tarball.Manifest{
			{Config: "sha256:" + cfgHex, RepoTags: []string{"good:1"}, Layers: []string{ggcr(gz)}},
			{Config: "sha256:" + cfgHex, RepoTags: []string{"damaged:1"}, Layers: []string{ggcr(bl)}},
		})
		writeTar(t, path, []archiveMember{{"sha256:" + cfgHex, cfg}, {ggcr(gz), gz}, {ggcr(bl), bl}, {"manifest.json", m}})
		check(t, path, ggcr(bl), []string{badDiffID.String()})
	})

	// The same archives undamaged load, each into a fresh store, with the
	// image ID of the original.
	for _, v := range good {
		t.Run("good-"+v.name, func(t *testing.T) {
			path := filepath.Join(dir, "good-"+v.name+".tar")
			dockerArchiveAt(t, path, "loaded:1", v.cfgName, cfg, []archiveMember{{v.layerName(v.layer), v.layer}})
			fresh := t.TempDir()
			r := mustStrata(t, fresh, "load", "-i", path)
			if !strings.Contains(r.stdout, "loaded:1") {
				t.Errorf("strata load output:\n%s", r.stdout)
			}
			if r := mustStrata(t, fresh, "inspect", "loaded:1"); !strings.Contains(r.stdout, `"Id": "sha256:`+cfgHex) {
				t.Errorf("the loaded image's ID is not sha256:%s:\n%s", cfgHex, r.stdout)
			}
			mustStrata(t, fresh, "fsck")
		})
	}
}
