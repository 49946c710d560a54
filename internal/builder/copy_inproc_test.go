package builder

// In-process builds of COPY and ADD: destinations, owners and modes,
// symlinks, wildcards, --parents, --exclude, --link, .dockerignore, local
// archives, URLs and git repositories. Expected files are BuildKit's: the
// conformance kit's expected.json files and BuildKit's own integration
// tests (frontend/dockerfile/*_test.go, docs/reference.md).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Destination rules, implicit parents and wildcards (the conformance
// kit's copy-dir-and-dest-slash-rules, copy-implicit-parent-dirs and
// copy-wildcards-with-empty-match).
func TestInprocCopyDestinations(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
RUN mkdir /existing
COPY src /noslash
COPY src/ /withslash/
COPY one.txt /renamed.txt
COPY one.txt /newdir/
COPY one.txt /existing
COPY one.txt two.txt /multi/
COPY src/sub/inner.txt src/top.txt /multi/
COPY p.txt /a/b/c/p.txt
COPY --chown=app p.txt /owned/x/y/
COPY --chmod=0640 p.txt /moded/m/p.txt
COPY p.txt /home/app/new/sub/p.txt
COPY data?.csv /csv/
COPY nomatch-*.cfg conf/*.ini /conf/
WORKDIR /rel
COPY one.txt .
COPY one.txt sub/
`, map[string]string{
		"one.txt": "one\n", "two.txt": "two\n", "src/top.txt": "top\n", "src/sub/inner.txt": "inner\n", "p.txt": "p\n",
		"data1.csv": "1\n", "data2.csv": "2\n", "data10.csv": "10\n", "conf/app.ini": "app\n", "conf/db.ini": "db\n",
	})
	root := e.rootfs(r.img)
	files := []struct {
		path     string
		dir      bool
		perm     os.FileMode
		uid, gid int
		data     string
	}{
		{"/noslash", true, 0o755, 0, 0, ""},
		{"/noslash/top.txt", false, 0o644, 0, 0, "top\n"},
		{"/noslash/sub/inner.txt", false, 0o644, 0, 0, "inner\n"},
		{"/withslash/top.txt", false, 0o644, 0, 0, "top\n"},
		{"/withslash/sub/inner.txt", false, 0o644, 0, 0, "inner\n"},
		{"/renamed.txt", false, 0o644, 0, 0, "one\n"},
		{"/newdir/one.txt", false, 0o644, 0, 0, "one\n"},
		{"/existing/one.txt", false, 0o644, 0, 0, "one\n"},
		{"/multi/one.txt", false, 0o644, 0, 0, "one\n"},
		{"/multi/two.txt", false, 0o644, 0, 0, "two\n"},
		{"/multi/inner.txt", false, 0o644, 0, 0, "inner\n"},
		{"/multi/top.txt", false, 0o644, 0, 0, "top\n"},
		{"/a/b", true, 0o755, 0, 0, ""},
		{"/a/b/c/p.txt", false, 0o644, 0, 0, "p\n"},
		{"/owned", true, 0o755, 1000, 1000, ""},
		{"/owned/x/y", true, 0o755, 1000, 1000, ""},
		{"/owned/x/y/p.txt", false, 0o644, 1000, 1000, "p\n"},
		{"/moded", true, 0o640, 0, 0, ""}, // BuildKit gives the new parents the --chmod mode
		{"/moded/m/p.txt", false, 0o640, 0, 0, "p\n"},
		{"/home/app", true, 0o755, 1000, 1000, ""}, // an existing parent keeps its owner
		{"/home/app/new/sub/p.txt", false, 0o644, 0, 0, "p\n"},
		{"/csv/data1.csv", false, 0o644, 0, 0, "1\n"},
		{"/csv/data2.csv", false, 0o644, 0, 0, "2\n"},
		{"/conf/app.ini", false, 0o644, 0, 0, "app\n"},
		{"/conf/db.ini", false, 0o644, 0, 0, "db\n"},
		{"/rel/one.txt", false, 0o644, 0, 0, "one\n"},
		{"/rel/sub/one.txt", false, 0o644, 0, 0, "one\n"},
	}
	for _, f := range files {
		typ, data := os.FileMode(0), f.data
		if f.dir {
			typ, data = os.ModeDir, "-"
		}
		wantFile(t, root, f.path, typ, f.perm, f.uid, f.gid, data)
	}
	for _, p := range []string{"/csv/data10.csv", "/noslash/src", "/withslash/src"} {
		if _, ok := statFile(t, root, p); ok {
			t.Errorf("%s should not exist", p)
		}
	}
	hist := newHistory(t, r.img)
	if got, want := hist[1].CreatedBy, "COPY src /noslash # buildkit"; got != want {
		t.Errorf("created_by %q, want %q", got, want)
	}
	if got, want := hist[9].CreatedBy, "COPY --chown=app p.txt /owned/x/y/ # buildkit"; got != want {
		t.Errorf("created_by %q, want %q", got, want)
	}
}

// --chown by names and numbers, --chmod octal and symbolic (the
// conformance kit's copy-chown-chmod).
func TestInprocCopyChownChmod(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"file.txt": "f\n", "tree/t.txt": "t\n", "tree/sub/s.txt": "s\n"})
	writeContextFile(t, dir, "entry.sh", ctxFile{data: "#!/bin/sh\necho hi\n", mode: 0o755})
	r := e.buildDir(dir, `FROM busybox
RUN mkdir /dst
COPY --chown=app:app file.txt /dst/by-names.txt
COPY --chown=1001:1002 file.txt /dst/by-numbers.txt
COPY --chown=nobody file.txt /dst/by-user-only.txt
COPY --chmod=0640 file.txt /dst/chmod-0640.txt
COPY --chmod=600 --chown=app entry.sh /dst/entry-600.sh
COPY entry.sh /dst/entry-keeps-x.sh
COPY --chown=1001:app --chmod=0750 tree /dst/tree
COPY --chmod=u=rwx,go=rx file.txt /dst/symbolic.txt
`)
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.log())
	}
	root := e.rootfs(r.img)
	for _, f := range []struct {
		path     string
		dir      bool
		perm     os.FileMode
		uid, gid int
	}{
		{"/dst/by-names.txt", false, 0o644, 1000, 1000},
		{"/dst/by-numbers.txt", false, 0o644, 1001, 1002},
		{"/dst/by-user-only.txt", false, 0o644, 65534, 65534},
		{"/dst/chmod-0640.txt", false, 0o640, 0, 0},
		{"/dst/entry-600.sh", false, 0o600, 1000, 1000},
		{"/dst/entry-keeps-x.sh", false, 0o755, 0, 0},
		{"/dst/tree", true, 0o750, 1001, 1000},
		{"/dst/tree/sub", true, 0o750, 1001, 1000},
		{"/dst/tree/sub/s.txt", false, 0o750, 1001, 1000},
		{"/dst/tree/t.txt", false, 0o750, 1001, 1000},
		{"/dst/symbolic.txt", false, 0o755, 0, 0},
	} {
		typ := os.FileMode(0)
		if f.dir {
			typ = os.ModeDir
		}
		wantFile(t, root, f.path, typ, f.perm, f.uid, f.gid, "-")
	}
	bad := e.build("FROM busybox\nCOPY --chmod=99999 f /f\n", map[string]string{"f": "x"})
	if bad.err == nil || !strings.Contains(bad.err.Error(), "invalid chmod parameter") || !strings.Contains(bad.err.Error(), "Dockerfile:2") {
		t.Errorf("--chmod=99999: %v", bad.err)
	}
}

// Source symlinks are followed at the top and kept inside directories; the
// destination resolves through symlinks of the image (the conformance
// kit's copy-symlinks-and-symlinked-dest).
func TestInprocCopySymlinks(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"target.txt": "target\n", "tree/sub/deep.txt": "deep\n"})
	for link, to := range map[string]string{"link-to-file": "target.txt", "link-to-link": "link-to-file", "tree/sub-link": "sub/deep.txt", "tree/dangling": "missing", "tree/up-link": "../target.txt"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	r := e.buildDir(dir, `FROM busybox
COPY link-to-file /top-file
COPY link-to-link /top-chain
COPY tree /tree
COPY tree/sub-link /deref-in-dir
RUN mkdir -p /opt/real && ln -s /opt/real /opt/link && ln -s real /opt/rel
COPY target.txt /opt/link/
COPY tree/sub /opt/rel/sub-copy
COPY target.txt /opt/rel/new/made.txt
`)
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.log())
	}
	root := e.rootfs(r.img)
	wantFile(t, root, "/top-file", 0, 0o644, 0, 0, "target\n")
	wantFile(t, root, "/top-chain", 0, 0o644, 0, 0, "target\n")
	wantFile(t, root, "/deref-in-dir", 0, 0o644, 0, 0, "deep\n")
	wantFile(t, root, "/tree/sub-link", os.ModeSymlink, 0o777, 0, 0, "sub/deep.txt")
	wantFile(t, root, "/tree/dangling", os.ModeSymlink, 0o777, 0, 0, "missing")
	wantFile(t, root, "/tree/up-link", os.ModeSymlink, 0o777, 0, 0, "../target.txt")
	wantFile(t, root, "/opt/link", os.ModeSymlink, 0o777, 0, 0, "/opt/real")
	wantFile(t, root, "/opt/rel", os.ModeSymlink, 0o777, 0, 0, "real")
	wantFile(t, root, "/opt/real/target.txt", 0, 0o644, 0, 0, "target\n")
	wantFile(t, root, "/opt/real/sub-copy/deep.txt", 0, 0o644, 0, 0, "deep\n")
	wantFile(t, root, "/opt/real/new/made.txt", 0, 0o644, 0, 0, "target\n")
}

// --parents keeps the source's parent directories, from a "/./" pivot on
// (the examples of docs/reference.md).
func TestInprocCopyParents(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM scratch
COPY ./x/a.txt ./y/a.txt /no_parents/
COPY --parents ./x/a.txt ./y/a.txt /parents/
COPY --parents ./x/./y/*.txt /pivot/
COPY --parents ./src/**/*.txt /deep/
`, map[string]string{
		"x/a.txt": "xa", "y/a.txt": "ya", "x/y/a.txt": "xya", "x/y/b.txt": "xyb",
		"src/a.txt": "sa", "src/x/b.txt": "sxb", "src/x/y/c.txt": "sxyc", "src/x/y/d.md": "md",
	})
	root := e.rootfs(r.img)
	for p, data := range map[string]string{
		"/no_parents/a.txt": "ya", // the later source wins
		"/parents/x/a.txt":  "xa", "/parents/y/a.txt": "ya",
		"/pivot/y/a.txt": "xya", "/pivot/y/b.txt": "xyb",
		"/deep/src/a.txt": "sa", "/deep/src/x/b.txt": "sxb", "/deep/src/x/y/c.txt": "sxyc",
	} {
		wantFile(t, root, p, 0, 0o644, 0, 0, data)
	}
	for _, p := range []string{"/deep/src/x/y/d.md", "/pivot/x", "/no_parents/x"} {
		if _, ok := statFile(t, root, p); ok {
			t.Errorf("%s should not exist", p)
		}
	}
	if got := r.img.Config.History[1].CreatedBy; got != "COPY --parents ./x/a.txt ./y/a.txt /parents/ # buildkit" {
		t.Errorf("created_by %q", got)
	}
}

// --exclude leaves files out of COPY and ADD: the tree, Dockerfile and
// expectations of BuildKit's testExcludedFilesOnCopy (builders 1, 2, 3, 5).
func TestInprocCopyExclude(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{
		"dir1/file-101.png": "2", "dir1/file-102.txt": "3", "dir1/file-103.jpeg": "4",
		"dir2/file-201.pdf": "6", "dir2/file-202.jpeg": "7", "dir2/file-203.png": "8",
		"dir3/file-301.mp3": "9", "dir3/file-302.mpeg": "10", "dir4/file-401.txt": "11",
	})
	for link, to := range map[string]string{"dir4/file-402.txt": "file-401.txt", "dir4/file-403.txt": "file-404.txt"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	r := e.buildDir(dir, `FROM scratch
COPY --exclude=*/*.png --exclude=*/*.jpeg . /1
COPY --exclude=*/*.pdf --exclude=*/*.txt . /2
COPY --exclude=*.mp3 dir3/ /3/
ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5/
`)
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.log())
	}
	root := e.rootfs(r.img)
	for _, tc := range []struct {
		path     string
		excluded bool
		content  string // for a symlink, its target
	}{
		{"/1/dir1/file-101.png", true, ""},
		{"/1/dir1/file-102.txt", false, "3"},
		{"/1/dir1/file-103.jpeg", true, ""},
		{"/1/dir2/file-201.pdf", false, "6"},
		{"/1/dir2/file-202.jpeg", true, ""},
		{"/1/dir2/file-203.png", true, ""},
		{"/1/dir3/file-301.mp3", false, "9"},
		{"/1/dir3/file-302.mpeg", false, "10"},
		{"/1/dir4/file-401.txt", false, "11"},
		{"/1/dir4/file-402.txt", false, "file-401.txt"},
		{"/1/dir4/file-403.txt", false, "file-404.txt"},
		{"/2/dir1/file-101.png", false, "2"},
		{"/2/dir1/file-102.txt", true, ""},
		{"/2/dir2/file-201.pdf", true, ""},
		{"/2/dir2/file-203.png", false, "8"},
		{"/2/dir4/file-401.txt", true, ""},
		{"/2/dir4/file-402.txt", true, ""},
		{"/3/file-301.mp3", true, ""},
		{"/3/file-302.mpeg", false, "10"},
		{"/5/file-101.png", true, ""},
		{"/5/file-102.txt", false, "3"},
		{"/5/file-201.pdf", true, ""},
		{"/5/file-302.mpeg", true, ""},
		{"/5/file-401.txt", false, "11"},
		{"/5/file-402.txt", false, "file-401.txt"},
		{"/5/file-403.txt", false, "file-404.txt"},
	} {
		f, ok := statFile(t, root, tc.path)
		switch {
		case tc.excluded && ok:
			t.Errorf("%s should be excluded", tc.path)
		case !tc.excluded && !ok:
			t.Errorf("%s is missing", tc.path)
		case !tc.excluded && f.data != tc.content:
			t.Errorf("%s: %q, want %q", tc.path, f.data, tc.content)
		}
	}
}

// A wildcard source that matches several directories copies all their
// contents into a destination without a trailing slash: BuildKit's
// testExcludedFilesOnCopy builds "ADD ... dir* /5" and expects
// /5/file-102.txt. fsutil's copy has no check on the destination (strata
// refused this with the classic builder's error until it was found here).
func TestInprocCopyWildcardDirsIntoDest(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild("FROM scratch\nADD dir* /5\n", map[string]string{"dir1/a": "a", "dir2/b": "b"})
	root := e.rootfs(r.img)
	wantFile(t, root, "/5/a", 0, 0o644, 0, 0, "a")
	wantFile(t, root, "/5/b", 0, 0o644, 0, 0, "b")
}

// COPY --link makes its layer from an empty tree: a symlink on the
// destination path of the stage is not followed, and the layer holds only
// the copied files and their parents.
func TestInprocCopyLink(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
RUN mkdir /opt && ln -s /opt /target
COPY --link --chown=1000:1000 f.txt /target/linked.txt
COPY f.txt /target/plain.txt
`, map[string]string{"f.txt": "f\n"})
	layers := newLayers(t, r.img)
	if len(layers) != 3 {
		t.Fatalf("%d new layers, want 3", len(layers))
	}
	link := e.layerEntries(layers[1])
	if got := strings.Join(entryNames(link), " "); got != "target target/linked.txt" {
		t.Errorf("the --link layer holds %q, want only target/ and target/linked.txt", got)
	}
	// The parent it creates gets the --chown owner, as the parents any COPY
	// creates do (the conformance kit's copy-implicit-parent-dirs).
	if h := link["target"].hdr; h == nil || h.Typeflag != tar.TypeDir || h.Mode&0o7777 != 0o755 || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("target in the --link layer: %+v", h)
	}
	if h := link["target/linked.txt"].hdr; h == nil || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("target/linked.txt in the --link layer: %+v", h)
	}
	// Merged with the layers below, /target is now a directory (the
	// symlink is replaced, as docs/reference.md says), and the plain COPY
	// after it writes into it.
	root := e.rootfs(r.img)
	wantFile(t, root, "/target", os.ModeDir, 0o755, 1000, 1000, "-")
	wantFile(t, root, "/target/linked.txt", 0, 0o644, 1000, 1000, "f\n")
	wantFile(t, root, "/target/plain.txt", 0, 0o644, 0, 0, "f\n")
	if _, ok := statFile(t, root, "/opt/linked.txt"); ok {
		t.Error("COPY --link followed the symlink of the stage")
	}
	bad := e.build("FROM busybox\nCOPY --link --chown=app f.txt /f\n", map[string]string{"f.txt": "f"})
	if bad.err == nil || !strings.Contains(bad.err.Error(), "use numeric uid[:gid]") {
		t.Errorf("--link with a --chown name: %v", bad.err)
	}
}

// .dockerignore rules with an exception (the conformance kit's
// dockerignore-exclusions-and-exception); an excluded source is reported as
// excluded, with the rule's line.
func TestInprocDockerignore(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	files := map[string]string{
		".dockerignore":          "# logs anywhere under ctx are left out, except keep.log\nctx/**/*.log\n!ctx/keep.log\nctx/secret\n**/*.tmp\n",
		"ctx/app.txt":            "app\n",
		"ctx/keep.log":           "k\n",
		"ctx/logs/debug.log":     "debug\n",
		"ctx/secret/key.pem":     "key\n",
		"ctx/src/cache.tmp":      "tmp\n",
		"ctx/src/deep/trace.log": "trace\n",
		"ctx/src/deep/util.go":   "u\n",
		"ctx/src/main.go":        "main\n",
	}
	r := e.mustBuild("FROM busybox\nCOPY ctx /ctx\nRUN --mount=type=bind,target=/c find /c/ctx | sort > /bind-view.txt\n", files)
	root := e.rootfs(r.img)
	for _, p := range []string{"/ctx/app.txt", "/ctx/keep.log", "/ctx/src/deep/util.go", "/ctx/src/main.go"} {
		if _, ok := statFile(t, root, p); !ok {
			t.Errorf("%s is missing", p)
		}
	}
	wantFile(t, root, "/ctx/logs", os.ModeDir, 0o755, 0, 0, "-")
	for _, p := range []string{"/ctx/logs/debug.log", "/ctx/secret", "/ctx/src/cache.tmp", "/ctx/src/deep/trace.log"} {
		if _, ok := statFile(t, root, p); ok {
			t.Errorf("%s is excluded by .dockerignore but was copied", p)
		}
	}
	// RUN --mount=type=bind of the context sees the same filtered tree.
	want := "/c/ctx\n/c/ctx/app.txt\n/c/ctx/keep.log\n/c/ctx/logs\n/c/ctx/src\n/c/ctx/src/deep\n/c/ctx/src/deep/util.go\n/c/ctx/src/main.go\n"
	if got := readText(t, root, "/bind-view.txt"); got != want {
		t.Errorf("the context as a bind mount shows:\n%s\nwant:\n%s", got, want)
	}
	bad := e.build("FROM busybox\nCOPY ctx/secret/key.pem /k\n", files)
	if bad.err == nil || !strings.Contains(bad.err.Error(), "excluded by .dockerignore line 4") || !strings.Contains(bad.err.Error(), "Dockerfile:2") {
		t.Errorf("copying an excluded file: %v", bad.err)
	}
}

// archiveEntry is an entry of a test archive.
type archiveEntry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	data       string
}

func makeArchive(t testing.TB, gz bool, files []archiveEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if gz {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Linkname: f.link, Typeflag: f.typ, Mode: f.mode, Uid: f.uid, Gid: f.gid, Size: int64(len(f.data)), ModTime: baseEpoch}
		if f.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if f.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(f.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// ADD extracts local tar archives (plain or compressed, detected by content)
// keeping their owners, modes, symlinks and hard links, unless
// --unpack=false; other files are copied (the conformance kit's
// add-local-tar-targz-and-file).
func TestInprocAddLocal(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	pkg := makeArchive(t, false, []archiveEntry{
		{name: "pkg/", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		{name: "pkg/bin/", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		{name: "pkg/bin/tool", typ: tar.TypeReg, mode: 0o755, uid: 1000, gid: 1000, data: "#!/bin/sh\necho tool\n"},
		{name: "pkg/bin/tool-hardlink", typ: tar.TypeLink, link: "pkg/bin/tool", mode: 0o755, uid: 1000, gid: 1000},
		{name: "pkg/bin/conf-link", typ: tar.TypeSymlink, link: "../etc/secret.conf", mode: 0o777, uid: 1000, gid: 1000},
		{name: "pkg/etc/", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1000},
		{name: "pkg/etc/secret.conf", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, data: "secret\n"},
	})
	share := makeArchive(t, true, []archiveEntry{
		{name: "share/", typ: tar.TypeDir, mode: 0o755},
		{name: "share/doc/README", typ: tar.TypeReg, mode: 0o644, data: "readme\n"},
		{name: "share/lib.so", typ: tar.TypeReg, mode: 0o755, data: "elf\n"},
	})
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"pkg.tar": string(pkg), "share.tar.gz": string(share), "notes.txt": "notes\n", "fake.tar.gz": ""})
	r := e.buildDir(dir, `FROM busybox
ADD pkg.tar /opt/
ADD share.tar.gz /usr/local
ADD notes.txt /docs/
ADD --chown=app:app --chmod=0600 notes.txt /home/app/notes.txt
ADD --unpack=false pkg.tar /packed/
ADD fake.tar.gz /fake/
`)
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.log())
	}
	root := e.rootfs(r.img)
	wantFile(t, root, "/opt", os.ModeDir, 0o755, 0, 0, "-")
	wantFile(t, root, "/opt/pkg", os.ModeDir, 0o755, 1000, 1000, "-")
	wantFile(t, root, "/opt/pkg/bin/tool", 0, 0o755, 1000, 1000, "#!/bin/sh\necho tool\n")
	wantFile(t, root, "/opt/pkg/bin/conf-link", os.ModeSymlink, 0o777, 1000, 1000, "../etc/secret.conf")
	wantFile(t, root, "/opt/pkg/etc", os.ModeDir, 0o750, 1000, 1000, "-")
	wantFile(t, root, "/opt/pkg/etc/secret.conf", 0, 0o600, 1000, 1000, "secret\n")
	if inodeOf(t, root+"/opt/pkg/bin/tool") != inodeOf(t, root+"/opt/pkg/bin/tool-hardlink") {
		t.Error("the archive's hard link is not one")
	}
	wantFile(t, root, "/usr/local/share/doc/README", 0, 0o644, 0, 0, "readme\n")
	wantFile(t, root, "/usr/local/share/lib.so", 0, 0o755, 0, 0, "elf\n")
	wantFile(t, root, "/docs/notes.txt", 0, 0o644, 0, 0, "notes\n")
	wantFile(t, root, "/home/app/notes.txt", 0, 0o600, 1000, 1000, "notes\n")
	wantFile(t, root, "/packed/pkg.tar", 0, 0o644, 0, 0, string(pkg))
	wantFile(t, root, "/fake/fake.tar.gz", 0, 0o644, 0, 0, "") // an empty file is no archive
}

// ADD of http URLs: the file is named after the URL's path (or the
// destination), mode 0600 with the Last-Modified time, an archive is not
// extracted unless --unpack=true, --checksum is verified; errors name the
// URL and the Dockerfile line.
func TestInprocAddURL(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	archive := makeArchive(t, false, []archiveEntry{{name: "in/a.txt", typ: tar.TypeReg, mode: 0o644, data: "a\n"}})
	modified := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		switch r.URL.Path {
		case "/dl/file.txt":
			w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
			w.Write([]byte("downloaded\n"))
		case "/archive.tar":
			w.Write(archive)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("downloaded\n")))
	r := e.mustBuild(fmt.Sprintf(`FROM busybox
ADD %[1]s/dl/file.txt /web/
ADD %[1]s/dl/file.txt /renamed
ADD %[1]s/archive.tar /kept/
ADD --unpack=true %[1]s/archive.tar /unpacked/
ADD --checksum=%[2]s %[1]s/dl/file.txt /checked.txt
`, srv.URL, sum), nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/web/file.txt", 0, 0o600, 0, 0, "downloaded\n")
	wantFile(t, root, "/renamed", 0, 0o600, 0, 0, "downloaded\n")
	wantFile(t, root, "/kept/archive.tar", 0, 0o600, 0, 0, string(archive))
	wantFile(t, root, "/unpacked/in/a.txt", 0, 0o644, 0, 0, "a\n")
	wantFile(t, root, "/checked.txt", 0, 0o600, 0, 0, "downloaded\n")
	l := e.layerEntries(newLayers(t, r.img)[0])
	if h := l["web/file.txt"].hdr; h == nil || !h.ModTime.Equal(modified) {
		t.Errorf("web/file.txt in its layer: %+v, want the Last-Modified time %v", h, modified)
	}
	if got := newHistory(t, r.img)[0].CreatedBy; got != "ADD "+srv.URL+"/dl/file.txt /web/ # buildkit" {
		t.Errorf("created_by %q", got)
	}

	for _, tc := range []struct{ name, dockerfile, want string }{
		{"wrong checksum", fmt.Sprintf("FROM busybox\nADD --checksum=sha256:%064x %s/dl/file.txt /x\n", 0, srv.URL), "checksum mismatch"},
		{"not found", fmt.Sprintf("FROM busybox\nADD %s/nothing /x\n", srv.URL), "invalid response status 404"},
		{"checksum of a local file", "FROM busybox\nADD --checksum=" + sum + " f /x\n", "checksum requires HTTP(S) or Git sources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.build(tc.dockerfile, map[string]string{"f": "f"})
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) || !strings.Contains(r.err.Error(), "Dockerfile:2") {
				t.Errorf("err = %v, want one saying %q at Dockerfile:2", r.err, tc.want)
			}
		})
	}
}

// ADD of a git repository (served over git's dumb HTTP protocol, as in
// BuildKit's testExcludedFilesOnCopy): a tag's tree without .git, or with
// it when --keep-git-dir, and --checksum checks the commit.
func TestInprocAddGit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	e := newInprocEnv(t)
	repo := t.TempDir()
	writeContext(t, repo, map[string]string{"README": "readme\n", "docs/guide.txt": "guide\n"})
	writeContextFile(t, repo, "run.sh", ctxFile{data: "#!/bin/sh\n", mode: 0o755})
	gitRun := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun("init", "-q")
	gitRun("add", ".")
	gitRun("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
	gitRun("tag", "v1")
	gitRun("update-server-info")
	head := gitRun("rev-parse", "HEAD")
	srv := httptest.NewServer(http.FileServer(http.Dir(repo)))
	t.Cleanup(srv.Close)
	url := srv.URL + "/.git"
	r := e.mustBuild(fmt.Sprintf(`FROM busybox
ADD %[1]s#v1 /src/
ADD --keep-git-dir=true %[1]s#v1 /withgit/
ADD --checksum=%[2]s %[1]s#v1:docs /docs/
`, url, head[:12]), nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/src/README", 0, 0o644, 0, 0, "readme\n")
	wantFile(t, root, "/src/run.sh", 0, 0o755, 0, 0, "#!/bin/sh\n")
	wantFile(t, root, "/src/docs/guide.txt", 0, 0o644, 0, 0, "guide\n")
	if _, ok := statFile(t, root, "/src/.git"); ok {
		t.Error("ADD of a git repository kept .git without --keep-git-dir")
	}
	if fi, ok := statFile(t, root, "/withgit/.git"); !ok || !fi.mode.IsDir() {
		t.Error("--keep-git-dir=true: no .git")
	}
	wantFile(t, root, "/docs/guide.txt", 0, 0o644, 0, 0, "guide\n")
	bad := e.build(fmt.Sprintf("FROM busybox\nADD --checksum=0123456789ab %s#v1 /x/\n", url), nil)
	if bad.err == nil || !strings.Contains(bad.err.Error(), "checksum mismatch") {
		t.Errorf("a wrong commit checksum: %v", bad.err)
	}
}
