package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// lazyRecords counts the store's cache records whose layer has no blob.
func lazyRecords(t *testing.T, store string) int {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(store, "cache", "keys", "*", "*"))
	n := 0
	for _, p := range recs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Layer *struct {
				Digest string `json:"digest"`
			} `json:"layer"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if r.Layer != nil && r.Layer.Digest == "" {
			n++
		}
	}
	return n
}

var manifestLine = regexp.MustCompile(`\(manifest (sha256:[0-9a-f]{64})\)`)

// TestLazyLayers: the layers of a stage that is not exported (a builder the
// final stage copies from) are committed without a blob. When a later build
// exports that stage (--target builder) or a cache export needs it, the
// blob made then from the unpacked layer is exactly the one an eager
// commit makes: the same manifest as the stage built on a fresh store, and
// a --cache-from of the export reruns nothing. fsck --deep agrees at every
// point.
func TestLazyLayers(t *testing.T) {
	t.Parallel()
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": `FROM busybox AS builder
RUN mkdir -p /cache/sub && for i in 1 2 3; do echo obj$i > /cache/sub/o$i; done && ln /cache/sub/o1 /cache/l1 && echo bin > /out
RUN rm /cache/sub/o2 && echo more > /cache/o4

FROM scratch
COPY --from=builder /out /out
`})
	epoch := runOpts{Env: []string{"SOURCE_DATE_EPOCH=1700000000"}}
	build := func(store string, args ...string) string {
		t.Helper()
		r := suite.MustRun(t, store, epoch, append(append([]string{"build", "--progress", "plain"}, args...), ctx)...)
		m := manifestLine.FindStringSubmatch(r.Stderr)
		if m == nil {
			t.Fatalf("no manifest digest in the output:\n%s", r.Stderr)
		}
		return m[1]
	}

	// Reference: the builder stage built as the target, all layers eager.
	ref := newSameBusyboxStore(t)
	wantBuilder := build(ref, "--target", "builder")
	if n := lazyRecords(t, ref); n != 0 {
		t.Fatalf("--target builder made %d records without blob", n)
	}

	store := newSameBusyboxStore(t)
	out := filepath.Join(suite.TempDir(t), "out")
	build(store, "-t", "final", "-o", "type=local,dest="+out)
	if n := lazyRecords(t, store); n != 2 {
		t.Fatalf("a full build left %d records without blob, want the builder's 2 RUN layers", n)
	}
	strata(t, store, "fsck", "--deep")
	if b, err := os.ReadFile(filepath.Join(out, "out")); err != nil || string(b) != "bin\n" {
		t.Errorf("/out of the final image: %q, %v", b, err)
	}
	r := suite.MustRun(t, store, epoch, "build", "--progress", "plain", "--target", "builder", ctx)
	if n := strings.Count(r.Stderr, "cached without a blob until now"); n != 2 {
		t.Errorf("--target builder after the full build said %d times that it compressed a layer, want 2:\n%s", n, r.Stderr)
	}
	if m := manifestLine.FindStringSubmatch(r.Stderr); m == nil || m[1] != wantBuilder {
		t.Errorf("--target builder after the full build: %v, want the manifest of the builder built alone, %s", m, wantBuilder)
	}
	if n := lazyRecords(t, store); n != 0 {
		t.Errorf("%d records still without blob after their layers were exported", n)
	}
	strata(t, store, "fsck", "--deep")

	// A cache export of a build whose builder layers have no blob yet.
	s2 := newSameBusyboxStore(t)
	wantFinal := build(s2)
	local := filepath.Join(suite.TempDir(t), "cache")
	if got := build(s2, "--cache-to", "type=local,dest="+local+",mode=max"); got != wantFinal {
		t.Fatalf("no-op rebuild with --cache-to: manifest %s, want %s", got, wantFinal)
	}
	s3 := newSameBusyboxStore(t)
	r = suite.MustRun(t, s3, epoch, "build", "--progress", "plain", "--cache-from", "type=local,src="+local, "--target", "builder", ctx)
	if st := stepStatus(t, r.Stderr); countStatus(st, "DONE") != 1 { // FROM busybox
		t.Errorf("--cache-from the export, --target builder: steps ran: %v", st)
	}
	if m := manifestLine.FindStringSubmatch(r.Stderr); m == nil || m[1] != wantBuilder {
		t.Errorf("--cache-from the export, --target builder: %v, want manifest %s", m, wantBuilder)
	}
	strata(t, s3, "fsck", "--deep")
}
