package builder

// In-process builds that take work from the previous build of a step: a
// COPY where one file changed links the unchanged files from the previous
// layer and copies the previous blob's unchanged members, and the image is
// the one a build from scratch makes.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// reuseContext writes a context big enough for several members (about
// 6 MB in 300 files).
func reuseContext(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{}
	for i := range 300 {
		var b strings.Builder
		for j := 0; b.Len() < 20<<10; j++ {
			fmt.Fprintf(&b, "file %d line %d %x\n", i, j, uint64(i*7919+j)*0x9E3779B97F4A7C15)
		}
		files[fmt.Sprintf("d%d/f%03d.txt", i%6, i)] = b.String()
	}
	writeContext(t, dir, files)
}

func TestInprocReusePreviousBuild(t *testing.T) {
	t.Parallel()
	epoch := time.Unix(1700000000, 0)
	withEpoch := func(o *Options) { o.SourceDateEpoch = &epoch }
	for _, tc := range []struct{ name, df string }{
		{"scratch", "FROM scratch\nCOPY . /app\n"},
		{"overlay", "FROM busybox\nCOPY . /app\n"}, // through an overlay mount: deferred links
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newInprocEnv(t)
			dir := t.TempDir()
			reuseContext(t, dir)
			first := e.buildDir(dir, tc.df, withEpoch)
			if first.err != nil {
				t.Fatalf("%v\n%s", first.err, first.log())
			}
			f, err := os.OpenFile(filepath.Join(dir, "d3/f153.txt"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("one more line\n")
			f.Close()
			second := e.buildDir(dir, tc.df, withEpoch)
			if second.err != nil {
				t.Fatalf("%v\n%s", second.err, second.log())
			}
			wantCached(t, "one file changed", second, nil, []string{"COPY . /app"})
			l1, l2 := first.img.Layers, second.img.Layers
			old, cur := e.s.LayerDir(l1[len(l1)-1].DiffID), e.s.LayerDir(l2[len(l2)-1].DiffID)
			linked := 0
			for i := range 300 {
				rel := filepath.Join("app", fmt.Sprintf("d%d/f%03d.txt", i%6, i))
				same := inodeOf(t, filepath.Join(old, rel)) == inodeOf(t, filepath.Join(cur, rel))
				if same && i == 153 {
					t.Error("the changed file is the previous layer's")
				}
				if same {
					linked++
				}
			}
			if linked != 299 {
				t.Errorf("%d of the 299 unchanged files linked from the previous layer", linked)
			}
			var m1, m2 layer.Members
			if !e.s.Sidecar(store.SidecarMembers, l1[len(l1)-1].Digest, &m1) || !e.s.Sidecar(store.SidecarMembers, l2[len(l2)-1].Digest, &m2) {
				t.Fatal("no member index for the layers")
			}
			shared := map[string]bool{}
			for _, m := range m1.List {
				shared[m.Sum.String()] = true
			}
			n := 0
			for _, m := range m2.List {
				if shared[m.Sum.String()] {
					n++
				}
			}
			if len(m2.List) < 3 || n < len(m2.List)-2 {
				t.Errorf("%d of %d members shared with the previous blob", n, len(m2.List))
			}
			// the members before the change were taken up with their hash
			// state, which the index records for the next build
			for i, m := range m2.List {
				if len(m.DiffState) == 0 {
					t.Errorf("member %d of the index has no hash state", i)
				}
			}

			// the same context built from nothing gives the same image
			fresh := newInprocEnv(t)
			again := fresh.buildDir(dir, tc.df, withEpoch)
			if again.err != nil {
				t.Fatalf("%v\n%s", again.err, again.log())
			}
			if again.img.Descriptor.Digest != second.img.Descriptor.Digest {
				t.Errorf("image %s after a one-file change, %s from scratch", second.img.Descriptor.Digest, again.img.Descriptor.Digest)
			}
		})
	}
}
