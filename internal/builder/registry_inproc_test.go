package builder

// In-process builds against an in-process registry (go-containerregistry's
// pkg/registry on 127.0.0.1, the docker.io mirror of the Builder): pulling
// base images, COPY --from an image that is not in the store, and cache
// export and import through the registry (type=registry, inline).

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/archive"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/sharedcache"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// FROM an image that is not in the store resolves it (once; its layers
// come when the RUN needs them) and tags it; --pull resolves it again;
// ResolveImage finds an image by its ID.
func TestInprocPull(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	const df = "FROM busybox\nRUN echo pulled > /p\n"
	pulls := func(r buildResult) int {
		n := 0
		for _, name := range r.steps(progress.EventDone) {
			if strings.HasPrefix(name, "resolve ") && strings.Contains(name, "busybox") {
				n++
			}
		}
		return n
	}
	first := e.mustBuild(df, nil)
	if pulls(first) != 1 {
		t.Errorf("first build: %d pulls\n%s", pulls(first), first.log())
	}
	if first.img.Layers[0].DiffID != inprocBase.layer.DiffID {
		t.Errorf("the pulled base is not the registry's image")
	}
	im, ok, err := e.s.Lookup("busybox")
	if err != nil || !ok {
		t.Fatalf("busybox is not tagged in the store after the pull: %v", err)
	}
	if second := e.mustBuild(df, nil); pulls(second) != 0 {
		t.Errorf("second build pulled again\n%s", second.log())
	}
	if forced := e.mustBuild(df, nil, func(o *Options) { o.Pull = true }); pulls(forced) != 1 {
		t.Errorf("--pull: %d pulls\n%s", pulls(forced), forced.log())
	}
	id := string(im.Descriptor.Digest)
	if cfg, err := e.s.ImageID(im.Descriptor.Digest); err == nil {
		id = string(cfg)
	}
	byID, err := e.b.ResolveImage(context.Background(), id, false, platform.Host(), nil)
	if err != nil || byID.Descriptor.Digest != im.Descriptor.Digest {
		t.Errorf("ResolveImage(%s): %v, %v", id, byID, err)
	}
	if _, err := e.b.ResolveImage(context.Background(), reg+"/library/nothing:1", false, platform.Host(), nil); err == nil {
		t.Error("resolving an image the registry does not have succeeded")
	}
}

// Options.Pull is "re-resolve base images from their registry": a second
// Build with Pull on the same Builder pulls again (a Builder once
// remembered every pull it made, failures included).
func TestInprocPullTwiceOnOneBuilder(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	e.mustBuild("FROM busybox\n", nil)
	r := e.mustBuild("FROM busybox\n", nil, func(o *Options) { o.Pull = true })
	for _, name := range r.steps(progress.EventDone) {
		if strings.HasPrefix(name, "resolve ") {
			return
		}
	}
	t.Errorf("Pull on a second Build of one Builder did not pull\n%s", r.log())
}

// COPY --from an image that is not in the store streams only the requested
// paths from the registry (a requested symlink's target comes along): the
// image is not pulled into the store.
func TestInprocCopyFromRemoteImage(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	r := e.mustBuild(`FROM scratch
COPY --from=busybox /bin/sh /etc/passwd /out/
COPY --from=busybox /etc/gr* /groups/
`, nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/out/passwd", 0, 0o644, 0, 0, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n")
	wantFile(t, root, "/groups/group", 0, 0o644, 0, 0, "root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")
	sh, ok := statFile(t, root, "/out/sh")
	bb, err := readBusybox()
	if !ok || !sh.mode.IsRegular() || err != nil || sh.data != bb {
		t.Errorf("/out/sh is not busybox, the target of the image's /bin/sh symlink (%v %v)", sh.mode, err)
	}
	if _, ok, _ := e.s.Lookup("busybox"); ok {
		t.Error("COPY --from an image pulled the whole image into the store")
	}
	if got := newHistoryScratch(r.img)[0]; got != "COPY /bin/sh /etc/passwd /out/ # buildkit" {
		t.Errorf("created_by %q", got)
	}
	again := e.mustBuild("FROM scratch\nCOPY --from=busybox /bin/sh /etc/passwd /out/\n", nil)
	if !again.cached("COPY --from=busybox /bin/sh /etc/passwd") {
		t.Errorf("an unchanged COPY --from an image missed the cache\n%s", again.log())
	}
	// Copying the whole image needs it all: it is pulled.
	all := e.mustBuild("FROM scratch\nCOPY --from=busybox / /all/\n", nil)
	wantFile(t, e.rootfs(all.img), "/all/etc/group", 0, 0o644, 0, 0, "root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")
	if _, ok, _ := e.s.Lookup("busybox"); !ok {
		t.Error("COPY --from=busybox / did not pull the image")
	}
}

// COPY --from an image that is not in the store, whose layer strata wrote
// (several members, with an index): the files asked for come through the
// index, the same bytes as in the context they were built from.
func TestInprocCopyFromIndexedImage(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	maker := newBareInprocEnv(t)
	maker.withRegistry(reg)
	files := dataFiles()
	tools := maker.mustBuild("FROM scratch\nCOPY . /data/\n", files).img
	vimg, err := tools.V1(maker.s)
	if err != nil {
		t.Fatal(err)
	}
	c := registry.New(registry.Config{Registries: map[string]registry.Host{reg: {Insecure: true}}})
	if err := c.Push(context.Background(), reg+"/tools/data:1", vimg); err != nil {
		t.Fatal(err)
	}

	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	copyDataThroughIndex(t, e, reg+"/tools/data:1", files)
}

// dataFiles are 400 files of 40 KiB in 16 directories: a layer of several
// members, of which one directory is a small part.
func dataFiles() map[string]string {
	files := map[string]string{}
	for i := range 400 {
		var b strings.Builder
		for j := 0; b.Len() < 40<<10; j++ {
			fmt.Fprintf(&b, "file %d line %d %x\n", i, j, (i+1)*(j+7)*2654435761)
		}
		files[fmt.Sprintf("d%d/f%03d.txt", i%16, i)] = b.String()
	}
	return files
}

// copyDataThroughIndex copies a file and a directory of image, whose
// /data holds files (dataFiles), and checks that they came, through the
// layer's index.
func copyDataThroughIndex(t *testing.T, e *inprocEnv, image string, files map[string]string) {
	t.Helper()
	r := e.mustBuild("FROM scratch\nCOPY --from="+image+" /data/d1/f081.txt /data/d2/ /out/\n", nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/out/f081.txt", 0, 0o644, 0, 0, files["d1/f081.txt"])
	for name, data := range files {
		if strings.HasPrefix(name, "d2/") {
			wantFile(t, root, "/out/"+strings.TrimPrefix(name, "d2/"), 0, 0o644, 0, 0, data)
		}
	}
	if !strings.Contains(r.log(), "through its index") {
		t.Errorf("the layer was not read through its index\n%s", r.log())
	}
}

// COPY --from an image the store holds only as a blob (here one strata
// import made, so its layer has an index) reads the files asked for
// through the index of the store's blob, without unpacking the image or
// asking a registry; a COPY of the whole image unpacks it, offline.
func TestInprocCopyFromImportedImage(t *testing.T) {
	t.Parallel()
	e := newBareInprocEnv(t)
	files := dataFiles()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range slices.Sorted(maps.Keys(files)) { // a directory's files together
		if err := tw.WriteHeader(&tar.Header{Name: "data/" + name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "data.tar")
	if err := os.WriteFile(tarball, tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := archive.Import(context.Background(), e.s, tarball, archive.ImportOptions{Platform: platform.Host(), Name: "example.com/data:1"})
	if err != nil {
		t.Fatal(err)
	}
	diffID := img.Layers[0].DiffID

	copyDataThroughIndex(t, e, "example.com/data:1", files)
	if e.s.HasLayer(diffID) {
		t.Error("copying two paths out of the image unpacked it")
	}
	all := e.mustBuild("FROM scratch\nCOPY --from=example.com/data:1 / /all/\n", nil)
	wantFile(t, e.rootfs(all.img), "/all/data/d3/f003.txt", 0, 0o644, 0, 0, files["d3/f003.txt"])
	if !e.s.HasLayer(diffID) {
		t.Error("COPY --from=IMAGE / did not unpack the image")
	}
}

// COPY --from an image in the store reads its unpacked layers.
func TestInprocCopyFromStoreImage(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	if err := e.s.Tag("example.com/tools:1", e.base.Descriptor); err != nil {
		t.Fatal(err)
	}
	r := e.mustBuild("FROM scratch\nCOPY --from=example.com/tools:1 --chown=1:2 /etc/passwd /bin/sh /t/\n", nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/t/passwd", 0, 0o644, 1, 2, "-")
	if f, ok := statFile(t, root, "/t/sh"); !ok || !f.mode.IsRegular() || f.uid != 1 {
		t.Errorf("/t/sh: %+v", f)
	}
}

// --cache-to type=registry pushes a cache manifest that --cache-from
// type=registry in a fresh store uses; an image built with --cache-to
// type=inline and pushed serves as a cache source too.
func TestInprocCacheRegistry(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	// b's layer holds more than the final image copies from it, so that
	// no layer of b is one of the final image (which has the cache of
	// its own layers inline).
	const df = "FROM busybox AS b\nRUN echo b > /b && echo other > /other\nFROM busybox\nCOPY --from=b /b /b\nRUN cat /b > /c\n"
	steps := []string{"RUN echo b", "COPY --from=b", "RUN cat /b"}

	src := newInprocEnv(t)
	src.withRegistry(reg)
	ref := reg + "/cache/app:buildcache"
	exported := src.mustBuild(df, nil, func(o *Options) {
		o.CacheTo = []CacheSpec{{Type: "registry", Ref: ref, Mode: "max"}, {Type: "inline", Mode: "min"}}
	})
	dst := newInprocEnv(t)
	dst.withRegistry(reg)
	imported := dst.mustBuild(df, nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: ref}} })
	wantCached(t, "--cache-from type=registry", imported, steps, nil)
	if !reflect.DeepEqual(imported.img.Layers, exported.img.Layers) {
		t.Errorf("layers of the image from the registry cache %v, exported %v", imported.img.Layers, exported.img.Layers)
	}

	// The inline cache of the pushed image: its final steps hit.
	vimg, err := exported.img.V1(src.s)
	if err != nil {
		t.Fatal(err)
	}
	app := reg + "/cache/app:latest"
	if err := src.b.Registry.Push(context.Background(), app, vimg); err != nil {
		t.Fatal(err)
	}
	inline := newInprocEnv(t)
	inline.withRegistry(reg)
	fromInline := inline.mustBuild(df, nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: app}} })
	wantCached(t, "--cache-from an image with inline cache", fromInline, []string{"COPY --from=b", "RUN cat /b"}, []string{"RUN echo b"})

	none := newInprocEnv(t)
	none.withRegistry(reg)
	missing := none.mustBuild(df, nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: reg + "/cache/none:1"}} })
	if m := strings.Join(missing.messages(), "\n"); !strings.Contains(m, "warning: --cache-from "+reg+"/cache/none:1") {
		t.Errorf("a missing cache image gives no warning:\n%s", m)
	}
}

// A build that hits records of a registry cache exports them again
// without fetching their layers when it exports to the same repository
// (the registry has them), and fetches them when it exports to another
// registry;
// both exports serve a fresh store.
func TestInprocCacheReexport(t *testing.T) {
	t.Parallel()
	reg, reg2 := startRegistry(t), startRegistry(t)
	const df = "FROM busybox AS b\nRUN echo b > /b && echo other > /other\nFROM busybox\nCOPY --from=b /b /b\nRUN cat /b > /c\n"
	steps := []string{"RUN echo b", "COPY --from=b", "RUN cat /b"}
	a, other := reg+"/cache/a:c", reg2+"/cache/other:c" // go-containerregistry's registry shares blobs between its repositories
	first := newInprocEnv(t)
	first.withRegistry(reg)
	made := first.mustBuild(df, nil, func(o *Options) { o.CacheTo = []CacheSpec{{Type: "registry", Ref: a, Mode: "max"}} })
	inImage := map[digest.Digest]bool{}
	for _, l := range made.img.Layers {
		inImage[l.Digest] = true
	}
	var onlyCached []digest.Digest // b's layer: in the cache, not in the image
	for _, e := range first.entries() {
		if l := e.Record.Layer; l != nil && !inImage[l.Digest] {
			onlyCached = append(onlyCached, l.Digest)
		}
	}
	if len(onlyCached) == 0 {
		t.Fatal("no layer only the cache holds")
	}

	for i, to := range []string{a, other} {
		e := newInprocEnv(t)
		e.withRegistries(reg, reg2)
		r := e.mustBuild(df, nil, func(o *Options) {
			o.CacheFrom = []CacheSpec{{Type: "registry", Ref: a}}
			o.CacheTo = []CacheSpec{{Type: "registry", Ref: to, Mode: "max"}}
		})
		wantCached(t, "from the registry cache", r, steps, nil)
		for _, d := range onlyCached {
			if fetched := e.s.HasBlob(d); fetched != (i == 1) {
				t.Errorf("export to %s: layer %s fetched: %v", to, d, fetched)
			}
		}
		fresh := newInprocEnv(t)
		fresh.withRegistries(reg, reg2)
		got := fresh.mustBuild(df, nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: to}} })
		wantCached(t, "--cache-from "+to, got, steps, nil)
	}
}

// A base image the store lacks is resolved, not pulled: a stage on it
// whose steps all hit the cache never downloads its layers (a fleet
// builder skips the toolchain image of a build stage), and is not named
// in the store; a target on it gets its layers for the image it writes.
func TestInprocLazyBase(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	ref := reg + "/cache/lazy:c"
	const df = "FROM busybox AS b\nRUN echo b > /b && echo x > /x\nFROM scratch\nCOPY --from=b /b /b\n"
	first := newBareInprocEnv(t)
	first.withRegistry(reg)
	first.mustBuild(df, nil, func(o *Options) { o.CacheTo = []CacheSpec{{Type: "registry", Ref: ref, Mode: "max"}} })

	fresh := newBareInprocEnv(t)
	fresh.withRegistry(reg)
	r := fresh.mustBuild(df, nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: ref}} })
	wantCached(t, "from the cache", r, []string{"RUN echo b", "COPY --from=b"}, nil)
	if fresh.s.HasBlob(inprocBase.layer.Digest) {
		t.Errorf("the base layer of a stage whose steps all hit was downloaded\n%s", r.log())
	}
	if _, ok, _ := fresh.s.Lookup("busybox"); ok {
		t.Errorf("busybox is named in the store though it was not pulled")
	}
	// FROM busybox as the target: its layer is in the image
	img := fresh.mustBuild("FROM busybox\nENV A=1\n", nil).img
	if img.Layers[0].Digest != inprocBase.layer.Digest || !fresh.s.HasBlob(inprocBase.layer.Digest) {
		t.Errorf("the target's base layer is not in the store")
	}
	if _, ok, _ := fresh.s.Lookup("busybox"); !ok {
		t.Errorf("busybox is not named in the store once its layers are")
	}
	if rep, err := fresh.s.Fsck(context.Background(), store.FsckOptions{}); err != nil || len(rep.Problems) > 0 {
		t.Errorf("fsck: %v %+v", err, rep)
	}
}

// Two builders ran a step that is not reproducible and went on with
// different steps (two Dockerfiles sharing it): the shared cache holds
// both layers for its key, and a fresh build of either Dockerfile takes
// the layer its next step was built on, whichever layer it tried first.
func TestInprocCacheTwoLayersForAKey(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	ref := reg + "/cache/two:c"
	const shared = "FROM busybox\nRUN head -c 16 /dev/urandom > /random\n"
	dfs := map[string]string{"a": shared + "RUN echo a > /a\n", "b": shared + "RUN echo b > /b\n"}
	made := map[string]*image.Image{}
	for _, n := range []string{"a", "b"} {
		e := newInprocEnv(t)
		e.withRegistry(reg)
		made[n] = e.mustBuild(dfs[n], nil, func(o *Options) { o.CacheTo = []CacheSpec{{Type: "registry", Ref: ref, Mode: "max"}} }).img
	}
	if made["a"].Layers[1].Digest == made["b"].Layers[1].Digest {
		t.Fatal("the random step gave one layer twice")
	}
	for _, n := range []string{"a", "b"} {
		e := newInprocEnv(t)
		e.withRegistry(reg)
		r := e.mustBuild(dfs[n], nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: ref}} })
		wantCached(t, "Dockerfile "+n, r, []string{"RUN head -c 16", "RUN echo " + n}, nil)
		if !reflect.DeepEqual(r.img.Layers, made[n].Layers) {
			t.Errorf("Dockerfile %s from the cache: layers %v, built %v", n, r.img.Layers, made[n].Layers)
		}
	}
}

// As above, for a COPY --from a stage found by its alias (the source
// stage's key): the builders' source stages differ, each alias names one
// layer, and the other layers of the step are found under its content key.
func TestInprocCacheTwoLayersForAnAlias(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	ref := reg + "/cache/alias:c"
	const shared = "FROM busybox AS t\nRUN head -c 8 /dev/urandom > /junk && echo fixed > /f\nFROM busybox\nCOPY --from=t /f /out/f\n"
	dfs := map[string]string{"a": shared + "RUN echo a > /a\n", "b": shared + "RUN echo b > /b\n"}
	made := map[string]*image.Image{}
	for i, n := range []string{"a", "b"} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // /out's time differs: another layer for the COPY
		}
		e := newInprocEnv(t)
		e.withRegistry(reg)
		made[n] = e.mustBuild(dfs[n], nil, func(o *Options) { o.CacheTo = []CacheSpec{{Type: "registry", Ref: ref, Mode: "max"}} }).img
	}
	if made["a"].Layers[1].Digest == made["b"].Layers[1].Digest {
		t.Fatal("the COPY gave one layer twice")
	}
	for _, n := range []string{"a", "b"} {
		e := newInprocEnv(t)
		e.withRegistry(reg)
		r := e.mustBuild(dfs[n], nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: ref}} })
		wantCached(t, "Dockerfile "+n, r, []string{"RUN head -c 8", "COPY --from=t", "RUN echo " + n}, nil)
		if !reflect.DeepEqual(r.img.Layers, made[n].Layers) {
			t.Errorf("Dockerfile %s from the cache: layers %v, built %v", n, r.img.Layers, made[n].Layers)
		}
	}
}

// A source stage whose last step has two layers in the shared cache (two
// builders ran it): a COPY --from it that was recorded from the other
// layer is found by its alias there, without the stage's files.
func TestInprocCacheCopyFromAStageWithTwoLayers(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	ref := reg + "/cache/from:c"
	const src = "FROM busybox AS b\nRUN head -c 8 /dev/urandom > /junk && echo fixed > /f\nFROM busybox\n"
	dfs := map[string]string{"a": src + "COPY --from=b /f /f\nRUN echo a > /a\n", "b": src + "COPY --from=b /f /g\n"}
	for _, n := range []string{"a", "b"} {
		e := newInprocEnv(t)
		e.withRegistry(reg)
		e.mustBuild(dfs[n], nil, func(o *Options) { o.CacheTo = []CacheSpec{{Type: "registry", Ref: ref, Mode: "max"}} })
	}
	byKey := map[cache.Key][]digest.Digest{}
	for _, e := range readCacheRecords(t, reg, ref) {
		if l := e.Record.Layer; l != nil {
			byKey[e.Key] = append(byKey[e.Key], l.Digest)
		}
	}
	var stageLayers []digest.Digest // the two layers of b's RUN: its key's
	for _, ds := range byKey {
		if len(ds) == 2 {
			stageLayers = append(stageLayers, ds...)
		}
	}
	if len(stageLayers) != 2 {
		t.Fatalf("want one key with two layers, have %v", byKey)
	}
	for _, n := range []string{"a", "b"} {
		e := newInprocEnv(t)
		e.withRegistry(reg)
		r := e.mustBuild(dfs[n], nil, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "registry", Ref: ref}} })
		wantCached(t, "Dockerfile "+n, r, []string{"RUN head -c 8", "COPY --from=b"}, nil)
		for _, d := range stageLayers {
			if e.s.HasBlob(d) && !slices.ContainsFunc(r.img.Layers, func(l image.Layer) bool { return l.Digest == d }) {
				t.Errorf("Dockerfile %s: the layer %s of stage b was fetched, though nothing needed its files\n%s", n, d, r.log())
			}
		}
	}
}

// readCacheRecords returns the records an import of ref sees.
func readCacheRecords(t *testing.T, reg, ref string) []cache.Exported {
	t.Helper()
	rc := registry.New(registry.Config{Registries: map[string]registry.Host{reg: {Insecure: true}}})
	imgs, err := sharedcache.Read(context.Background(), rc, ref)
	if err != nil {
		t.Fatal(err)
	}
	var out []cache.Exported
	for _, img := range imgs {
		exp, err := sharedcache.ExportOf(img)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, exp.Records...)
	}
	return out
}
