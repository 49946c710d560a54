package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestWhiteouts checks that deletions survive as OCI whiteouts: a deleted base
// file, and a directory removed and made again (opaque, or whiteouts for each
// old entry), in the layer tars, in containers and in a local export.
func TestWhiteouts(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": `FROM busybox
RUN rm /etc/group
RUN mkdir -p /d/sub && echo a > /d/a
RUN rm -rf /d && mkdir /d && echo b > /d/b
`})
	out := suite.TempDir(t)
	oci := filepath.Join(out, "wh.oci.tar")
	local := filepath.Join(out, "rootfs")
	strata(t, store, "build", "-t", "wh", "--output", "type=oci,dest="+oci, "--output", "type=local,dest="+local, ctx)

	img := testenv.ReadOCIArchive(t, oci)
	if len(img.Layers) != 4 {
		t.Fatalf("want 4 layers (busybox + 3 RUN), got %d", len(img.Layers))
	}
	names := func(i int) []string {
		var n []string
		for _, e := range img.Layers[i] {
			n = append(n, cleanName(e.Name))
		}
		sort.Strings(n)
		return n
	}

	t.Run("LayerTars", func(t *testing.T) {
		if !hasEntry(img.Layers[1], "etc/.wh.group") {
			t.Errorf("layer 2 (RUN rm /etc/group) has no etc/.wh.group whiteout: %q", names(1))
		}
		l3 := img.Layers[3]
		opaque := hasEntry(l3, "d/.wh..wh..opq")
		perFile := hasEntry(l3, "d/.wh.a") && hasEntry(l3, "d/.wh.sub")
		if !opaque && !perFile {
			t.Errorf("layer 4 (RUN rm -rf /d && mkdir /d ...) hides neither the old /d (d/.wh..wh..opq) nor its entries (d/.wh.a, d/.wh.sub): %q", names(3))
		}
		if !hasEntry(l3, "d/b") || hasEntry(l3, "d/a") || hasEntry(l3, "d/sub") {
			t.Errorf("layer 4 must add d/b and must not hold d/a or d/sub: %q", names(3))
		}
		for _, e := range append(img.Layers[1], img.Layers[3]...) {
			if strings.Contains(e.Name, ".wh.") && e.Typeflag != '0' {
				t.Errorf("whiteout %s is tar type %q, want a regular file", e.Name, e.Typeflag)
			}
		}
	})

	// A RUN step's layer holds what the step changed, nothing else: runc's
	// mount points for /etc/hosts and /etc/resolv.conf are not the step's.
	t.Run("RunLayerHoldsOnlyChanges", func(t *testing.T) {
		if got, want := names(2), []string{"d", "d/a", "d/sub"}; !reflect.DeepEqual(got, want) {
			t.Errorf("layer 3 (RUN mkdir -p /d/sub && echo a > /d/a): entries %q, want exactly %q", got, want)
		}
		if got, want := names(1), []string{"etc", "etc/.wh.group"}; !reflect.DeepEqual(got, want) {
			t.Errorf("layer 2 (RUN rm /etc/group): entries %q, want exactly %q", got, want)
		}
	})

	t.Run("Run", func(t *testing.T) {
		r := strata(t, store, "run", "wh", "ls", "-A", "/d")
		if strings.Fields(r.Stdout) == nil || !reflect.DeepEqual(strings.Fields(r.Stdout), []string{"b"}) {
			t.Errorf("ls -A /d in the image: want only b:\n%s", r)
		}
		r = strataRun(t, store, runOpts{}, "run", "wh", "cat", "/etc/group")
		if r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "No such file") {
			t.Errorf("cat /etc/group in the image: want a failure (the file is deleted):\n%s", r)
		}
		r = strata(t, store, "run", "wh", "cat", "/etc/passwd")
		if !strings.HasPrefix(r.Stdout, "root:") {
			t.Errorf("cat /etc/passwd (not deleted) in the image:\n%s", r)
		}
	})

	t.Run("LocalExport", func(t *testing.T) {
		ents, err := os.ReadDir(filepath.Join(local, "d"))
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if err != nil || !reflect.DeepEqual(got, []string{"b"}) {
			t.Errorf("local export: d/ holds %q (err %v), want only b", got, err)
		}
		if b, err := os.ReadFile(filepath.Join(local, "d", "b")); err != nil || string(b) != "b\n" {
			t.Errorf("local export: d/b = %q, %v; want \"b\\n\"", b, err)
		}
		if _, err := os.Lstat(filepath.Join(local, "etc", "group")); !os.IsNotExist(err) {
			t.Errorf("local export: etc/group should not exist (deleted), Lstat err = %v", err)
		}
		if _, err := os.Stat(filepath.Join(local, "bin", "busybox")); err != nil {
			t.Errorf("local export: bin/busybox missing: %v", err)
		}
		filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".wh.") {
				t.Errorf("local export holds a whiteout file %s: whiteouts must be applied, not copied", p)
			}
			return nil
		})
	})
}
