package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/strata-build/strata/test/internal/testenv"
)

const bigSize = 100_000

const dockerfile = `FROM base
RUN rm /etc/group && mkdir -p /d/sub && echo hello > /d/a && echo x > /d/sub/x
RUN rm -rf /d && mkdir /d && echo b > /d/b
ENV FOO=bar
RUN echo extra >> /etc/passwd
COPY big.bin small.txt /opt/
RUN rm /opt/big.bin && ln -s small.txt /opt/link
LABEL x=y
`

// built is the image the tests examine, built once.
var built struct {
	once  sync.Once
	store string
	err   string
}

func builtImage(t *testing.T) string {
	t.Helper()
	suite.RequireBuild(t)
	built.once.Do(func() {
		dir, err := os.MkdirTemp(suite.WorkDir, "store-built-")
		if err != nil {
			built.err = err.Error()
			return
		}
		built.store = dir
		ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": dockerfile, "big.bin": strings.Repeat("b", bigSize), "small.txt": "small\n"})
		for _, args := range [][]string{
			importBase(),
			{"build", "--progress=plain", "-t", "try:1", ctx},
		} {
			if r := strataRun(t, dir, "", args...); r.Code != 0 {
				built.err = r.String()
				return
			}
		}
		if img, err := testenv.StoreImage(dir, "docker.io/library/try:1"); err != nil {
			built.err = err.Error()
		} else if err := testenv.Validate(img); err != nil {
			built.err = "the built image is not valid: " + err.Error()
		}
	})
	if built.err != "" {
		t.Fatalf("building the test image failed:\n%s", built.err)
	}
	return built.store
}

// tarLayer is what a layer blob holds, read here without strata's code.
type tarLayer struct {
	files     map[string]int64 // non-directories (symlinks: target length), by absolute path
	dirs      map[string]bool
	whiteouts []string // absolute paths of .wh.NAME entries (opaque: DIR/.wh..wh..opq)
	content   int64
}

// readLayer reads the layer blob of digest from store (its digest checked).
func readLayer(t *testing.T, store, digest string) tarLayer {
	t.Helper()
	b, err := testenv.ReadBlob(store, digest)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	l := tarLayer{files: map[string]int64{}, dirs: map[string]bool{}}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return l
		}
		if err != nil {
			t.Fatal(err)
		}
		p := path.Clean("/" + h.Name)
		switch {
		case p == "/":
		case strings.HasPrefix(path.Base(p), ".wh."):
			l.whiteouts = append(l.whiteouts, p)
		case h.Typeflag == tar.TypeDir:
			l.dirs[p] = true
		case h.Typeflag == tar.TypeSymlink:
			l.files[p] = int64(len(h.Linkname))
			l.content += int64(len(h.Linkname))
		case h.Typeflag == tar.TypeLink:
			l.files[p] = 0
		default:
			l.files[p] = h.Size
			l.content += h.Size
		}
	}
}

// skopeoView is what skopeo reads from the store's OCI layout.
type skopeoView struct {
	Digest       string
	Layers       []string
	config       v1.ConfigFile
	configDigest string
}

func skopeo(t *testing.T, store, name string) skopeoView {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed")
	}
	ref := "oci:" + store + ":" + name
	var v skopeoView
	for _, c := range []struct {
		args []string
		into any
	}{
		{[]string{"inspect", ref}, &v},
		{[]string{"inspect", "--config", ref}, &v.config},
	} {
		out, err := exec.Command(bin, c.args...).Output()
		if err != nil {
			t.Fatalf("skopeo %v: %v", c.args, err)
		}
		if err := json.Unmarshal(out, c.into); err != nil {
			t.Fatalf("skopeo %v: %v\n%s", c.args, err, out)
		}
	}
	out, err := exec.Command(bin, "inspect", "--raw", ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw: %v", err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	v.configDigest = m.Config.Digest.String()
	return v
}

// inspect, checked against skopeo's reading of the same store.
func TestInspectBuiltImage(t *testing.T) {
	store := builtImage(t)
	sk := skopeo(t, store, "docker.io/library/try:1")
	r := strata(t, store, "inspect", "try:1")
	var infos []struct {
		Id          string
		RepoTags    []string
		RepoDigests []string
		Size        int64
		Config      struct{ Env, Cmd []string }
		RootFS      struct{ Layers []string }
		Descriptor  struct{ Digest string }
		Manifest    struct {
			Layers []struct{ Digest string }
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("inspect: %v\n%s", err, r)
	}
	in := infos[0]
	if in.Id != sk.configDigest || in.Descriptor.Digest != sk.Digest {
		t.Errorf("Id %s and manifest %s, skopeo: config %s manifest %s", in.Id, in.Descriptor.Digest, sk.configDigest, sk.Digest)
	}
	if !reflect.DeepEqual(in.RepoTags, []string{"try:1"}) || !reflect.DeepEqual(in.RepoDigests, []string{"try@" + sk.Digest}) {
		t.Errorf("RepoTags %v RepoDigests %v", in.RepoTags, in.RepoDigests)
	}
	if !reflect.DeepEqual(in.Config.Env, sk.config.Config.Env) || !reflect.DeepEqual(in.Config.Cmd, sk.config.Config.Cmd) {
		t.Errorf("Config %+v, skopeo %+v", in.Config, sk.config.Config)
	}
	var diffIDs []string
	for _, d := range sk.config.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	if !reflect.DeepEqual(in.RootFS.Layers, diffIDs) {
		t.Errorf("RootFS.Layers %v, skopeo diff_ids %v", in.RootFS.Layers, sk.config.RootFS.DiffIDs)
	}
	var digests []string
	for _, l := range in.Manifest.Layers {
		digests = append(digests, l.Digest)
	}
	if !reflect.DeepEqual(digests, sk.Layers) || len(digests) != 6 {
		t.Errorf("Manifest.layers %v, skopeo %v (want 6: base + 4 RUN + COPY)", digests, sk.Layers)
	}
	var content int64
	for _, d := range sk.Layers {
		content += readLayer(t, store, d).content
	}
	if in.Size != content {
		t.Errorf("Size %d, the layers' content adds up to %d", in.Size, content)
	}
	for format, want := range map[string]string{
		"{{.Config.Env}}":              "[PATH=/bin FOO=bar]",
		"{{json .Config.Cmd}}":         `["sh"]`,
		`{{index .Config.Labels "x"}}`: "y",
		"{{len .RootFS.Layers}}":       "6",
	} {
		if r := strata(t, store, "inspect", "--format", format, "try:1"); strings.TrimSpace(r.Stdout) != want {
			t.Errorf("inspect --format %s: %q, want %q", format, r.Stdout, want)
		}
	}
	if r := strataRun(t, store, "", "inspect", "try:2"); r.Code != 1 || !strings.Contains(r.Stderr, "no such image: try:2") {
		t.Errorf("unknown image:\n%s", r)
	}
}

// history's SIZE column: the steps that made layers, in order, get the
// content size of those layers; the others 0.
func TestHistorySizes(t *testing.T) {
	store := builtImage(t)
	sk := skopeo(t, store, "docker.io/library/try:1")
	var want []string
	li := 0
	for _, h := range sk.config.History {
		size := int64(0)
		if !h.EmptyLayer {
			size = readLayer(t, store, sk.Layers[li]).content
			li++
		}
		want = append(want, strconv.FormatInt(size, 10)+"|"+h.CreatedBy)
	}
	if li != len(sk.Layers) || len(want) != 10 {
		t.Fatalf("the image has %d history entries for %d layers", len(want), li)
	}
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	r := strata(t, store, "history", "--human=false", "--no-trunc", "--format", "{{.Size}}|{{.CreatedBy}}", "try:1")
	if got := strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("history sizes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r = strata(t, store, "history", "try:1")
	lines := strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "IMAGE") || !strings.Contains(lines[1], "LABEL x=y") || !strings.Contains(lines[1], " 0B ") {
		t.Errorf("history table:\n%s", r.Stdout)
	}
	if !strings.Contains(lines[3], "COPY big.bin small.txt /opt/") || !strings.Contains(lines[3], "100kB") {
		t.Errorf("the COPY step is 100kB (big.bin) and 6B (small.txt):\n%s", r.Stdout)
	}
}

type layerJSON struct {
	Index       int
	Digest      string
	Size        int64
	ContentSize int64
	CreatedBy   string
	Added       int
	Modified    int
	Deleted     int
	HiddenBytes int64
	Changes     []struct {
		Kind      string
		Path      string
		Type      string
		Size      int64
		LowerSize int64
		Opaque    bool
		Link      string
		Hides     []struct {
			Path string
			Size int64
		}
	}
}

func TestLayersBuiltImage(t *testing.T) {
	store := builtImage(t)
	sk := skopeo(t, store, "docker.io/library/try:1")
	r := strata(t, store, "layers", "--json", "try:1")
	var doc struct {
		ID     string
		Layers []layerJSON
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil || len(doc.Layers) != 6 {
		t.Fatalf("layers --json: %v\n%s", err, r)
	}
	// newest first, each against the blob it names
	for i, l := range doc.Layers {
		if l.Index != 5-i || l.Digest != sk.Layers[l.Index] {
			t.Errorf("layer %d: index %d digest %s, want %d %s", i, l.Index, l.Digest, 5-i, sk.Layers[5-i])
			continue
		}
		tl := readLayer(t, store, l.Digest)
		if l.ContentSize != tl.content {
			t.Errorf("layer %d: contentSize %d, the blob holds %d", l.Index, l.ContentSize, tl.content)
		}
		// every file of the blob is an A or an M, with its size; every
		// whiteout a D (or an opaque directory)
		got := map[string]int64{}
		var deleted []string
		for _, c := range l.Changes {
			switch {
			case c.Kind == "D" && c.Opaque:
				deleted = append(deleted, strings.TrimSuffix(c.Path, "/")+"/.wh..wh..opq")
			case c.Kind == "D":
				deleted = append(deleted, path.Join(path.Dir(strings.TrimSuffix(c.Path, "/")), ".wh."+path.Base(c.Path)))
			case c.Type != "dir":
				got[c.Path] = c.Size
			}
		}
		if !reflect.DeepEqual(got, tl.files) {
			t.Errorf("layer %d: files %v, the blob holds %v", l.Index, got, tl.files)
		}
		sort.Strings(deleted)
		sort.Strings(tl.whiteouts)
		if strings.Join(deleted, " ") != strings.Join(tl.whiteouts, " ") {
			t.Errorf("layer %d: deletions %v, the blob's whiteouts %v", l.Index, deleted, tl.whiteouts)
		}
		for j := 1; j < len(l.Changes); j++ {
			if l.Changes[j].Size > l.Changes[j-1].Size {
				t.Errorf("layer %d: not biggest first: %+v", l.Index, l.Changes)
			}
		}
	}
	byIndex := map[int]layerJSON{}
	for _, l := range doc.Layers {
		byIndex[l.Index] = l
	}
	find := func(l layerJSON, p string) (kind string, size, lower int64, link string) {
		for _, c := range l.Changes {
			if c.Path == p {
				return c.Kind, c.Size, c.LowerSize, c.Link
			}
		}
		return "", 0, 0, ""
	}
	group := int64(len("root:x:0:\nnogroup:x:65534:\n"))
	passwd := int64(len("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	if k, s, _, _ := find(byIndex[1], "/etc/group"); k != "D" || s != group {
		t.Errorf("layer 1 (RUN rm /etc/group ...): /etc/group %s %d, want D %d", k, s, group)
	}
	if k, s, _, _ := find(byIndex[1], "/d/a"); k != "A" || s != 6 {
		t.Errorf("layer 1: /d/a %s %d, want A 6", k, s)
	}
	// RUN rm -rf /d && mkdir /d: an opaque /d/ or whiteouts of a and sub
	var hidden []string
	for _, c := range byIndex[2].Changes {
		if c.Kind == "D" {
			if !c.Opaque {
				hidden = append(hidden, c.Path)
			}
			for _, h := range c.Hides {
				hidden = append(hidden, h.Path)
			}
		}
	}
	sort.Strings(hidden)
	if strings.Join(hidden, " ") != "/d/a /d/sub/ /d/sub/x" || byIndex[2].HiddenBytes != 8 {
		t.Errorf("layer 2 (RUN rm -rf /d && mkdir /d ...): hides %v (%d bytes), want /d/a /d/sub/ /d/sub/x (8 bytes)", hidden, byIndex[2].HiddenBytes)
	}
	if k, _, _, _ := find(byIndex[2], "/d/b"); k != "A" {
		t.Errorf("layer 2: /d/b is %q, want A", k)
	}
	if k, s, lower, _ := find(byIndex[3], "/etc/passwd"); k != "M" || s != passwd+6 || lower != passwd {
		t.Errorf("layer 3 (RUN echo extra >> /etc/passwd): %s %d replaces %d; want M %d replaces %d", k, s, lower, passwd+6, passwd)
	}
	if k, s, _, _ := find(byIndex[4], "/opt/big.bin"); k != "A" || s != bigSize {
		t.Errorf("layer 4 (COPY): /opt/big.bin %s %d", k, s)
	}
	if k, s, _, _ := find(byIndex[5], "/opt/big.bin"); k != "D" || s != bigSize || byIndex[5].HiddenBytes != bigSize {
		t.Errorf("layer 5 (RUN rm /opt/big.bin): %s %d, hides %d; want D %d", k, s, byIndex[5].HiddenBytes, bigSize)
	}
	if k, _, _, link := find(byIndex[5], "/opt/link"); k != "A" || link != "small.txt" {
		t.Errorf("layer 5: /opt/link %s -> %q", k, link)
	}
	if !strings.HasPrefix(byIndex[5].CreatedBy, "RUN ") || !strings.Contains(byIndex[5].CreatedBy, "rm /opt/big.bin") {
		t.Errorf("layer 5 createdBy %q", byIndex[5].CreatedBy)
	}

	// the text form: newest layer first, sizes, the summary
	r = strata(t, store, "layers", "try:1")
	out := r.Stdout
	i6, i1 := strings.Index(out, "Layer 6/6"), strings.Index(out, "Layer 1/6")
	if i6 < 0 || i1 < 0 || i6 > i1 {
		t.Errorf("want Layer 6/6 before Layer 1/6:\n%s", out)
	}
	for _, want := range []string{
		"D 100kB  /opt/big.bin",
		"hides 100kB of the layers below",
		"/opt/link -> small.txt",
		"A 100kB  /opt/big.bin",
		"M 88B  /etc/passwd (replaces 82B)",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("layers output has no %q:\n%s", want, out)
		}
	}
	r = strata(t, store, "layers", "-n", "2", "try:1")
	if !strings.Contains(r.Stdout, "more (") || strings.Contains(r.Stdout, "/bin/true") {
		t.Errorf("--limit 2 cuts the base layer's list:\n%s", r.Stdout)
	}
	r = strata(t, store, "layers", "--all", "try:1")
	if !strings.Contains(r.Stdout, "/bin/true -> busybox") {
		t.Errorf("--all lists every path:\n%s", r.Stdout)
	}
}

func TestGraphRendersWithGraphviz(t *testing.T) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("graphviz is not installed (apt-get install graphviz)")
	}
	r := strata(t, "", "graph", "-f", filepath.Join(suite.RepoRoot, "examples", "seed", "Dockerfile.image"), filepath.Join(suite.RepoRoot, "examples", "seed"))
	cmd := exec.Command(dot, "-Tsvg")
	cmd.Stdin = strings.NewReader(r.Stdout)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	svg, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("dot -Tsvg: %v %s\n%s", err, stderr.String(), r.Stdout)
	}
	s := strings.ReplaceAll(string(svg), "&#45;", "-")
	for _, want := range []string{"builder (0)", "golang:1.26", "busybox", "COPY --from", "FROM"} {
		if !strings.Contains(s, want) {
			t.Errorf("the SVG has no %q", want)
		}
	}
}

// The bash completion script, loaded in bash with bash-completion, asks the
// binary for image names.
func TestBashCompletion(t *testing.T) {
	store := builtImage(t)
	const bc = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bc); err != nil {
		t.Skip("bash-completion is not installed")
	}
	script := filepath.Join(t.TempDir(), "strata.bash")
	if err := os.WriteFile(script, []byte(strata(t, "", "completion", "bash").Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	prog := `source ` + bc + `; source ` + script + `
COMP_WORDS=(strata history ""); COMP_CWORD=2; COMP_LINE="strata history "; COMP_POINT=${#COMP_LINE}
__start_strata 2>/dev/null; printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "-c", prog)
	cmd.Env = suite.Environ("PATH="+filepath.Dir(suite.Bin)+":"+os.Getenv("PATH"), "STRATA_ROOT="+store)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	sort.Strings(got)
	if !reflect.DeepEqual(got, []string{"base:latest", "try:1"}) {
		t.Errorf("completing `strata history `: %q, want the store's images", got)
	}
}

// The man pages are valid roff: groff reads them without warnings.
func TestManPagesRender(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff is not installed")
	}
	dir := t.TempDir()
	strata(t, "", "docs", "--man", dir)
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if len(pages) < 15 {
		t.Fatalf("%d man pages", len(pages))
	}
	for _, p := range pages {
		cmd := exec.Command(groff, "-k", "-man", "-Tutf8", "-ww", "-z", p) // -k: preconv, as man runs it
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", filepath.Base(p), err, out)
		}
	}
}
