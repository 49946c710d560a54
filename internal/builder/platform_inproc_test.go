package builder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
)

// binfmtDir makes a binfmt_misc directory: with handler (e.g.
// "qemu-aarch64") registered with the F flag, or none.
func binfmtDir(t *testing.T, handler string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "register"), nil, 0o200); err != nil {
		t.Fatal(err)
	}
	if handler != "" {
		if err := os.WriteFile(filepath.Join(dir, handler), []byte("enabled\ninterpreter /usr/bin/qemu\nflags: OCF\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func qemuHandler(p v1.Platform) string {
	if p.Architecture == "arm64" {
		return "qemu-aarch64"
	}
	return "qemu-x86_64"
}

// TestInprocForeignPlatform: --platform for another architecture takes
// the base's image for it from its index, and scratch gets it; the image
// says that platform. A RUN for it needs an emulator registered with
// binfmt_misc: without one the build fails at the RUN's line, saying what
// to register; with one the RUN runs (here the "foreign" image's programs
// are the host's) and its log says it is emulated. A FROM
// --platform=$BUILDPLATFORM stage runs natively and sees the target's
// TARGETARCH.
func TestInprocForeignPlatform(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	_, otherImg, host, other, _ := pushMulti(t, reg)
	otherLayers, err := otherImg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantTop, _ := otherLayers[len(otherLayers)-1].DiffID()
	target := func(o *Options) { o.Platform = other; o.BinfmtDir = binfmtDir(t, "") }

	r := e.mustBuild("FROM busybox:multi\nCOPY f /f\n", map[string]string{"f": "x"}, target)
	if r.img.Config.Architecture != other.Architecture || r.img.Layers[len(r.img.Layers)-2].DiffID.String() != wantTop.String() {
		t.Errorf("FROM busybox:multi for %s: architecture %s, layers %v", platform.Format(other), r.img.Config.Architecture, r.img.Layers)
	}
	if r := e.mustBuild("FROM scratch\nCOPY f /f\n", map[string]string{"f": "x"}, target); r.img.Config.Architecture != other.Architecture {
		t.Errorf("FROM scratch for %s: architecture %s", platform.Format(other), r.img.Config.Architecture)
	}

	// busybox:latest is the host's image alone: used, with BuildKit's warning.
	r = e.mustBuild("FROM busybox\nCOPY f /f\n", map[string]string{"f": "x"}, target)
	if !strings.Contains(strings.Join(r.messages(), "\n"), `was pulled with platform "`+platform.Format(host)+`", expected "`+platform.Format(other)+`"`) {
		t.Errorf("a base of the host's platform alone, for %s: no InvalidBaseImagePlatform warning:\n%s", platform.Format(other), r.log())
	}

	const runDF = "FROM busybox:multi\nRUN echo ran > /ran\n"
	r = e.build(runDF, nil, target)
	if r.err == nil || !strings.Contains(r.err.Error(), "Dockerfile:2") || !strings.Contains(r.err.Error(), qemuHandler(other)+" registered with binfmt_misc") {
		t.Errorf("RUN for %s without an emulator: %v; want an error at Dockerfile:2 naming %s", platform.Format(other), r.err, qemuHandler(other))
	}
	emulated := func(o *Options) { o.Platform = other; o.BinfmtDir = binfmtDir(t, qemuHandler(other)) }
	r = e.mustBuild(runDF, nil, emulated)
	if !strings.Contains(r.log(), "emulated: "+platform.Format(other)+" through "+qemuHandler(other)) {
		t.Errorf("the emulated RUN's log does not say so:\n%s", r.log())
	}
	emulatedSteps := 0
	for _, ev := range r.events {
		if ev.Type == progress.EventDone && ev.Emulated == platform.Format(other) && strings.Contains(ev.Name, "RUN echo ran") {
			emulatedSteps++
		}
	}
	if emulatedSteps != 1 {
		t.Errorf("%d done events of the RUN say it ran emulated for %s, want 1", emulatedSteps, platform.Format(other))
	}

	cross := "FROM --platform=$BUILDPLATFORM busybox:multi AS build\nARG TARGETARCH\nARG BUILDARCH\n" +
		"RUN echo $BUILDARCH-$TARGETARCH > /arch\nFROM scratch\nCOPY --from=build /arch /\n"
	r = e.mustBuild(cross, nil, target) // no emulator: the RUN is the host's
	if r.img.Config.Architecture != other.Architecture {
		t.Errorf("cross build: architecture %s", r.img.Config.Architecture)
	}
	if got, err := os.ReadFile(filepath.Join(e.rootfs(r.img), "arch")); err != nil || string(got) != host.Architecture+"-"+other.Architecture+"\n" {
		t.Errorf("cross build: /arch = %q, %v; want %s-%s", got, err, host.Architecture, other.Architecture)
	}
	if strings.Contains(r.log(), "emulated") {
		t.Errorf("the $BUILDPLATFORM stage was emulated:\n%s", r.log())
	}
}

// TestInprocBuildIndex: several platforms give an image index of their
// images, in the order given, each with its platform's base and its
// TARGETARCH; a $BUILDPLATFORM stage whose inputs do not depend on the
// target runs once (the second platform hits its cache); steps name their
// platform; two cold builds with SOURCE_DATE_EPOCH give the same index.
func TestInprocBuildIndex(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	_, _, host, other, _ := pushMulti(t, reg)
	const df = "FROM --platform=$BUILDPLATFORM busybox:multi AS tools\nRUN echo tool > /tool\n" +
		"FROM --platform=$BUILDPLATFORM busybox:multi AS build\nARG TARGETARCH\nCOPY --from=tools /tool /\nRUN echo $TARGETARCH > /arch\n" +
		"FROM busybox:multi\nCOPY --from=build /arch /tool /\n"
	plats := []v1.Platform{other, host}
	cacheDir := filepath.Join(t.TempDir(), "cache")
	var digests []string
	for round := 0; round < 2; round++ {
		e, idx, events := buildIndex(t, reg, df, plats, func(o *Options) {
			if round == 0 { // one cache export for both platforms
				o.CacheTo = []CacheSpec{{Type: "local", Dir: cacheDir, Mode: "max"}}
			}
		})
		digests = append(digests, idx.Descriptor.Digest.String())
		if len(idx.Images) != 2 {
			t.Fatalf("%d images", len(idx.Images))
		}
		for i, img := range idx.Images {
			if img.Config.Architecture != plats[i].Architecture {
				t.Errorf("image %d: architecture %s, want %s", i, img.Config.Architecture, plats[i].Architecture)
			}
			got, err := os.ReadFile(filepath.Join(e.rootfs(img), "arch"))
			if err != nil || string(got) != plats[i].Architecture+"\n" {
				t.Errorf("image %d: /arch = %q, %v", i, got, err)
			}
		}
		r := buildResult{events: events}
		done, cached := 0, 0
		for _, ev := range events {
			if strings.Contains(ev.Name, "echo tool") {
				switch ev.Type {
				case progress.EventDone:
					done++
				case progress.EventCached:
					cached++
				}
			}
		}
		if done != 1 || cached != 1 {
			t.Errorf("the $BUILDPLATFORM tools stage ran %d times and hit the cache %d times; want 1 and 1\n%s", done, cached, r.log())
		}
		if !strings.Contains(r.log(), "["+platform.Format(other)+" build ") {
			t.Errorf("no step names the platform %s:\n%s", platform.Format(other), r.log())
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two cold builds with SOURCE_DATE_EPOCH: index %s and %s", digests[0], digests[1])
	}

	// The export holds both platforms' records: a fresh store importing
	// it runs no step for either.
	_, _, events := buildIndex(t, reg, df, plats, func(o *Options) { o.CacheFrom = []CacheSpec{{Type: "local", Dir: cacheDir}} })
	r := buildResult{events: events}
	for _, ev := range r.events {
		if ev.Type == progress.EventDone && (strings.Contains(ev.Name, "RUN") || strings.Contains(ev.Name, "COPY")) {
			t.Errorf("step %q ran with both platforms' cache imported\n%s", ev.Name, r.log())
		}
	}
}

// buildIndex builds dockerfile for plats with BuildIndex in a fresh store
// pulling from reg, with SOURCE_DATE_EPOCH set and opt applied, and
// returns the env, the index and the progress events; an error fails t.
func buildIndex(t *testing.T, reg, dockerfile string, plats []v1.Platform, opt func(*Options)) (*inprocEnv, *image.Index, []progress.Event) {
	t.Helper()
	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"Dockerfile": dockerfile})
	pr := progress.New(nil, true)
	pr.Record()
	epoch := time.Unix(1700000000, 0).UTC()
	opts := Options{ContextDir: dir, DockerfilePath: filepath.Join(dir, "Dockerfile"), Progress: pr, SourceDateEpoch: &epoch}
	opt(&opts)
	idx, err := e.b.BuildIndex(context.Background(), opts, plats)
	if err != nil {
		t.Fatalf("BuildIndex: %v", err)
	}
	return e, idx, pr.Events()
}
