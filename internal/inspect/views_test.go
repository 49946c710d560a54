package inspect

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
)

// viewImage is an image of two layers and three steps, for the views.
func viewImage(t *testing.T) *image.Image {
	t.Helper()
	cfgDigest, err := v1.NewHash("sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	img := &image.Image{Layers: make([]image.Layer, 2)}
	img.Manifest.Config.Digest = cfgDigest
	img.Config.History = []v1.History{
		{CreatedBy: "ADD rootfs.tar /", Created: v1.Time{Time: created}},
		{CreatedBy: "ENV A=1", EmptyLayer: true, Created: v1.Time{Time: created}},
		{CreatedBy: "RUN a && \\\n\tb", Comment: "buildkit.dockerfile.v0", Created: v1.Time{Time: created.Add(time.Hour)}},
	}
	return img
}

func TestHistoryView(t *testing.T) {
	img := viewImage(t)
	now := time.Date(2024, 1, 2, 7, 4, 5, 0, time.UTC)
	rows := HistoryRows(img, []int64{1_234_000, 512}, now, true, true)
	want := []HistoryRow{
		{ID: "abababababab", CreatedSince: "3 hours ago", CreatedAt: "2024-01-02T04:04:05Z", CreatedBy: `RUN a && \  b`, Size: "512B", Comment: "buildkit.dockerfile.v0"},
		{ID: "<missing>", CreatedSince: "4 hours ago", CreatedAt: "2024-01-02T03:04:05Z", CreatedBy: "ENV A=1", Size: "0B"},
		{ID: "<missing>", CreatedSince: "4 hours ago", CreatedAt: "2024-01-02T03:04:05Z", CreatedBy: "ADD rootfs.tar /", Size: "1.23MB"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	raw := HistoryRows(img, []int64{1_234_000, 512}, now, false, false)
	if raw[0].ID != img.Manifest.Config.Digest.String() || raw[0].Size != "512" || raw[0].CreatedSince != raw[0].CreatedAt {
		t.Errorf("no-trunc, not human: %+v", raw[0])
	}

	var b bytes.Buffer
	if err := WriteHistory(&b, rows, nil, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "IMAGE          CREATED       CREATED BY") || !strings.HasPrefix(lines[1], "abababababab   3 hours ago") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	WriteHistory(&b, rows, nil, true)
	if b.String() != "abababababab\n<missing>\n<missing>\n" {
		t.Errorf("quiet: %q", b.String())
	}
	b.Reset()
	tmpl, _ := ParseTemplate("{{.Size}}|{{.CreatedBy}}")
	WriteHistory(&b, rows[:1], tmpl, false)
	if b.String() != "512B|RUN a && \\  b\n" {
		t.Errorf("template: %q", b.String())
	}
}

func TestLayersReport(t *testing.T) {
	img := viewImage(t)
	layers := []LayerChanges{
		{Index: 0, Digest: "sha256:" + strings.Repeat("0", 64), Content: 3000, Size: 1000, CreatedBy: "ADD rootfs.tar /", Added: 3,
			Changes: []Change{{Kind: Added, Path: "/big", Size: 2000}, {Kind: Added, Path: "/mid", Size: 900}, {Kind: Added, Path: "/small", Size: 100}}},
		{Index: 1, Digest: "sha256:" + strings.Repeat("1", 64), Size: 50, CreatedBy: "RUN rm -r /d", Deleted: 1, HiddenBytes: 10,
			Changes: []Change{{Kind: Deleted, Path: "/d", Type: "dir", Size: 10, HiddenPaths: 2, Hides: []Hidden{{Path: "/d/a", Size: 6}, {Path: "/d/b", Size: 4}}}}},
	}
	r := NewLayersReport("app:1", img, layers)
	if r.Layers[0].Index != 1 || layers[0].Index != 0 {
		t.Fatalf("report not newest first, or the input changed: %d, %d", r.Layers[0].Index, layers[0].Index)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b, 1); err != nil {
		t.Fatal(err)
	}
	want := `app:1  ID abababababab  2 layers  3kB (1.05kB compressed)

Layer 2/2  sha256:111111111111  0B (50B compressed)
  created by: RUN rm -r /d
  0 added, 0 modified, 1 deleted; hides 10B of the layers below
  D 10B  /d (hides 2 paths)
     6B      /d/a
             ... 1 more

Layer 1/2  sha256:000000000000  3kB (1kB compressed)
  created by: ADD rootfs.tar /
  3 added, 0 modified, 0 deleted
  A 2kB  /big
  ... 2 more (1kB); --all shows every path
`
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := r.WriteJSON(&b, 1); err != nil {
		t.Fatal(err)
	}
	var doc LayersReport
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Image != "app:1" || doc.ID != img.Manifest.Config.Digest.String() || len(doc.Layers[1].Changes) != 1 || doc.Layers[1].Omitted != 2 || len(doc.Layers[0].Changes[0].Hides) != 1 {
		t.Errorf("json: %s", b.String())
	}
	if len(r.Layers[1].Changes) != 3 || len(r.Layers[0].Changes[0].Hides) != 2 {
		t.Error("WriteJSON's limit changed the report")
	}
}

func TestWriteInfos(t *testing.T) {
	infos := []Info{{Id: "sha256:x", Comment: "a<b"}}
	var b bytes.Buffer
	if err := WriteInfos(&b, infos, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "[\n    {\n        \"Id\": \"sha256:x\"") || !strings.Contains(b.String(), `"a<b"`) {
		t.Errorf("json: %s", b.String())
	}
	b.Reset()
	tmpl, _ := ParseTemplate("{{.Id}}")
	WriteInfos(&b, append(infos, Info{Id: "sha256:y"}), tmpl)
	if b.String() != "sha256:x\nsha256:y\n" {
		t.Errorf("template: %q", b.String())
	}
}
