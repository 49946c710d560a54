package e2e

import (
	"os"
	"path/filepath"
	"strings"
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
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": `FROM busybox AS b
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
	if !layersShareInode(store, "g", "f") {
		t.Errorf("no unpacked /g shares its inode with an unpacked /f: the COPY copied instead of linking")
	}
	run := strata(t, store, "run", "--rm", "linked", "cat", "/f", "/changed")
	if got, want := run.Stdout, "original\noriginal\nchanged\n"; got != want {
		t.Errorf("/f and /changed in the image: %q, want %q", got, want)
	}
	strata(t, store, "fsck", "--deep")
}

// TestLinkedCopyThroughOverlay: COPY --from a stage into a stage with
// layers below (an overlay mount) also links the stage's unpacked files:
// they are created empty through the mount, so overlayfs resolves their
// paths and copies up their parents, and linked in the upper directory once
// it is unmounted. The copy must look exactly like a copy: contents, a
// hardlink pair kept as one file, an empty file, the source directory's
// mtime (the link's rename must not change it), a parent that came from a
// lower layer (/bin), a later RUN that changes a linked file without
// touching the stage it came from, and fsck --deep.
func TestLinkedCopyThroughOverlay(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": `FROM busybox AS b
RUN mkdir -p /out/sub && echo one > /out/a && echo two > /out/sub/b && ln /out/a /out/a2 && : > /out/empty \
 && touch -t 200001010000 /out/sub && stat -c %Y /out/sub > /mt

FROM busybox AS s
COPY --from=b /out /usr/local/out
COPY --from=b /out/sub/b /bin/b
RUN echo more >> /bin/b

FROM s
COPY --from=b /mt /mt
COPY --from=b /out/sub/b /orig
`})
	strata(t, store, "build", "-t", "overlaylinked", ctx)
	if !layersShareInode(store, "usr/local/out/sub/b", "out/sub/b") {
		t.Errorf("no unpacked /usr/local/out/sub/b shares its inode with stage b's /out/sub/b: the COPY copied instead of linking")
	}
	run := strata(t, store, "run", "--rm", "overlaylinked", "sh", "-c",
		`cd /usr/local/out && cat a a2 sub/b /bin/b /orig && stat -c %s empty a a2 && [ "$(stat -c %i a)" = "$(stat -c %i a2)" ] && echo same && stat -c %Y sub && cat /mt && ls -a sub`)
	want := "one\none\ntwo\ntwo\nmore\ntwo\n0\n4\n4\nsame\n"
	if !strings.HasPrefix(run.Stdout, want) {
		t.Fatalf("the copied files in the image:\n%s\nwant them to start with:\n%s", run.Stdout, want)
	}
	rest := strings.Fields(strings.TrimPrefix(run.Stdout, want))
	if len(rest) != 5 || rest[0] != rest[1] || strings.Join(rest[2:], " ") != ". .. b" {
		t.Errorf("dir mtime, source mtime and sub's entries: %q (want the two times equal and only b in sub)", rest)
	}
	strata(t, store, "fsck", "--deep")
}

// layersShareInode reports whether a regular file at path a in one of the
// store's unpacked layers is the same inode as a file at path b in one.
func layersShareInode(store, a, b string) bool {
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
	bs := inodes(b)
	for ino := range inodes(a) {
		if bs[ino] {
			return true
		}
	}
	return false
}
