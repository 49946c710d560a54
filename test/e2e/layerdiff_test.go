package e2e

import (
	"archive/tar"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/strata-build/strata/test/internal/testenv"
)

// TestRunLinkToLowerFile: `ln /bin/busybox /x` makes overlayfs copy
// /bin/busybox up before linking it. The layer must hold only the change, as
// BuildKit's differ records it: /x as a plain file, no copy of the unchanged
// /bin/busybox (and no hard link pair). An open for writing that writes
// nothing is not a change either.
func TestRunLinkToLowerFile(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": `FROM busybox
RUN ln /bin/busybox /x && : >> /etc/passwd && chmod 600 /etc/group && chmod 644 /etc/group
`})
	out := filepath.Join(suite.TempDir(t), "img.tar")
	strata(t, store, "build", "-o", "type=oci,dest="+out, ctx)
	img := testenv.ReadOCIArchive(t, out)
	last := img.Layers[len(img.Layers)-1]
	var names []string
	for _, e := range last {
		names = append(names, cleanName(e.Name))
		if e.Typeflag == tar.TypeLink {
			t.Errorf("layer has a hard link %s -> %s", e.Name, e.Linkname)
		}
		if cleanName(e.Name) == "x" && e.Typeflag != tar.TypeReg {
			t.Errorf("/x in the layer has type %c, want a regular file", e.Typeflag)
		}
	}
	if strings.Join(names, " ") != "x" {
		t.Errorf("RUN layer entries %q, want only x", names)
	}
}

// TestHistoryTimesLikeBuildKit: config-only steps before the first new layer
// carry that layer's time, not the base image's; later ones the time of the
// layer before them.
func TestHistoryTimesLikeBuildKit(t *testing.T) {
	t.Parallel()
	store := newSameBusyboxStore(t) // base history dated 2020-01-01
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": `FROM busybox
ENV A=1
LABEL b=2
RUN echo one > /one
ENV C=3
`})
	out := filepath.Join(suite.TempDir(t), "img.tar")
	strata(t, store, "build", "-o", "type=oci,dest="+out, ctx)
	h := testenv.ReadOCIArchive(t, out).Config.History
	if len(h) < 4 {
		t.Fatalf("history has %d entries, want at least 4", len(h))
	}
	h = h[len(h)-4:]
	env, label, run, env2 := h[0], h[1], h[2], h[3]
	if !strings.HasPrefix(run.CreatedBy, "RUN ") || run.EmptyLayer {
		t.Fatalf("third-last history entry is %+v, want the RUN's layer", run)
	}
	if run.Created.Year() < 2026 {
		t.Fatalf("RUN layer created %v: want the build's time", run.Created)
	}
	for _, e := range []v1.History{env, label, env2} {
		if !e.Created.Equal(run.Created.Time) {
			t.Errorf("%q created %v, want the RUN layer's time %v", e.CreatedBy, e.Created, run.Created)
		}
	}
}
