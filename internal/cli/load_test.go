package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// archiveMember is one regular file of a tar archive.
type archiveMember struct {
	name string
	body []byte
}

// readMembers returns the regular files of the tar file at path, in order.
func readMembers(t *testing.T, path string) []archiveMember {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []archiveMember
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, archiveMember{h.Name, b})
	}
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

// refusalChecker returns a check that `strata load -i path` into the store
// at root fails with an error naming path, member and each of words, and
// leaves the store as it is now: the same images, the same blobs, no temp
// files, nothing for fsck to find.
func refusalChecker(t *testing.T, root string) func(t *testing.T, path, member string, words []string) {
	imagesBefore := mustStrata(t, root, "images").stdout
	blobsBefore := blobFiles(t, root)
	return func(t *testing.T, path, member string, words []string) {
		t.Helper()
		r := strataIn(t, root, "load", "-i", path)
		if r.code == 0 {
			t.Fatalf("strata load accepted the damaged archive:\n%s%s", r.stdout, r.stderr)
		}
		for _, w := range append([]string{path, member}, words...) {
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
	flipped := flipContentByte(t, layerTar)
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

	check := refusalChecker(t, root)
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

// ociParts is an OCI image layout archive held in memory: its index.json,
// its blobs by digest, and other members (a manifest.json).
type ociParts struct {
	index ocispec.Index
	blobs map[digest.Digest][]byte
	extra []archiveMember
}

// readOCIParts reads the OCI layout archive at path.
func readOCIParts(t *testing.T, file string) *ociParts {
	t.Helper()
	p := &ociParts{blobs: map[digest.Digest][]byte{}}
	for _, m := range readMembers(t, file) {
		b := m.body
		switch {
		case m.name == "index.json":
			if err := json.Unmarshal(b, &p.index); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(m.name, "blobs/sha256/"):
			p.blobs[digest.NewDigestFromEncoded(digest.SHA256, path.Base(m.name))] = b
		}
	}
	if len(p.index.Manifests) == 0 {
		t.Fatalf("%s: no index.json, or no manifest in it", file)
	}
	return p
}

// clone copies p, so that a variant can change it.
func (p *ociParts) clone() *ociParts {
	c := &ociParts{index: p.index, blobs: maps.Clone(p.blobs)}
	c.index.Manifests = slices.Clone(p.index.Manifests)
	return c
}

// put adds b as a blob and returns a descriptor of it.
func (p *ociParts) put(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	p.blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// putJSON adds v, marshalled, as a blob.
func (p *ociParts) putJSON(t *testing.T, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return p.put(mediaType, b)
}

// manifest returns the image manifest of index.json's entry i.
func (p *ociParts) manifest(t *testing.T, i int) ocispec.Manifest {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(p.blobs[p.index.Manifests[i].Digest], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// setManifest stores m and points index.json's entry i at it.
func (p *ociParts) setManifest(t *testing.T, i int, m ocispec.Manifest) {
	t.Helper()
	d := p.putJSON(t, ocispec.MediaTypeImageManifest, m)
	p.index.Manifests[i].Digest, p.index.Manifests[i].Size = d.Digest, d.Size
}

// write writes p as an OCI layout archive at path.
func (p *ociParts) write(t *testing.T, path string) {
	t.Helper()
	idx, err := json.Marshal(p.index)
	if err != nil {
		t.Fatal(err)
	}
	members := []archiveMember{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {"index.json", idx}}
	for _, d := range slices.Sorted(maps.Keys(p.blobs)) {
		members = append(members, archiveMember{"blobs/sha256/" + d.Encoded(), p.blobs[d]})
	}
	writeTar(t, path, append(members, p.extra...))
}

// storedManifest returns the manifest digest and the image ID (config
// digest) of the image name in the store at root.
func storedManifest(t *testing.T, root, name string) (manifest, id digest.Digest) {
	t.Helper()
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	im, ok, err := s.Lookup(name)
	if err != nil || !ok {
		t.Fatalf("%s is not in the store %s (%v)", name, root, err)
	}
	img, err := image.Load(s, im.Descriptor.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return im.Descriptor.Digest, digest.Digest(img.Manifest.Config.Digest.String())
}

// TestLoadOCIArchive: `strata load` reads OCI image layout archives, what
// `strata save --format oci`, `strata build -o type=oci`, `docker buildx
// --output type=oci` and (with a manifest.json beside) `docker save` since
// Docker 25 write. The image keeps its manifest digest and ID, its name
// comes from the index.json annotations, and the store stays sound.
func TestLoadOCIArchive(t *testing.T) {
	root, _ := importedStore(t)
	dir := t.TempDir()
	wantManifest, wantID := storedManifest(t, root, "small:1")
	saved := filepath.Join(dir, "saved.oci.tar")
	mustStrata(t, root, "save", "--format", "oci", "-o", saved, "small:1")

	t.Run("save", func(t *testing.T) {
		fresh := t.TempDir()
		r := mustStrata(t, fresh, "load", "-i", saved)
		if r.stdout != "Loaded image: small:1\n" {
			t.Errorf("strata load output %q, want Loaded image: small:1", r.stdout)
		}
		m, id := storedManifest(t, fresh, "small:1")
		if m != wantManifest || id != wantID {
			t.Errorf("loaded manifest %s, ID %s; saved were %s, %s", m, id, wantManifest, wantID)
		}
		mustStrata(t, fresh, "fsck")
	})

	t.Run("untagged", func(t *testing.T) {
		// index.json names nothing: the image loads untagged.
		p := readOCIParts(t, saved)
		p.index.Manifests[0].Annotations = nil
		path := filepath.Join(dir, "untagged.oci.tar")
		p.write(t, path)
		fresh := t.TempDir()
		r := mustStrata(t, fresh, "load", "-i", path)
		if r.stdout != "Loaded image ID: "+wantID.String()+"\n" {
			t.Errorf("strata load output %q, want Loaded image ID: %s", r.stdout, wantID)
		}
		if m, _ := storedManifest(t, fresh, "x@"+wantManifest.String()); m != wantManifest {
			t.Errorf("manifest %s not in the store", wantManifest)
		}
		mustStrata(t, fresh, "fsck")
	})

	t.Run("names", func(t *testing.T) {
		// io.containerd.image.name, when there, names the image (as docker's
		// containerd store does); else org.opencontainers.image.ref.name,
		// read as an image reference. A name that is not a reference loads
		// the image untagged, with a warning.
		p := readOCIParts(t, saved)
		e := p.index.Manifests[0]
		p.index.Manifests = nil
		for _, ann := range []map[string]string{
			{ocispec.AnnotationRefName: "2.0", "io.containerd.image.name": "registry.example.com/team/app:2.0"},
			{ocispec.AnnotationRefName: "example.com/other:3"},
			{ocispec.AnnotationRefName: "Not A Name"},
		} {
			d := e
			d.Annotations = ann
			p.index.Manifests = append(p.index.Manifests, d)
		}
		path := filepath.Join(dir, "names.oci.tar")
		p.write(t, path)
		fresh := t.TempDir()
		r := mustStrata(t, fresh, "load", "-i", path)
		if r.stdout != "Loaded image: registry.example.com/team/app:2.0\nLoaded image: example.com/other:3\n" {
			t.Errorf("strata load output:\n%s", r.stdout)
		}
		if !strings.Contains(r.stderr, `"Not A Name"`) {
			t.Errorf("no warning about the name that is not a reference:\n%s", r.stderr)
		}
		for _, n := range []string{"registry.example.com/team/app:2.0", "example.com/other:3"} {
			if m, _ := storedManifest(t, fresh, n); m != wantManifest {
				t.Errorf("%s: manifest %s, want %s", n, m, wantManifest)
			}
		}
		mustStrata(t, fresh, "fsck")
	})

	t.Run("docker25", func(t *testing.T) {
		// `docker save` since Docker 25 writes an OCI layout and a
		// manifest.json beside it. index.json is read (as docker's containerd
		// image store does), so the manifest keeps its digest, when it names
		// every image and name manifest.json does; docker without the
		// containerd store leaves out what it saved by digest (index.json has
		// "manifests": null, moby/moby#47210, or misses some, #51389): then
		// manifest.json is read.
		orig := readOCIParts(t, saved)
		mm := orig.manifest(t, 0)
		entry := func(cfg digest.Digest, tags ...string) tarball.Descriptor {
			d := tarball.Descriptor{Config: "blobs/sha256/" + cfg.Encoded(), RepoTags: tags}
			for _, l := range mm.Layers {
				d.Layers = append(d.Layers, "blobs/sha256/"+l.Digest.Encoded())
			}
			return d
		}
		withManifestJSON := func(p *ociParts, m tarball.Manifest) {
			b, _ := json.Marshal(m)
			p.extra = []archiveMember{{"manifest.json", b}}
		}
		// A second image: the same layer, another config.
		cfg2 := bytes.Replace(orig.blobs[mm.Config.Digest], []byte(`"A=1"`), []byte(`"A=3"`), 1)
		cfg2Digest := digest.FromBytes(cfg2)
		load := func(t *testing.T, p *ociParts, want ...string) string {
			t.Helper()
			path := filepath.Join(t.TempDir(), "docker25.tar")
			p.write(t, path)
			fresh := t.TempDir()
			r := mustStrata(t, fresh, "load", "-i", path)
			for _, w := range want {
				if !strings.Contains(r.stdout, "Loaded image: "+w+"\n") {
					t.Errorf("%s not loaded:\n%s", w, r.stdout)
				}
			}
			mustStrata(t, fresh, "fsck")
			return fresh
		}

		t.Run("index", func(t *testing.T) {
			p := orig.clone()
			withManifestJSON(p, tarball.Manifest{entry(mm.Config.Digest, "small:1")})
			fresh := load(t, p, "small:1")
			if m, id := storedManifest(t, fresh, "small:1"); m != wantManifest || id != wantID {
				t.Errorf("loaded manifest %s, ID %s; saved were %s, %s", m, id, wantManifest, wantID)
			}
		})
		t.Run("index-empty", func(t *testing.T) {
			p := orig.clone()
			p.index.Manifests = nil
			withManifestJSON(p, tarball.Manifest{entry(mm.Config.Digest, "small:1")})
			fresh := load(t, p, "small:1")
			if _, id := storedManifest(t, fresh, "small:1"); id != wantID {
				t.Errorf("loaded ID %s, saved was %s", id, wantID)
			}
		})
		t.Run("index-partial", func(t *testing.T) {
			p := orig.clone()
			p.put(ocispec.MediaTypeImageConfig, cfg2)
			withManifestJSON(p, tarball.Manifest{entry(mm.Config.Digest, "small:1"), entry(cfg2Digest, "other:1")})
			fresh := load(t, p, "small:1", "other:1")
			if _, id := storedManifest(t, fresh, "other:1"); id != cfg2Digest {
				t.Errorf("other:1 has ID %s, want %s", id, cfg2Digest)
			}
		})
	})

	t.Run("skopeo", func(t *testing.T) {
		// What another tool writes: skopeo's oci-archive, a full name in
		// org.opencontainers.image.ref.name.
		if _, err := exec.LookPath("skopeo"); err != nil {
			t.Skip("skopeo is not installed")
		}
		path := filepath.Join(dir, "skopeo.tar")
		out, err := exec.Command("skopeo", "copy", "-q", "oci:"+root+":docker.io/library/small:1", "oci-archive:"+path+":example.com/skopeo:1").CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		fresh := t.TempDir()
		if r := mustStrata(t, fresh, "load", "-i", path); r.stdout != "Loaded image: example.com/skopeo:1\n" {
			t.Errorf("strata load output %q", r.stdout)
		}
		if m, id := storedManifest(t, fresh, "example.com/skopeo:1"); m != wantManifest || id != wantID {
			t.Errorf("loaded manifest %s, ID %s; saved were %s, %s", m, id, wantManifest, wantID)
		}
		mustStrata(t, fresh, "fsck")
	})

	t.Run("build", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("strata build needs root")
		}
		ctxDir := t.TempDir()
		os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY a /a\nCOPY b /sub/b\n"), 0o644)
		os.WriteFile(filepath.Join(ctxDir, "a"), bytes.Repeat([]byte("a"), 5000), 0o644)
		os.WriteFile(filepath.Join(ctxDir, "b"), []byte("b\n"), 0o644)
		for _, c := range []string{"gzip", "zstd", "uncompressed"} {
			t.Run(c, func(t *testing.T) {
				out := filepath.Join(dir, "built-"+c+".tar")
				mustStrata(t, root, "build", "-q", "--compression", c, "-t", "built:"+c, "-o", "type=oci,dest="+out, ctxDir)
				wantM, wantI := storedManifest(t, root, "built:"+c)
				fresh := t.TempDir()
				if r := mustStrata(t, fresh, "load", "-i", out); r.stdout != "Loaded image: built:"+c+"\n" {
					t.Errorf("strata load output %q", r.stdout)
				}
				if m, id := storedManifest(t, fresh, "built:"+c); m != wantM || id != wantI {
					t.Errorf("loaded manifest %s, ID %s; built %s, %s", m, id, wantM, wantI)
				}
				mustStrata(t, fresh, "fsck")
			})
		}
	})
}

// TestLoadOCIRefusesDamagedArchives: every blob of an OCI layout archive is
// checked against its digest, every layer against the config's diff_ids and
// its media type, before anything is written; a damaged archive is refused
// whole and leaves the store as it was.
func TestLoadOCIRefusesDamagedArchives(t *testing.T) {
	root, _ := importedStore(t)
	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.oci.tar")
	mustStrata(t, root, "save", "--format", "oci", "-o", saved, "small:1")
	orig := readOCIParts(t, saved)
	m := orig.manifest(t, 0)
	if len(m.Layers) != 1 {
		t.Fatalf("saved manifest has %d layers, want 1", len(m.Layers))
	}
	gz := orig.blobs[m.Layers[0].Digest]
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromBytes(layerTar)
	flipped := flipContentByte(t, layerTar)
	badDiffID := digest.FromBytes(flipped)
	badGz := gzipped(t, flipped)
	member := func(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

	check := refusalChecker(t, root)
	for _, v := range []struct {
		name   string
		change func(p *ociParts) (member string, words []string)
	}{
		{"diffid", func(p *ociParts) (string, []string) {
			// The flipped layer recompressed under its own digest, the
			// manifest and index.json updated: only the diffID tells.
			mm := p.manifest(t, 0)
			mm.Layers[0] = p.put(mm.Layers[0].MediaType, badGz)
			p.setManifest(t, 0, mm)
			return member(mm.Layers[0].Digest), []string{badDiffID.String(), diffID.String()}
		}},
		{"layer-renamed", func(p *ociParts) (string, []string) {
			// A layer whose content does not match its name: one byte
			// changed in the gzip stream.
			b := bytes.Clone(gz)
			b[len(b)/2] ^= 0xff
			p.blobs[m.Layers[0].Digest] = b
			return member(m.Layers[0].Digest), []string{digest.FromBytes(b).String()}
		}},
		{"tar-layer-renamed", func(p *ociParts) (string, []string) {
			// An uncompressed layer whose content does not match its name.
			mm := p.manifest(t, 0)
			mm.Layers[0] = p.put(ocispec.MediaTypeImageLayer, layerTar)
			p.setManifest(t, 0, mm)
			p.blobs[mm.Layers[0].Digest] = flipped
			return member(mm.Layers[0].Digest), []string{badDiffID.String()}
		}},
		{"config-renamed", func(p *ociParts) (string, []string) {
			cfg := p.blobs[m.Config.Digest]
			bent := bytes.Replace(cfg, []byte(`"A=1"`), []byte(`"A=2"`), 1)
			if bytes.Equal(bent, cfg) {
				t.Fatalf("no A=1 in the config %s", cfg)
			}
			p.blobs[m.Config.Digest] = bent
			return member(m.Config.Digest), []string{digest.FromBytes(bent).String()}
		}},
		{"manifest-renamed", func(p *ociParts) (string, []string) {
			d := p.index.Manifests[0].Digest
			p.blobs[d] = bytes.Replace(p.blobs[d], []byte(`"mediaType"`), []byte(`"mediaTypf"`), 1)
			return member(d), []string{digest.FromBytes(p.blobs[d]).String()}
		}},
		{"layer-missing", func(p *ociParts) (string, []string) {
			delete(p.blobs, m.Layers[0].Digest)
			return member(m.Layers[0].Digest), []string{"not in the archive"}
		}},
		{"layer-size", func(p *ociParts) (string, []string) {
			mm := p.manifest(t, 0)
			mm.Layers[0].Size++
			p.setManifest(t, 0, mm)
			return member(mm.Layers[0].Digest), []string{fmt.Sprint(mm.Layers[0].Size)}
		}},
		{"layer-count", func(p *ociParts) (string, []string) {
			mm := p.manifest(t, 0)
			mm.Layers = append(mm.Layers, mm.Layers[0])
			p.setManifest(t, 0, mm)
			return "", []string{"2 layers", "1 diff"}
		}},
		{"media-type-unknown", func(p *ociParts) (string, []string) {
			mm := p.manifest(t, 0)
			mm.Layers[0].MediaType = "application/vnd.oci.image.layer.v1.tar+bzip2"
			p.setManifest(t, 0, mm)
			return member(mm.Layers[0].Digest), []string{"application/vnd.oci.image.layer.v1.tar+bzip2"}
		}},
		{"media-type-zstd-is-gzip", func(p *ociParts) (string, []string) {
			mm := p.manifest(t, 0)
			mm.Layers[0].MediaType = ocispec.MediaTypeImageLayerZstd
			p.setManifest(t, 0, mm)
			return member(mm.Layers[0].Digest), []string{ocispec.MediaTypeImageLayerZstd, "gzip"}
		}},
		{"media-type-tar-is-gzip", func(p *ociParts) (string, []string) {
			mm := p.manifest(t, 0)
			mm.Layers[0].MediaType = ocispec.MediaTypeImageLayer
			p.setManifest(t, 0, mm)
			return member(mm.Layers[0].Digest), []string{ocispec.MediaTypeImageLayer, "compressed"}
		}},
		{"media-type-gzip-is-tar", func(p *ociParts) (string, []string) {
			mm := p.manifest(t, 0)
			mm.Layers[0] = p.put(ocispec.MediaTypeImageLayerGzip, layerTar)
			p.setManifest(t, 0, mm)
			return member(mm.Layers[0].Digest), []string{ocispec.MediaTypeImageLayerGzip, "not gzip"}
		}},
		{"second-image", func(p *ociParts) (string, []string) {
			// A good image and a damaged one: neither is loaded.
			p.index.Manifests = append(p.index.Manifests, p.index.Manifests[0])
			p.index.Manifests[1].Annotations = map[string]string{ocispec.AnnotationRefName: "damaged:1"}
			mm := p.manifest(t, 1)
			mm.Layers[0] = p.put(mm.Layers[0].MediaType, badGz)
			p.setManifest(t, 1, mm)
			return member(mm.Layers[0].Digest), []string{"damaged:1", badDiffID.String()}
		}},
		{"layout-version", func(p *ociParts) (string, []string) {
			return "oci-layout", nil // written below with another version
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			p := orig.clone()
			member, words := v.change(p)
			path := filepath.Join(dir, v.name+".tar")
			p.write(t, path)
			if v.name == "layout-version" {
				ents := []archiveMember{{"oci-layout", []byte(`{"imageLayoutVersion":"2.0.0"}`)}}
				writeTar(t, path, ents)
				words = []string{"2.0.0"}
			}
			check(t, path, member, words)
		})
	}
}

// TestLoadOCIPlatforms: from an image index of several platforms (nested in
// index.json, as `docker buildx --platform a,b --output type=oci` writes),
// `strata load` loads the image for the host platform, as `docker load`
// does, under the index's name; the other platforms' blobs are not written.
// An index without the host platform is refused.
func TestLoadOCIPlatforms(t *testing.T) {
	root, _ := importedStore(t)
	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.oci.tar")
	mustStrata(t, root, "save", "--format", "oci", "-o", saved, "small:1")
	orig := readOCIParts(t, saved)
	hostManifest := orig.index.Manifests[0]
	hostManifest.Annotations = nil

	// A second image for another architecture: its own layer and config.
	other := "s390x"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	tarOf := func(content string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "arch", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(content))
		tw.Close()
		return buf.Bytes()
	}
	build := func(p *ociParts, arch string) ocispec.Descriptor {
		lt := tarOf(arch + "\n")
		l := p.put(ocispec.MediaTypeImageLayerGzip, gzipped(t, lt))
		cfg := v1.ConfigFile{OS: "linux", Architecture: arch, RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: hexOf(lt)}}}}
		c := p.putJSON(t, ocispec.MediaTypeImageConfig, cfg)
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: c, Layers: []ocispec.Descriptor{l}}
		m.SchemaVersion = 2
		return p.putJSON(t, ocispec.MediaTypeImageManifest, m)
	}
	withIndex := func(p *ociParts, manifests ...ocispec.Descriptor) {
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
		idx.SchemaVersion = 2
		d := p.putJSON(t, ocispec.MediaTypeImageIndex, idx)
		d.Annotations = map[string]string{ocispec.AnnotationRefName: "multi:1"}
		p.index.Manifests = []ocispec.Descriptor{d}
	}
	plat := func(d ocispec.Descriptor, arch string) ocispec.Descriptor {
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		return d
	}

	t.Run("host", func(t *testing.T) {
		p := orig.clone()
		o := build(p, other)
		// An attestation manifest (unknown/unknown, as BuildKit adds) too.
		att := plat(o, "unknown")
		att.Platform.OS = "unknown"
		withIndex(p, plat(o, other), plat(hostManifest, runtime.GOARCH), att)
		path := filepath.Join(dir, "multi.tar")
		p.write(t, path)
		fresh := t.TempDir()
		if r := mustStrata(t, fresh, "load", "-i", path); r.stdout != "Loaded image: multi:1\n" {
			t.Errorf("strata load output %q", r.stdout)
		}
		if m, _ := storedManifest(t, fresh, "multi:1"); m != hostManifest.Digest {
			t.Errorf("loaded manifest %s, want the host's %s", m, hostManifest.Digest)
		}
		if r := mustStrata(t, fresh, "inspect", "--format", "{{.Architecture}}", "multi:1"); strings.TrimSpace(r.stdout) != runtime.GOARCH {
			t.Errorf("loaded image architecture %q, want %s", r.stdout, runtime.GOARCH)
		}
		s, _ := store.Open(fresh)
		if s.HasBlob(o.Digest) {
			t.Errorf("the %s manifest was written to the store", other)
		}
		mustStrata(t, fresh, "fsck")
	})

	t.Run("no-host", func(t *testing.T) {
		p := orig.clone()
		withIndex(p, plat(build(p, other), other))
		path := filepath.Join(dir, "foreign.tar")
		p.write(t, path)
		check := refusalChecker(t, root)
		check(t, path, "", []string{"linux/" + runtime.GOARCH, "linux/" + other})
	})
}

// TestLoadDockerUntagged: a docker archive of several images, one of them
// without a name (`docker save app:1 IMAGE-ID` writes a manifest.json entry
// with no RepoTags), loads every image, as `docker load` does; the untagged
// one is an image of the store, listed by `images -a` and found by its ID.
func TestLoadDockerUntagged(t *testing.T) {
	root, _ := importedStore(t)
	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.tar")
	mustStrata(t, root, "save", "-o", saved, "small:1")
	_, wantID := storedManifest(t, root, "small:1")

	// The saved archive's members, and a second image: the same layer,
	// another config.
	members := slices.DeleteFunc(readMembers(t, saved), func(m archiveMember) bool { return m.name == "manifest.json" })
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(saved) })
	if err != nil || len(m) != 1 {
		t.Fatalf("saved archive: manifest %+v, %v", m, err)
	}
	i := slices.IndexFunc(members, func(am archiveMember) bool { return am.name == m[0].Config })
	if i < 0 {
		t.Fatalf("no config %s in the saved archive", m[0].Config)
	}
	cfg2 := bytes.Replace(members[i].body, []byte(`"A=1"`), []byte(`"A=3"`), 1)
	id2 := digest.FromBytes(cfg2)
	untagged := tarball.Descriptor{Config: "sha256:" + id2.Encoded(), Layers: m[0].Layers}

	for _, c := range []struct {
		name string
		m    tarball.Manifest
	}{
		{"tagged-first", tarball.Manifest{m[0], untagged}},
		{"untagged-first", tarball.Manifest{untagged, m[0]}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mj, err := json.Marshal(c.m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "two.tar")
			writeTar(t, path, append(slices.Clone(members), archiveMember{"sha256:" + id2.Encoded(), cfg2}, archiveMember{"manifest.json", mj}))
			fresh := t.TempDir()
			r := mustStrata(t, fresh, "load", "-i", path)
			for _, want := range []string{"Loaded image: small:1\n", "Loaded image ID: " + id2.String() + "\n"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("strata load output %q, want %q in it", r.stdout, want)
				}
			}
			if _, id := storedManifest(t, fresh, "small:1"); id != wantID {
				t.Errorf("small:1 has ID %s, want %s", id, wantID)
			}
			if r := mustStrata(t, fresh, "images", "-a"); !strings.Contains(r.stdout, id2.Encoded()[:12]) {
				t.Errorf("strata images -a does not list %s:\n%s", id2.Encoded()[:12], r.stdout)
			}
			if r := mustStrata(t, fresh, "inspect", id2.String()); !strings.Contains(r.stdout, `"Id": "`+id2.String()) || !strings.Contains(r.stdout, "A=3") {
				t.Errorf("strata inspect %s:\n%s", id2, r.stdout)
			}
			mustStrata(t, fresh, "fsck")
		})
	}
}

// flipContentByte returns layerTar with one byte flipped inside a file's
// content (data/blob is all 'a'): the tar stays valid, only its digest
// changes, so only a check against the config's diffID can catch it.
func flipContentByte(t *testing.T, layerTar []byte) []byte {
	t.Helper()
	i := bytes.Index(layerTar, bytes.Repeat([]byte{'a'}, 1000))
	if i < 0 {
		t.Fatal("no file content found in the layer")
	}
	flipped := bytes.Clone(layerTar)
	flipped[i+500] = 'b'
	return flipped
}
