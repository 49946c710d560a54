package conformance

// Self-checks of the flattener and the comparer on hand-made archives, so that
// a bug in them cannot make every conformance case pass. They need neither root
// nor strata.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
}

func dir(name string, mode int64) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: mode} }
func file(name, body string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func symlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeSymlink, mode: 0o755, link: target}
}
func hardlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}
func whiteout(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, mode: 0o644} }

func writeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// dockerArchive writes a docker save archive holding one image with the given
// config and layers (the first layer gzipped, the others plain).
func dockerArchive(t *testing.T, config string, layers ...[]tarEntry) []byte {
	t.Helper()
	var blobs []tarEntry
	var layerNames []string
	for i, l := range layers {
		data := writeTar(t, l)
		if i == 0 {
			data = gzipped(t, data)
		}
		name := "blobs/sha256/" + sha(string(data))
		blobs = append(blobs, file(name, string(data), 0o644))
		layerNames = append(layerNames, name)
	}
	cfgName := "blobs/sha256/" + sha(config)
	manifest, err := json.Marshal([]map[string]any{{
		"Config": cfgName, "RepoTags": []string{"selfcheck:latest"}, "Layers": layerNames,
	}})
	if err != nil {
		t.Fatal(err)
	}
	entries := append([]tarEntry{dir("blobs/", 0o755), dir("blobs/sha256/", 0o755), file(cfgName, config, 0o644)}, blobs...)
	entries = append(entries, file("manifest.json", string(manifest), 0o644))
	return writeTar(t, entries)
}

func listing(files []fileEntry) string {
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s %s %s %d:%d", f.Path, f.Type, f.Mode, f.UID, f.GID)
		switch f.Type {
		case "file":
			fmt.Fprintf(&b, " %d %s", f.Size, f.SHA256[:8])
		case "symlink":
			fmt.Fprintf(&b, " -> %s", f.Link)
		}
		if f.NlinkGroup != "" {
			fmt.Fprintf(&b, " group=%s", f.NlinkGroup)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

const selfcheckConfig = `{"architecture":"amd64","os":"linux","config":{
  "Env":["PATH=/bin","A=1"],"Cmd":["sh"],"WorkingDir":"/srv",
  "ExposedPorts":{"8080/tcp":{},"53/udp":{}},"Volumes":null,"Labels":{"k":"v"},
  "Healthcheck":{"Test":["CMD","true"],"Interval":30000000000,"Retries":3}},
  "rootfs":{"type":"layers","diff_ids":[]}}`

func TestFlattenSelfCheck(t *testing.T) {
	base := []tarEntry{
		dir("bin/", 0o755),
		file("bin/sh", "shell", 0o755),
		symlink("bin/ls", "sh"),
		dir("etc/", 0o755),
		file("etc/passwd", "root", 0o644),
		file("etc/group", "root", 0o644),
		dir("data/", 0o700),
		file("data/old1", "one", 0o600),
		dir("data/sub/", 0o755),
		file("data/sub/deep", "deep", 0o644),
		dir("keep/", 0o755),
		file("keep/a", "a", 0o644),
		file("keep/b", "b", 0o644),
		file("keep/hl1", "shared", 0o644),
		hardlink("keep/hl2", "keep/hl1"),
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		symlink("lib", "keep"),
		file("gone-dir/x", "x", 0o644), // parent missing from the layer: made 0755 root:root
	}
	top := []tarEntry{
		// Opaque directory: data/ loses everything below it, then gets new content;
		// the marker comes after an entry of the same layer, which must survive.
		file("data/new", "new", 0o640),
		file("data/.wh..wh..opq", "", 0o644),
		{name: "data/", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1000},
		// Whiteouts: a file, a directory, and one through a symlinked parent.
		whiteout("etc/.wh.group"),
		whiteout(".wh.gone-dir"),
		whiteout("lib/.wh.b"),
		// A hardlink set that spans layers: the new name sorts first.
		hardlink("keep/aa-link", "keep/hl1"),
		// Replacing a symlink by a file, and a file with different content.
		file("bin/ls", "real ls", 0o755),
		{name: "etc/passwd", typ: tar.TypeReg, mode: 0o4755, uid: 0, gid: 42, body: "root2"},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
	}
	d, err := flattenArchive(bytes.NewReader(dockerArchive(t, selfcheckConfig, base, top)))
	if err != nil {
		t.Fatal(err)
	}

	want := fmt.Sprintf(`/bin dir 0755 0:0
/bin/ls file 0755 0:0 7 %s
/bin/sh file 0755 0:0 5 %s
/data dir 0750 1000:1000
/data/new file 0640 0:0 3 %s
/dev dir 0755 0:0
/dev/null char 0666 0:0
/etc dir 0755 0:0
/etc/passwd file 4755 0:42 5 %s
/keep dir 0755 0:0
/keep/a file 0644 0:0 1 %s
/keep/aa-link file 0644 0:0 6 %s group=/keep/aa-link
/keep/hl1 file 0644 0:0 6 %s group=/keep/aa-link
/keep/hl2 file 0644 0:0 6 %s group=/keep/aa-link
/lib symlink 0777 0:0 -> keep
/tmp dir 1777 0:0
`, sha("real ls")[:8], sha("shell")[:8], sha("new")[:8], sha("root2")[:8], sha("a")[:8],
		sha("shared")[:8], sha("shared")[:8], sha("shared")[:8])
	if got := listing(d.Files); got != want {
		t.Errorf("flattened listing:\n%s\nwant:\n%s", got, want)
	}

	wantCfg := `{"Env":["PATH=/bin","A=1"],"Entrypoint":[],"Cmd":["sh"],"WorkingDir":"/srv","User":"",` +
		`"ExposedPorts":["53/udp","8080/tcp"],"Volumes":[],"Labels":{"k":"v"},"StopSignal":"",` +
		`"Healthcheck":{"Test":["CMD","true"],"Interval":"30s","Timeout":"0s","StartPeriod":"0s","StartInterval":"0s","Retries":3},` +
		`"Shell":[],"OnBuild":[]}`
	if got := asJSON(d.Config); got != wantCfg {
		t.Errorf("config:\n%s\nwant:\n%s", got, wantCfg)
	}

	// The document survives a round trip through the expected.json format.
	var back doc
	dec := json.NewDecoder(bytes.NewReader(marshalDoc(d)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if diffs := diffDocs(d, back); len(diffs) > 0 {
		t.Errorf("round trip differs:\n%s", strings.Join(diffs, "\n"))
	}
}

// TestFlattenOpaqueWithoutContent: an opaque marker alone empties a directory
// but keeps it; a whiteout of a path that does not exist is ignored; a
// whiteout only hides lower layers, never an entry of its own layer.
func TestFlattenOpaqueWithoutContent(t *testing.T) {
	base := []tarEntry{dir("d/", 0o755), file("d/x", "x", 0o644), dir("d/y/", 0o755), file("d/y/z", "z", 0o644)}
	top := []tarEntry{
		file("d/.wh..wh..opq", "", 0o644),
		whiteout(".wh.nothing-here"),
		file("fresh", "f", 0o644),
		whiteout(".wh.fresh"),
	}
	d, err := flattenArchive(bytes.NewReader(dockerArchive(t, `{"config":{}}`, base, top)))
	if err != nil {
		t.Fatal(err)
	}
	want := "/d dir 0755 0:0\n/fresh file 0644 0:0 1 " + sha("f")[:8] + "\n"
	if got := listing(d.Files); got != want {
		t.Errorf("flattened listing:\n%s\nwant:\n%s", got, want)
	}
}

// TestDiffDocs checks that the comparer notices every kind of difference and
// words it like the kit.
func TestDiffDocs(t *testing.T) {
	want := doc{
		Config: imageConfig{Env: []string{"A=1", "B=2"}, Cmd: []string{"sh"}, Labels: map[string]string{}},
		Files: []fileEntry{
			{Path: "/a", Type: "file", Mode: "0644", Size: 1, SHA256: sha("a")},
			{Path: "/gone", Type: "symlink", Mode: "0777", Link: "/a"},
			{Path: "/h1", Type: "file", Mode: "0644", Size: 1, SHA256: sha("h"), NlinkGroup: "/h1"},
			{Path: "/h2", Type: "file", Mode: "0644", Size: 1, SHA256: sha("h"), NlinkGroup: "/h1"},
		},
	}
	got := doc{
		Config: imageConfig{Env: []string{"B=2", "A=1"}, Cmd: nil, Entrypoint: []string{}, User: "app"},
		Files: []fileEntry{
			{Path: "/a", Type: "file", Mode: "0600", UID: 1000, Size: 2, SHA256: sha("aa")},
			{Path: "/extra", Type: "dir", Mode: "0755"},
			{Path: "/h1", Type: "file", Mode: "0644", Size: 1, SHA256: sha("h")},
			{Path: "/h2", Type: "file", Mode: "0644", Size: 1, SHA256: sha("h")},
		},
	}
	wantDiffs := []string{
		`config Env differs: want ["A=1","B=2"], got ["B=2","A=1"]`,
		`config Cmd differs: want ["sh"], got []`,
		`config User differs: want "", got "app"`,
		`/a: mode differs: want 0644, got 0600`,
		`/a: uid differs: want 0, got 1000`,
		`/a: size differs: want 1, got 2`,
		`/a: sha256 differs: want ` + sha("a")[:12] + `…, got ` + sha("aa")[:12] + `…`,
		`extra /extra (dir 0755 0:0)`,
		`missing /gone (symlink 0777 0:0 -> /a)`,
		`/h1: nlinkgroup differs: want /h1, got ""`,
		`/h2: nlinkgroup differs: want /h1, got ""`,
	}
	if got := diffDocs(want, got); strings.Join(got, "\n") != strings.Join(wantDiffs, "\n") {
		t.Errorf("diffs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantDiffs, "\n"))
	}
	if diffs := diffDocs(want, want); len(diffs) != 0 {
		t.Errorf("a document differs from itself: %v", diffs)
	}
}
