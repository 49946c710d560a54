package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// cliRun is one in-process strata invocation.
type cliRun struct {
	code           int
	stdout, stderr string
}

// strataIn runs strata with --root root and no registry configuration.
func strataIn(t *testing.T, root string, args ...string) cliRun {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--root", root, "--config", filepath.Join(root, "no-config.json")}, args...)
	code := Main(context.Background(), full, strings.NewReader(""), &out, &errb)
	return cliRun{code, out.String(), errb.String()}
}

func mustStrata(t *testing.T, root string, args ...string) cliRun {
	t.Helper()
	r := strataIn(t, root, args...)
	if r.code != 0 {
		t.Fatalf("strata %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// importedStore makes a store holding "small:1", imported from a directory
// with files of known sizes, with two config-only history steps.
func importedStore(t *testing.T) (root string, content int64) {
	t.Helper()
	root = t.TempDir()
	dir := t.TempDir()
	files := map[string]int{"bin/tool": 3000, "etc/conf": 120, "data/blob": 45000}
	for p, n := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), bytes.Repeat([]byte{'a'}, n), 0o644); err != nil {
			t.Fatal(err)
		}
		content += int64(n)
	}
	if err := os.Symlink("tool", filepath.Join(dir, "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	content += int64(len("tool"))
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	mustStrata(t, root, "import", "--change", "ENV A=1 B=2", "--change", `CMD ["/bin/tool"]`, "--change", "LABEL org.example.v=3", dir, "small:1")
	return root, content
}

func TestInspect(t *testing.T) {
	root, content := importedStore(t)
	mustStrata(t, root, "tag", "small:1", "registry.example.com/team/small:2")
	r := mustStrata(t, root, "inspect", "small:1")
	var infos []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("want a JSON array of one image (err %v):\n%s", err, r.stdout)
	}
	info := infos[0]
	id, _ := info["Id"].(string)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) {
		t.Errorf("Id %q", id)
	}
	if got := info["RepoTags"]; !jsonEqual(got, []any{"small:1", "registry.example.com/team/small:2"}) {
		t.Errorf("RepoTags %v", got)
	}
	if got, _ := info["RepoDigests"].([]any); len(got) != 2 || !strings.HasPrefix(got[0].(string), "small@sha256:") {
		t.Errorf("RepoDigests %v", got)
	}
	if info["Created"] != "2023-11-14T22:13:20Z" || info["Os"] != "linux" || info["Architecture"] == "" {
		t.Errorf("Created/Os/Architecture: %v %v %v", info["Created"], info["Os"], info["Architecture"])
	}
	if size, _ := info["Size"].(float64); int64(size) != content {
		t.Errorf("Size %v, want the content size %d", info["Size"], content)
	}
	cfg, _ := info["Config"].(map[string]any)
	if !jsonEqual(cfg["Cmd"], []any{"/bin/tool"}) || !jsonEqual(cfg["Env"], []any{"A=1", "B=2"}) {
		t.Errorf("Config: %v", cfg)
	}
	if rootfs, _ := info["RootFS"].(map[string]any); rootfs["Type"] != "layers" || len(rootfs["Layers"].([]any)) != 1 {
		t.Errorf("RootFS: %v", rootfs)
	}
	if m, _ := info["Manifest"].(map[string]any); m["schemaVersion"] != float64(2) || len(m["layers"].([]any)) != 1 {
		t.Errorf("Manifest: %v", m)
	}

	// templates, by name and by ID prefix
	short := strings.TrimPrefix(id, "sha256:")[:8]
	for format, want := range map[string]string{
		"{{.Config.Env}}":                          "[A=1 B=2]\n",
		"{{json .Config.Cmd}}":                     `["/bin/tool"]` + "\n",
		"{{join .Config.Env \",\"}}":               "A=1,B=2\n",
		"{{upper .Os}}":                            "LINUX\n",
		`{{index .Config.Labels "org.example.v"}}`: "3\n",
		"{{.Id}}":                                 id + "\n",
		"{{.Size}} {{len .RootFS.Layers}}":        strconv.FormatInt(content, 10) + " 1\n",
		"{{.Manifest.mediaType}} {{.Size}}":       "application/vnd.oci.image.manifest.v1+json " + strconv.FormatInt(content, 10) + "\n",
		"{{range .RepoTags}}{{println .}}{{end}}": "small:1\nregistry.example.com/team/small:2\n\n",
	} {
		for _, ref := range []string{"small:1", short, id} {
			if r := mustStrata(t, root, "inspect", "--format", format, ref); r.stdout != want {
				t.Errorf("inspect --format %q %s: %q, want %q", format, ref, r.stdout, want)
			}
		}
	}
	// several images: one line each
	if r := mustStrata(t, root, "inspect", "-f", "{{.Os}}", "small:1", "registry.example.com/team/small:2"); r.stdout != "linux\nlinux\n" {
		t.Errorf("two images: %q", r.stdout)
	}
}

func TestInspectErrors(t *testing.T) {
	root, _ := importedStore(t)
	r := strataIn(t, root, "inspect", "nosuch:1")
	if r.code != 1 || !strings.Contains(r.stderr, "no such image: nosuch:1") || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("unknown image: want exit 1, [] and a message; got %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = strataIn(t, root, "inspect", "-f", "{{.Os}}", "small:1", "nosuch")
	if r.code != 1 || r.stdout != "linux\n" || !strings.Contains(r.stderr, "no such image: nosuch") {
		t.Errorf("one known, one unknown: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// short hex strings that match nothing are not found (this used to panic)
	for _, ref := range []string{"abcd", "sha256:abcd", "ab"} {
		if r := strataIn(t, root, "inspect", ref); r.code != 1 || !strings.Contains(r.stderr, "no such image") {
			t.Errorf("inspect %s: %d %q", ref, r.code, r.stderr)
		}
	}
	if r := strataIn(t, root, "inspect", "-f", "{{.NoSuchField}}", "small:1"); r.code != 1 || !strings.Contains(r.stderr, "NoSuchField") {
		t.Errorf("bad field: %d %q", r.code, r.stderr)
	}
	if r := strataIn(t, root, "inspect", "-f", "{{.Os", "small:1"); r.code != 2 || !strings.Contains(r.stderr, "invalid --format") {
		t.Errorf("bad template: want a usage error: %d %q", r.code, r.stderr)
	}
	if r := strataIn(t, root, "inspect"); r.code != 2 {
		t.Errorf("no image: want exit 2, got %d", r.code)
	}
}

func TestHistory(t *testing.T) {
	root, content := importedStore(t)
	r := mustStrata(t, root, "history", "small:1")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 steps (import + 3 changes):\n%s", r.stdout)
	}
	for _, col := range []string{"IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header has no %s: %q", col, lines[0])
		}
	}
	id := strings.TrimSpace(mustStrata(t, root, "inspect", "-f", "{{.Id}}", "small:1").stdout)
	if !strings.HasPrefix(lines[1], strings.TrimPrefix(id, "sha256:")[:12]+" ") {
		t.Errorf("the newest step shows the short image ID: %q", lines[1])
	}
	for _, l := range lines[2:] {
		if !strings.HasPrefix(l, "<missing>") {
			t.Errorf("older steps show <missing>: %q", l)
		}
	}
	// newest first: the config-only steps are 0B, the import step is the layer
	if !strings.Contains(lines[1], "LABEL") || !strings.Contains(lines[1], " 0B ") {
		t.Errorf("newest step: %q", lines[1])
	}
	if !strings.Contains(lines[4], "strata import") || !strings.Contains(lines[4], "48.1kB") {
		t.Errorf("oldest step: want strata import and 48.1kB: %q", lines[4])
	}

	r = mustStrata(t, root, "history", "--format", "{{.Size}}|{{.CreatedBy}}", "--human=false", "small:1")
	want := "0|LABEL org.example.v=3\n0|CMD [\"/bin/tool\"]\n0|ENV A=1 B=2\n" + strconv.FormatInt(content, 10) + "|strata import\n"
	if r.stdout != want {
		t.Errorf("--format --human=false:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = mustStrata(t, root, "history", "-q", "--no-trunc", "small:1")
	if want := id + "\n<missing>\n<missing>\n<missing>\n"; r.stdout != want {
		t.Errorf("-q --no-trunc: %q, want %q", r.stdout, want)
	}
	r = mustStrata(t, root, "history", "--format", `table {{.Size}}\t{{.Comment}}`, "small:1")
	if !strings.HasPrefix(r.stdout, "SIZE") || !strings.Contains(r.stdout, "Imported from") {
		t.Errorf("table format:\n%s", r.stdout)
	}
	r = mustStrata(t, root, "history", "--format", "json", "small:1")
	var row map[string]string
	if err := json.Unmarshal([]byte(strings.Split(r.stdout, "\n")[3]), &row); err != nil || row["CreatedBy"] != "strata import" || row["CreatedAt"] != "2023-11-14T22:13:20Z" {
		t.Errorf("json rows: %v %v\n%s", row, err, r.stdout)
	}
	if r := strataIn(t, root, "history", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "no such image") {
		t.Errorf("unknown image: %d %q", r.code, r.stderr)
	}
}

func TestHistoryTruncation(t *testing.T) {
	root, _ := importedStore(t)
	long := "LABEL " + strings.Repeat("x", 60) + "=1"
	dir := t.TempDir()
	mustStrata(t, root, "import", "--change", long, dir, "long:1")
	r := mustStrata(t, root, "history", "long:1")
	if strings.Contains(r.stdout, long) || !strings.Contains(r.stdout, long[:44]+"…") {
		t.Errorf("CREATED BY is cut to 45 characters:\n%s", r.stdout)
	}
	if r := mustStrata(t, root, "history", "--no-trunc", "long:1"); !strings.Contains(r.stdout, long) {
		t.Errorf("--no-trunc:\n%s", r.stdout)
	}
}

func TestLayersImported(t *testing.T) {
	root, content := importedStore(t)
	r := mustStrata(t, root, "layers", "small:1")
	for _, want := range []string{"Layer 1/1", "created by: strata import", "A  45kB  /data/blob", "A 3kB", "/bin/alias -> tool", "/etc/conf"} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("layers output has no %q:\n%s", want, r.stdout)
		}
	}
	if i, j := strings.Index(r.stdout, "/data/blob"), strings.Index(r.stdout, "/bin/tool"); i < 0 || j < i {
		t.Errorf("biggest first:\n%s", r.stdout)
	}
	r = mustStrata(t, root, "layers", "--limit", "1", "small:1")
	if !strings.Contains(r.stdout, "/data/blob") || strings.Contains(r.stdout, "/bin/tool") || !strings.Contains(r.stdout, "more") {
		t.Errorf("--limit 1:\n%s", r.stdout)
	}
	r = mustStrata(t, root, "layers", "--json", "small:1")
	var doc struct {
		ID     string
		Layers []struct {
			Index       int
			ContentSize int64
			CreatedBy   string
			Added       int
			Changes     []struct{ Kind, Path string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Layers) != 1 {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	l := doc.Layers[0]
	// 4 files and symlinks, 3 directories
	if l.ContentSize != content || l.Added != 7 || len(l.Changes) != 7 || l.Changes[0].Path != "/data/blob" || l.Changes[0].Kind != "A" {
		t.Errorf("--json layer: %+v", l)
	}
	if r := strataIn(t, root, "layers", "--limit", "-1", "small:1"); r.code != 2 {
		t.Errorf("--limit -1: want a usage error, got %d", r.code)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// A store that lost a layer blob still shows the image's config; layers,
// which needs the blob, fails naming it.
func TestMissingLayerBlob(t *testing.T) {
	root, _ := importedStore(t)
	digest := strings.TrimSpace(mustStrata(t, root, "inspect", "-f", "{{(index .Manifest.Layers 0).Digest}}", "small:1").stdout)
	if err := os.Remove(filepath.Join(root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))); err != nil {
		t.Fatal(err)
	}
	r := strataIn(t, root, "inspect", "-f", "{{.Config.Cmd}} {{.Size}}", "small:1")
	if r.code != 0 || r.stdout != "[/bin/tool] 0\n" || !strings.Contains(r.stderr, "warning: small:1: size unknown") {
		t.Errorf("inspect: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := strataIn(t, root, "history", "small:1"); r.code != 0 || !strings.Contains(r.stderr, "warning") {
		t.Errorf("history: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := strataIn(t, root, "layers", "small:1"); r.code != 1 || !strings.Contains(r.stderr, "layer 1 ("+digest+")") {
		t.Errorf("layers: %d %q", r.code, r.stderr)
	}
}
