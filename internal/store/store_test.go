package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dirEntries lists the names in dir (which must exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func readIndexFile(t *testing.T, s *Store) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Root(), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("index.json is not valid JSON: %v\n%s", err, b)
	}
	return idx
}

// putManifest stores a small manifest blob and returns its descriptor.
func putManifest(t *testing.T, s *Store, seed string) ocispec.Descriptor {
	t.Helper()
	b := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":"sha256:%064x","size":2},"layers":[],"annotations":{"seed":%q}}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, 0, seed))
	d, err := s.PutBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(b))}
}

func TestOpenCreatesLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root() != root || !filepath.IsAbs(s.Root()) {
		t.Errorf("Root() = %q", s.Root())
	}
	b, err := os.ReadFile(filepath.Join(root, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	var lay ocispec.ImageLayout
	if err := json.Unmarshal(b, &lay); err != nil || lay.Version != "1.0.0" {
		t.Errorf("oci-layout = %s (%v)", b, err)
	}
	idx := readIndexFile(t, s)
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || idx.Manifests == nil || len(idx.Manifests) != 0 {
		t.Errorf("index.json = %+v", idx)
	}
	raw, _ := os.ReadFile(filepath.Join(root, "index.json"))
	if !bytes.Contains(raw, []byte(`"manifests": []`)) {
		t.Errorf("empty index must have \"manifests\": [], got %s", raw)
	}
	for _, d := range []string{"blobs/sha256", "layers", "tmp", "run"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s missing: %v", d, err)
		}
	}
	for _, f := range []string{"oci-layout", "index.json"} {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v (%v), want 0644", f, fi.Mode().Perm(), err)
		}
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty after Open: %v", ents)
	}

	// Reopening keeps the index.
	desc := putManifest(t, s, "x")
	if err := s.Tag("keep:me", desc); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s2.Lookup("keep:me"); !ok || err != nil {
		t.Errorf("reopen lost the tag: %v %v", ok, err)
	}

	// A root that is a file is an error.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Open(f); err == nil {
		t.Errorf("Open on a regular file succeeded")
	}
}

func TestBlobs(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	data := []byte("hello, blob")
	want := digest.FromBytes(data)

	d, err := s.PutBlob(data)
	if err != nil || d != want {
		t.Fatalf("PutBlob = %s, %v", d, err)
	}
	if s.BlobPath(d) != filepath.Join(s.Root(), "blobs", "sha256", want.Encoded()) {
		t.Errorf("BlobPath = %s", s.BlobPath(d))
	}
	if !s.HasBlob(d) {
		t.Error("HasBlob false after PutBlob")
	}
	got, err := s.ReadBlob(d)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadBlob = %q, %v", got, err)
	}
	if err := s.VerifyBlob(d); err != nil {
		t.Errorf("VerifyBlob: %v", err)
	}
	// idempotent
	if d2, err := s.PutBlob(data); err != nil || d2 != d {
		t.Errorf("second PutBlob = %s, %v", d2, err)
	}

	// WriteBlob without and with an expected digest.
	data2 := bytes.Repeat([]byte("0123456789"), 100000)
	d2, n, err := s.WriteBlob(ctx, bytes.NewReader(data2), "")
	if err != nil || d2 != digest.FromBytes(data2) || n != int64(len(data2)) {
		t.Fatalf("WriteBlob = %s %d %v", d2, n, err)
	}
	if fi, err := os.Stat(s.BlobPath(d2)); err != nil || fi.Size() != int64(len(data2)) {
		t.Errorf("blob file: %v", err)
	}
	d3, n, err := s.WriteBlob(ctx, strings.NewReader("abc"), digest.FromString("abc"))
	if err != nil || d3 != digest.FromString("abc") || n != 3 {
		t.Errorf("WriteBlob(expected) = %s %d %v", d3, n, err)
	}
	// already present: size reported without reading
	d3, n, err = s.WriteBlob(ctx, strings.NewReader(""), digest.FromString("abc"))
	if err != nil || d3 != digest.FromString("abc") || n != 3 {
		t.Errorf("WriteBlob(present) = %s %d %v", d3, n, err)
	}

	// WriteBlob with the wrong digest fails and leaves nothing behind.
	before := dirEntries(t, s.Path("blobs", "sha256"))
	wrong := digest.FromString("something else")
	if _, _, err := s.WriteBlob(ctx, strings.NewReader("payload"), wrong); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("WriteBlob with a wrong digest: %v", err)
	}
	if s.HasBlob(wrong) || s.HasBlob(digest.FromString("payload")) {
		t.Error("a mismatching blob was stored")
	}
	if after := dirEntries(t, s.Path("blobs", "sha256")); len(after) != len(before) {
		t.Errorf("blobs/ changed: %v -> %v", before, after)
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty: %v", ents)
	}

	// A cancelled context stops WriteBlob.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.WriteBlob(cctx, strings.NewReader("cancelled"), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteBlob(cancelled ctx) = %v", err)
	}
	if s.HasBlob(digest.FromString("cancelled")) || len(dirEntries(t, s.Path("tmp"))) != 0 {
		t.Error("cancelled WriteBlob left files")
	}

	// Missing blobs.
	missing := digest.FromString("missing")
	if _, err := s.ReadBlob(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadBlob(missing) = %v", err)
	}
	if _, err := s.OpenBlob(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenBlob(missing) = %v", err)
	}
	if err := s.VerifyBlob(missing); err == nil {
		t.Error("VerifyBlob(missing) = nil")
	}
}

func TestCorruptBlobDetected(t *testing.T) {
	s := openStore(t)
	data := []byte(`{"a":"manifest"}`)
	d, err := s.PutBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	// flip one byte in place
	corrupt := bytes.Clone(data)
	corrupt[3] ^= 0x20
	if err := os.WriteFile(s.BlobPath(d), corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBlob(d); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("ReadBlob of a corrupted blob: %v", err)
	}
	err = s.VerifyBlob(d)
	if err == nil {
		t.Fatal("VerifyBlob of a corrupted blob: nil")
	}
	if !strings.Contains(err.Error(), digest.FromBytes(corrupt).String()) {
		t.Errorf("VerifyBlob error %q does not name the actual hash", err)
	}
	// truncated
	os.WriteFile(s.BlobPath(d), data[:5], 0o644)
	if _, err := s.ReadBlob(d); err == nil {
		t.Error("ReadBlob of a truncated blob: nil")
	}
	if err := s.VerifyBlob(d); err == nil {
		t.Error("VerifyBlob of a truncated blob: nil")
	}
}

func TestBlobWriter(t *testing.T) {
	s := openStore(t)
	content := []byte("layer bytes")

	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content[:5])
	w.Write(content[5:])
	if _, _, err := w.Commit(digest.FromString("not it")); err == nil {
		t.Fatal("Commit with a wrong expected digest succeeded")
	}
	if ents := dirEntries(t, s.Path("blobs", "sha256")); len(ents) != 0 {
		t.Errorf("blobs/ after failed commit: %v", ents)
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ after failed commit: %v", ents)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after failed Commit: %v", err)
	}

	w, err = s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	d, n, err := w.Commit(digest.FromBytes(content))
	if err != nil || d != digest.FromBytes(content) || n != int64(len(content)) {
		t.Fatalf("Commit = %s %d %v", d, n, err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}
	if b, err := s.ReadBlob(d); err != nil || !bytes.Equal(b, content) {
		t.Errorf("committed blob = %q %v", b, err)
	}

	// Commit("") accepts any content
	w, _ = s.NewBlobWriter()
	w.Write([]byte("x"))
	if d, _, err := w.Commit(""); err != nil || d != digest.FromString("x") {
		t.Errorf("Commit(\"\") = %s %v", d, err)
	}

	// Close without Commit discards.
	w, _ = s.NewBlobWriter()
	w.Write([]byte("discard me"))
	if err := w.Close(); err != nil {
		t.Error(err)
	}
	if s.HasBlob(digest.FromString("discard me")) || len(dirEntries(t, s.Path("tmp"))) != 0 {
		t.Error("Close without Commit left the blob")
	}
}

func TestCanonicalAndFamiliarName(t *testing.T) {
	tests := []struct{ in, canon, familiar string }{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
		{"library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"me/app:v1", "docker.io/me/app:v1", "me/app:v1"},
		{"ghcr.io/o/r:t", "ghcr.io/o/r:t", "ghcr.io/o/r:t"},
		{"localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"},
		{"busybox@sha256:" + strings.Repeat("ab", 32), "docker.io/library/busybox@sha256:" + strings.Repeat("ab", 32), "busybox@sha256:" + strings.Repeat("ab", 32)},
	}
	for _, tt := range tests {
		got, err := CanonicalName(tt.in)
		if err != nil || got != tt.canon {
			t.Errorf("CanonicalName(%q) = %q, %v; want %q", tt.in, got, err, tt.canon)
		}
		if f := FamiliarName(got); f != tt.familiar {
			t.Errorf("FamiliarName(%q) = %q, want %q", got, f, tt.familiar)
		}
	}
	for _, bad := range []string{"", "UPPER", "a b", "x:", "busybox@sha256:short"} {
		if got, err := CanonicalName(bad); err == nil {
			t.Errorf("CanonicalName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestTagLookupUntag(t *testing.T) {
	s := openStore(t)
	d1 := putManifest(t, s, "one")
	d2 := putManifest(t, s, "two")

	if err := s.Tag("busybox", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 1}); err == nil {
		t.Error("Tag of a manifest that is not in the store succeeded")
	}
	if err := s.Tag("Not Valid", d1); err == nil {
		t.Error("Tag with an invalid name succeeded")
	}

	if err := s.Tag("busybox", d1); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("ghcr.io/o/app:v2", d2); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("alpine:3", d2); err != nil {
		t.Fatal(err)
	}

	idx := readIndexFile(t, s)
	var names []string
	for _, m := range idx.Manifests {
		names = append(names, m.Annotations[ocispec.AnnotationRefName])
	}
	wantNames := []string{"docker.io/library/alpine:3", "docker.io/library/busybox:latest", "ghcr.io/o/app:v2"}
	if fmt.Sprint(names) != fmt.Sprint(wantNames) {
		t.Errorf("index.json names = %v, want %v", names, wantNames)
	}

	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 {
		t.Fatalf("Images = %+v", imgs)
	}
	for i, im := range imgs {
		if im.Name != wantNames[i] {
			t.Errorf("Images()[%d].Name = %q, want %q (sorted)", i, im.Name, wantNames[i])
		}
		if im.Descriptor.Annotations != nil {
			t.Errorf("Images() descriptor keeps annotations: %v", im.Descriptor.Annotations)
		}
	}
	if imgs[1].Descriptor.Digest != d1.Digest || imgs[1].Descriptor.Size != d1.Size || imgs[1].Descriptor.MediaType != d1.MediaType {
		t.Errorf("busybox descriptor = %+v, want %+v", imgs[1].Descriptor, d1)
	}

	for _, ref := range []string{"busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:latest", "index.docker.io/library/busybox:latest"} {
		im, ok, err := s.Lookup(ref)
		if err != nil || !ok || im.Name != "docker.io/library/busybox:latest" || im.Descriptor.Digest != d1.Digest {
			t.Errorf("Lookup(%q) = %+v %v %v", ref, im, ok, err)
		}
	}
	if _, ok, err := s.Lookup("busybox:1.0"); ok || err != nil {
		t.Errorf("Lookup(busybox:1.0) = %v %v, want not found", ok, err)
	}
	if _, ok, err := s.Lookup("ghcr.io/o/app"); ok || err != nil {
		t.Errorf("Lookup(ghcr.io/o/app) (tag latest) = %v %v, want not found", ok, err)
	}
	if _, _, err := s.Lookup("Bad Name"); err == nil {
		t.Error("Lookup of an invalid name: no error")
	}

	// name@digest
	im, ok, err := s.Lookup("busybox@" + d1.Digest.String())
	if err != nil || !ok || im.Descriptor.Digest != d1.Digest {
		t.Errorf("Lookup(busybox@digest) = %+v %v %v", im, ok, err)
	}
	// an untagged manifest that is in the store is found by digest
	d3 := putManifest(t, s, "three")
	im, ok, err = s.Lookup("example.com/x@" + d3.Digest.String())
	if err != nil || !ok || im.Descriptor.Digest != d3.Digest || im.Descriptor.Size != d3.Size || im.Name != "example.com/x@"+d3.Digest.String() {
		t.Errorf("Lookup(untagged@digest) = %+v %v %v", im, ok, err)
	}
	if _, ok, err := s.Lookup("busybox@" + digest.FromString("nope").String()); ok || err != nil {
		t.Errorf("Lookup(absent digest) = %v %v", ok, err)
	}

	// Re-tagging replaces.
	if err := s.Tag("docker.io/library/busybox:latest", d2); err != nil {
		t.Fatal(err)
	}
	imgs, _ = s.Images()
	if len(imgs) != 3 {
		t.Errorf("re-tag added an entry: %+v", imgs)
	}
	if im, _, _ := s.Lookup("busybox"); im.Descriptor.Digest != d2.Digest {
		t.Errorf("re-tag did not move busybox to %s", d2.Digest)
	}

	// Untag
	found, err := s.Untag("index.docker.io/library/busybox")
	if err != nil || !found {
		t.Errorf("Untag = %v %v", found, err)
	}
	found, err = s.Untag("busybox")
	if err != nil || found {
		t.Errorf("second Untag = %v %v, want false", found, err)
	}
	if _, ok, _ := s.Lookup("busybox"); ok {
		t.Error("busybox still found after Untag")
	}
	if !s.HasBlob(d2.Digest) {
		t.Error("Untag removed the blob")
	}
	if _, err := s.Untag("Bad Name"); err == nil {
		t.Error("Untag(invalid) = nil error")
	}
	imgs, _ = s.Images()
	if len(imgs) != 2 {
		t.Errorf("after Untag: %+v", imgs)
	}
}

func TestConcurrentTag(t *testing.T) {
	s := openStore(t)
	const n = 20
	descs := make([]ocispec.Descriptor, n)
	for i := range descs {
		descs[i] = putManifest(t, s, fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := s.Tag(fmt.Sprintf("img-%02d:v1", i), descs[i]); err != nil {
				errs <- err
			}
			// a second tag per goroutine, and reads in between
			if _, _, err := s.Lookup("img-00:v1"); err != nil {
				errs <- err
			}
			if err := s.Tag(fmt.Sprintf("example.com/img-%02d", i), descs[i]); err != nil {
				errs <- err
			}
			if _, err := s.Images(); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	idx := readIndexFile(t, s)
	if len(idx.Manifests) != 2*n {
		t.Fatalf("index has %d manifests, want %d", len(idx.Manifests), 2*n)
	}
	for i := 0; i < n; i++ {
		for _, ref := range []string{fmt.Sprintf("img-%02d:v1", i), fmt.Sprintf("example.com/img-%02d", i)} {
			im, ok, err := s.Lookup(ref)
			if err != nil || !ok || im.Descriptor.Digest != descs[i].Digest {
				t.Errorf("Lookup(%s) = %+v %v %v", ref, im, ok, err)
			}
		}
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty: %v", ents)
	}
}

// TestLayoutReadableByGGCR stores a random image by hand and reads the store
// back with go-containerregistry's OCI layout reader, which validates it.
func TestLayoutReadableByGGCR(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		dg, _ := l.Digest()
		if _, _, err := s.WriteBlob(ctx, rc, digest.Digest(dg.String())); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	cfg, _ := img.RawConfigFile()
	if _, err := s.PutBlob(cfg); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	md, err := s.PutBlob(raw)
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	if err := s.Tag("example.com/random:1", ocispec.Descriptor{MediaType: string(mt), Digest: md, Size: int64(len(raw))}); err != nil {
		t.Fatal(err)
	}

	p, err := layout.FromPath(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[ocispec.AnnotationRefName] != "example.com/random:1" || im.Manifests[0].Digest.String() != md.String() {
		t.Fatalf("layout index = %+v", im.Manifests)
	}
	h, _ := v1.NewHash(md.String())
	got, err := p.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, err := got.Digest()
	if err != nil || gotDigest.String() != md.String() {
		t.Errorf("layout image digest = %s %v, want %s", gotDigest, err, md)
	}
	gotLayers, err := got.Layers()
	if err != nil || len(gotLayers) != 3 {
		t.Fatalf("layout image layers = %d %v", len(gotLayers), err)
	}
	for i, l := range gotLayers {
		wantD, _ := layers[i].Digest()
		wantDiff, _ := layers[i].DiffID()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if digest.FromBytes(b).String() != wantD.String() {
			t.Errorf("layer %d: compressed content hashes to %s, want %s", i, digest.FromBytes(b), wantD)
		}
		rc, err = l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(rc)
		rc.Close()
		if digest.FromBytes(b).String() != wantDiff.String() {
			t.Errorf("layer %d: uncompressed content hashes to %s, want diffID %s", i, digest.FromBytes(b), wantDiff)
		}
	}
	gotCfg, err := got.RawConfigFile()
	if err != nil || !bytes.Equal(gotCfg, cfg) {
		t.Errorf("config differs: %v", err)
	}
}
