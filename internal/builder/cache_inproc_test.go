package builder

// In-process builds and the build cache: hits on an unchanged rebuild (same
// image), misses when an input changes (a context file, a build arg) and
// everything after them, --no-cache and --no-cache-filter, content keys of
// COPY --from, SOURCE_DATE_EPOCH reproducibility, cache export and import
// (local, registry, inline), layers committed without a blob, compression.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/progress"
)

// wantCached checks which of the steps (by a part of their name) ended as
// cache hits (cached) and which ran.
func wantCached(t *testing.T, what string, r buildResult, cached, ran []string) {
	t.Helper()
	for _, s := range cached {
		if got := r.ended(s); got != progress.EventCached {
			t.Errorf("%s: step %q ended %q, want a cache hit\n%s", what, s, got, r.log())
		}
	}
	for _, s := range ran {
		if got := r.ended(s); got != progress.EventDone {
			t.Errorf("%s: step %q ended %q, want it run\n%s", what, s, got, r.log())
		}
	}
}

func TestInprocCache(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"a.txt": "one\n"})
	const df = `FROM busybox
ARG V=1
RUN echo "v=$V" > /v.txt
COPY a.txt /a.txt
RUN cat /a.txt > /copy-of-a.txt
RUN echo unrelated > /u.txt
`
	steps := []string{"RUN echo \"v=$V\"", "COPY a.txt", "RUN cat /a.txt", "RUN echo unrelated"}
	debug := func(o *Options) { o.DebugCache = true }
	first := e.buildDir(dir, df, debug)
	if first.err != nil {
		t.Fatal(first.err)
	}
	wantCached(t, "first build", first, nil, steps)

	again := e.buildDir(dir, df, debug)
	if again.err != nil {
		t.Fatal(again.err)
	}
	wantCached(t, "unchanged rebuild", again, steps, nil)
	if again.img.Descriptor.Digest != first.img.Descriptor.Digest {
		t.Errorf("an unchanged rebuild gave another image: %s, then %s", first.img.Descriptor.Digest, again.img.Descriptor.Digest)
	}

	// Another content of a.txt: the COPY and every later step run again.
	writeContext(t, dir, map[string]string{"a.txt": "two\n"})
	changed := e.buildDir(dir, df, debug)
	if changed.err != nil {
		t.Fatal(changed.err)
	}
	wantCached(t, "a.txt changed", changed, steps[:1], steps[1:])
	if got := readText(t, e.rootfs(changed.img), "/copy-of-a.txt"); got != "two\n" {
		t.Errorf("/copy-of-a.txt = %q after a.txt changed", got)
	}
	reasons := map[string]string{}
	for _, ev := range changed.events {
		if ev.Type == progress.EventDone {
			reasons[ev.Name] = ev.Reason
		}
	}
	for name, reason := range reasons {
		switch {
		case strings.Contains(name, "COPY a.txt") && !strings.Contains(reason, "changed: source a.txt"):
			t.Errorf("COPY miss reason %q, want the source named", reason)
		case strings.Contains(name, "RUN cat") && reason != "an earlier step or the base image changed":
			t.Errorf("RUN cat miss reason %q", reason)
		}
	}
	if m := strings.Join(changed.messages(), "\n"); !strings.Contains(m, "cache miss [stage-0 3/5]: changed: source a.txt") {
		t.Errorf("--debug-cache printed no explanation of the COPY miss:\n%s", m)
	}

	// A new modification time alone changes nothing.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "a.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	touched := e.buildDir(dir, df)
	if touched.err != nil {
		t.Fatal(touched.err)
	}
	wantCached(t, "a.txt touched", touched, steps, nil)

	// Another value of the build arg: the RUN that sees it and what follows.
	arg := e.buildDir(dir, df, debug, func(o *Options) { o.BuildArgs = map[string]string{"V": "2"} })
	if arg.err != nil {
		t.Fatal(arg.err)
	}
	wantCached(t, "--build-arg V=2", arg, nil, steps)
	for _, ev := range arg.events {
		if ev.Type == progress.EventDone && strings.Contains(ev.Name, "RUN echo \"v=$V\"") && !strings.Contains(ev.Reason, "env") {
			t.Errorf("RUN miss reason %q, want the env named", ev.Reason)
		}
	}

	noCache := e.buildDir(dir, df, func(o *Options) { o.NoCache = true })
	if noCache.err != nil {
		t.Fatal(noCache.err)
	}
	wantCached(t, "--no-cache", noCache, nil, steps)
}

// --no-cache-filter runs the named stage's steps again and what depends on
// them; a COPY --from a stage whose steps changed but whose files did not
// still hits (its key is the content).
func TestInprocCacheStages(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	dir := t.TempDir()
	df := func(cmd string) string {
		return "FROM busybox AS a\nRUN " + cmd + "\nFROM busybox AS b\nRUN echo b > /b\nCOPY --from=a /a /a\nRUN cat /a > /a-copy\n"
	}
	if r := e.buildDir(dir, df("echo a > /a")); r.err != nil {
		t.Fatal(r.err)
	}
	filtered := e.buildDir(dir, df("echo a > /a"), func(o *Options) { o.NoCacheFilter = []string{"b"} })
	if filtered.err != nil {
		t.Fatal(filtered.err)
	}
	wantCached(t, "--no-cache-filter b", filtered, []string{"RUN echo a"}, []string{"RUN echo b", "COPY --from=a", "RUN cat /a"})

	same := e.buildDir(dir, df("echo a > /a && true"))
	if same.err != nil {
		t.Fatal(same.err)
	}
	wantCached(t, "stage a changed, its /a did not", same, []string{"RUN echo b", "COPY --from=a", "RUN cat /a"}, []string{"RUN echo a > /a && true"})
}

// With SOURCE_DATE_EPOCH two builds in fresh stores give the same image:
// every history entry and the image have the epoch's time and file times in
// new layers are clamped to it. The epoch is part of the cache key.
func TestInprocSourceDateEpoch(t *testing.T) {
	t.Parallel()
	epoch := time.Unix(1700000000, 0).UTC()
	const df = "FROM busybox\nCOPY f.txt /f.txt\nRUN echo hi > /hi && mkdir /d\nENV X=1\n"
	withEpoch := func(o *Options) { o.SourceDateEpoch = &epoch }
	var results []buildResult
	var envs []*inprocEnv
	for i := 0; i < 2; i++ {
		e := newInprocEnv(t)
		r := e.mustBuild(df, map[string]string{"f.txt": "f\n"}, withEpoch)
		results, envs = append(results, r), append(envs, e)
	}
	a, b := results[0].img, results[1].img
	if a.Descriptor.Digest != b.Descriptor.Digest {
		t.Errorf("two builds with SOURCE_DATE_EPOCH differ: %s and %s", a.Descriptor.Digest, b.Descriptor.Digest)
	}
	for _, h := range newHistory(t, a) {
		if !h.Created.Time.Equal(epoch) {
			t.Errorf("history %q created %v, want %v", h.CreatedBy, h.Created, epoch)
		}
	}
	if !a.Config.Created.Time.Equal(epoch) {
		t.Errorf("image created %v, want %v", a.Config.Created, epoch)
	}
	for _, l := range newLayers(t, a) {
		for name, ent := range envs[0].layerEntries(l) {
			if ent.hdr.ModTime.After(epoch) {
				t.Errorf("%s in a new layer has time %v, after the epoch", name, ent.hdr.ModTime)
			}
		}
	}
	if ent := envs[0].layerEntries(newLayers(t, a)[0])["f.txt"]; ent.hdr == nil || !ent.hdr.ModTime.Equal(epoch) {
		t.Errorf("f.txt (written now) is not clamped to the epoch: %+v", ent.hdr)
	}
	without := envs[0].mustBuild(df, map[string]string{"f.txt": "f\n"})
	wantCached(t, "the same build without the epoch", without, nil, []string{"COPY f.txt", "RUN echo hi"})
}

// --cache-to type=local exports the records and layers a build used;
// --cache-from type=local in a fresh store makes every step a hit (mode
// max: every stage; mode min: the final image's steps only).
func TestInprocCacheLocal(t *testing.T) {
	t.Parallel()
	const df = `FROM busybox AS builder
RUN echo built > /artifact
FROM busybox
COPY --from=builder /artifact /artifact
RUN cat /artifact > /copy
`
	parse := func(s string) CacheSpec {
		t.Helper()
		c, err := ParseCacheSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, mode := range []string{"max", "min"} {
		t.Run(mode, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "cache")
			src := newInprocEnv(t)
			exported := src.mustBuild(df, nil, func(o *Options) { o.CacheTo = []CacheSpec{parse("type=local,dest=" + dest + ",mode=" + mode)} })
			if m := strings.Join(exported.messages(), "\n"); !strings.Contains(m, "exported cache to "+dest) {
				t.Errorf("no export message:\n%s", m)
			}
			dst := newInprocEnv(t)
			imported := dst.mustBuild(df, nil, func(o *Options) { o.CacheFrom = []CacheSpec{parse("type=local,src=" + dest)} })
			if m := strings.Join(imported.messages(), "\n"); !strings.Contains(m, "importing cache from "+dest) {
				t.Errorf("no import message:\n%s", m)
			}
			final := []string{"COPY --from=builder", "RUN cat /artifact"}
			if mode == "max" {
				wantCached(t, "imported mode=max", imported, append(final, "RUN echo built"), nil)
			} else {
				wantCached(t, "imported mode=min", imported, final, []string{"RUN echo built"})
			}
			if imported.img.Descriptor.Digest != exported.img.Descriptor.Digest {
				t.Errorf("the image built from the imported cache differs: %s, exported %s", imported.img.Descriptor.Digest, exported.img.Descriptor.Digest)
			}
			if got := readText(t, dst.rootfs(imported.img), "/copy"); got != "built\n" {
				t.Errorf("/copy = %q", got)
			}
		})
	}
	missing := newInprocEnv(t).mustBuild(df, nil, func(o *Options) {
		o.CacheFrom = []CacheSpec{{Type: "local", Dir: filepath.Join(t.TempDir(), "none")}}
	})
	if m := strings.Join(missing.messages(), "\n"); !strings.Contains(m, "warning: --cache-from") {
		t.Errorf("a missing cache source gives no warning:\n%s", m)
	}
}

func TestParseCacheSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want CacheSpec
		err  string
	}{
		{"example.com/cache:1", CacheSpec{Type: "registry", Ref: "example.com/cache:1", Mode: "min"}, ""},
		{"type=registry,ref=r/c,mode=max", CacheSpec{Type: "registry", Ref: "r/c", Mode: "max"}, ""},
		{"type=local,dest=/d,oci-mediatypes=true", CacheSpec{Type: "local", Dir: "/d", Mode: "min"}, ""},
		{"type=local,src=/s", CacheSpec{Type: "local", Dir: "/s", Mode: "min"}, ""},
		{"type=inline", CacheSpec{Type: "inline", Mode: "min"}, ""},
		{"type=registry", CacheSpec{}, "needs ref="},
		{"type=local", CacheSpec{}, "needs dest= or src="},
		{"type=gha", CacheSpec{}, "type must be registry, local or inline"},
		{"type=local,dest=/d,mode=all", CacheSpec{}, "mode must be min or max"},
		{"type=local,dest=/d,color=red", CacheSpec{}, `unknown key "color"`},
		{"type=registry,ref=r/c,mode=max,max-size=2GiB,max-age=7d,ignore-error=true",
			CacheSpec{Type: "registry", Ref: "r/c", Mode: "max", Bounds: cache.Bounds{MaxSize: 2 << 30, MaxAge: 7 * 24 * time.Hour}, IgnoreError: true}, ""},
		{"type=registry,ref=r/c,max-age=90m", CacheSpec{Type: "registry", Ref: "r/c", Mode: "min", Bounds: cache.Bounds{MaxAge: 90 * time.Minute}}, ""},
		{"type=registry,ref=r/c,max-size=lots", CacheSpec{}, "max-size=lots is not a size"},
		{"type=registry,ref=r/c,max-age=-1d", CacheSpec{}, "not a duration"},
		{"type=registry,ref=r/c,ignore-error=maybe", CacheSpec{}, "not true or false"},
		{"type=inline,max-size=1GB", CacheSpec{}, "bound a registry or local cache"},
	} {
		got, err := ParseCacheSpec(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

// Layers of a stage the target only copies from are committed without a
// blob; building that stage as the target later makes the blob from the
// unpacked layer.
func TestInprocLazyLayers(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	const df = "FROM busybox AS builder\nRUN echo built > /artifact\nFROM busybox\nCOPY --from=builder /artifact /artifact\n"
	e.mustBuild(df, nil)
	r := e.mustBuild(df, nil, func(o *Options) { o.Target = "builder" })
	wantCached(t, "--target builder", r, []string{"RUN echo built"}, nil)
	if m := strings.Join(r.messages(), "\n"); !strings.Contains(m, "cached without a blob until now") {
		t.Errorf("no blob was made for the lazily committed layer:\n%s", m)
	}
	for _, l := range r.img.Layers {
		if !e.s.HasBlob(l.Digest) {
			t.Errorf("layer %s of the image has no blob", l.Digest)
		}
	}
	if got := e.layerEntries(newLayers(t, r.img)[0])["artifact"].data; got != "built\n" {
		t.Errorf("artifact in the layer: %q", got)
	}
	again := e.mustBuild(df, nil, func(o *Options) { o.Target = "builder" })
	if m := strings.Join(again.messages(), "\n"); strings.Contains(m, "cached without a blob") || again.img.Descriptor.Digest != r.img.Descriptor.Digest {
		t.Errorf("the blob was made again, or another image: %s\n%s", again.img.Descriptor.Digest, m)
	}
}

// --compression picks the layers' media type; every one unpacks.
func TestInprocCompression(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	for _, c := range []layer.Compression{layer.Zstd, layer.Uncompressed, layer.Gzip} {
		r := e.mustBuild("FROM busybox\nRUN echo "+string(c)+" > /c\n", nil, func(o *Options) { o.Compression = c; o.CompressionLevel = 3 })
		l := newLayers(t, r.img)[0]
		if l.MediaType != c.MediaType() {
			t.Errorf("%s: layer media type %s", c, l.MediaType)
		}
		if got := e.layerEntries(l)["c"].data; got != string(c)+"\n" {
			t.Errorf("%s: /c in the layer %q", c, got)
		}
	}
}

// A cancelled build stops its RUN and releases its mounts and container
// (the env checks that none is left).
func TestInprocCancel(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { time.Sleep(1500 * time.Millisecond); cancel() }()
	start := time.Now()
	r := e.buildCtx(ctx, t.TempDir(), "FROM busybox\nRUN sleep 60\n")
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", r.err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the cancelled build took %s", d)
	}
}

// MaxLayerBytes bounds what a committed layer holds; the error says how to
// raise it.
func TestInprocMaxLayerBytes(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	e.b.MaxLayerBytes = 4 << 20 // the base layer (busybox) is about 2 MB
	r := e.build("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1024 count=8192 2>/dev/null\n", nil)
	if r.err == nil || !strings.Contains(r.err.Error(), MaxLayerBytesEnv) || strings.Contains(r.err.Error(), "unpack layer") {
		t.Errorf("err = %v, want the bound of the new layer named", r.err)
	}
	ok := e.build("FROM busybox\nRUN dd if=/dev/zero of=/small bs=1024 count=512 2>/dev/null\n", nil)
	if ok.err != nil {
		t.Errorf("a layer under the bound: %v", ok.err)
	}
}

// The inline cache label is written with --cache-to type=inline.
func TestInprocInlineCacheLabel(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild("FROM busybox\nRUN echo x > /x\n", nil, func(o *Options) { o.CacheTo = []CacheSpec{{Type: "inline", Mode: "min"}} })
	lbl, ok := r.img.Config.Config.Labels[cache.InlineLabel]
	if !ok {
		t.Fatal("no inline cache label")
	}
	exp, err := cache.ParseExport([]byte(lbl))
	if err != nil || len(exp.Records) == 0 {
		t.Errorf("inline cache label: %v, %d records", err, len(exp.Records))
	}
}

// A step that misses but makes the same layer as before (here a RUN whose
// command was rewritten, its output the same under SOURCE_DATE_EPOCH)
// leaves the same filesystem, so the unchanged steps after it still hit;
// a stage that did not change hits whatever another stage did.
func TestInprocHitsAfterAMiss(t *testing.T) {
	t.Parallel()
	epoch := time.Unix(1700000000, 0).UTC()
	const df = `FROM busybox AS tool
RUN echo tool > /tool
FROM busybox
RUN mkdir -p /out && echo fixed > /out/f
RUN cat /out/f > /out/g
COPY --from=tool /tool /out/tool
`
	withEpoch := func(o *Options) { o.SourceDateEpoch = &epoch }
	e := newInprocEnv(t)
	first := e.mustBuild(df, nil, withEpoch)
	rewritten := strings.Replace(df, "/out && echo", "/out; echo", 1)
	second := e.mustBuild(rewritten, nil, withEpoch)
	wantCached(t, "the RUN rewritten", second, []string{"RUN echo tool", "RUN cat /out/f", "COPY --from=tool"}, []string{"RUN mkdir"})
	if first.img.Descriptor.Digest == second.img.Descriptor.Digest {
		t.Errorf("the rewritten RUN is not in the image's history")
	}
	if a, b := newLayers(t, first.img), newLayers(t, second.img); a[len(a)-3].DiffID != b[len(b)-3].DiffID {
		t.Errorf("the rewritten RUN made another layer: %s, %s", a[len(a)-3].DiffID, b[len(b)-3].DiffID)
	}
	// without the epoch the rerun's times differ: the steps after it run
	third := e.mustBuild(strings.Replace(df, "/out && echo", "/out  &&  echo", 1), nil)
	wantCached(t, "the RUN rewritten, no epoch", third, nil, []string{"RUN mkdir", "RUN cat /out/f"})
}
