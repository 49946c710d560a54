package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLinkedCopyStaysPrivate: COPY --from a stage into an empty snapshot
// (FROM scratch) hardlinks the stage's unpacked files instead of copying
// them. A later step that changes such a file must change only its own
// layer: the final image, built on the stage the file came from, still has
// the original next to the changed copy, and fsck --deep finds every
// unpacked layer matching its blob.
func TestLinkedCopyStaysPrivate(t *testing.T) {
	t.Parallel()
	store := newBusyboxStore(t)
	ctx := writeFiles(t, map[string]string{"Dockerfile": `FROM busybox AS b
RUN echo original > /f

FROM scratch AS s
COPY --from=b /f /g
COPY --from=b /bin/busybox /bin/busybox

FROM s AS changed
RUN ["/bin/busybox", "sh", "-c", "echo changed >> /g"]

FROM b
COPY --from=changed /g /changed
`})
	strata(t, store, "build", "-t", "linked", ctx)
	// Stage s's COPY layer holds /g as a hardlink to stage b's /f.
	inodes := func(name string) map[uint64]bool {
		m := map[uint64]bool{}
		fs, _ := filepath.Glob(filepath.Join(store, "layers", "*", name))
		for _, f := range fs {
			if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
				m[fi.Sys().(*syscall.Stat_t).Ino] = true
			}
		}
		return m
	}
	linked := false
	for ino := range inodes("g") {
		linked = linked || inodes("f")[ino]
	}
	if !linked {
		t.Errorf("no unpacked /g shares its inode with an unpacked /f: the COPY copied instead of linking")
	}
	run := strata(t, store, "run", "--rm", "linked", "cat", "/f", "/changed")
	if got, want := run.stdout, "original\noriginal\nchanged\n"; got != want {
		t.Errorf("/f and /changed in the image: %q, want %q", got, want)
	}
	strata(t, store, "fsck", "--deep")
}
