package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	units "github.com/docker/go-units"
)

// imageRow is one row of strata images.
type imageRow struct{ repo, tag, id, created, size string }

// imageRows parses the table strata images prints (columns are separated
// by at least two spaces; CREATED holds single spaces).
func imageRows(t *testing.T, out string) []imageRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "REPOSITORY") {
		t.Fatalf("no header in strata images output:\n%s", out)
	}
	var rows []imageRow
	sep := regexp.MustCompile(`\s{2,}`)
	for _, l := range lines[1:] {
		f := sep.Split(strings.TrimSpace(l), -1)
		if len(f) != 5 {
			t.Fatalf("strata images row %q: %d columns, want 5", l, len(f))
		}
		rows = append(rows, imageRow{f[0], f[1], f[2], f[3], f[4]})
	}
	return rows
}

func findRow(rows []imageRow, id string) (imageRow, bool) {
	for _, r := range rows {
		if strings.HasPrefix(id, r.id) || strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), r.id) {
			return r, true
		}
	}
	return imageRow{}, false
}

// TestUntaggedImage: an image built without -t is an image of the store:
// its full and short IDs (as -q and --iidfile give them) work wherever an
// image is named, strata images -a lists it as <none> <none>, and rmi ID
// removes it.
func TestUntaggedImage(t *testing.T) {
	store := newStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM base\nRUN echo untagged > /x\n"})
	iid := filepath.Join(t.TempDir(), "iid")
	r := strata(t, store, "build", "-q", "--iidfile", iid, ctx)
	id := strings.TrimSpace(r.Stdout)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("build -q printed %q, want an image ID", id)
	}
	if b, err := os.ReadFile(iid); err != nil || string(b) != id {
		t.Fatalf("iidfile holds %q (%v), want %s", b, err, id)
	}
	hex := strings.TrimPrefix(id, "sha256:")
	for _, ref := range []string{id, hex, hex[:12], hex[:4]} {
		if r := strata(t, store, "run", ref, "cat", "/x"); r.Stdout != "untagged\n" {
			t.Errorf("run %s: stdout %q", ref, r.Stdout)
		}
	}
	if r := strata(t, store, "inspect", "-f", "{{.Id}} {{len .RepoTags}}", hex[:12]); strings.TrimSpace(r.Stdout) != id+" 0" {
		t.Errorf("inspect by short ID: %q", r.Stdout)
	}
	if r := strata(t, store, "history", "-q", hex[:12]); !strings.HasPrefix(r.Stdout, hex[:12]+"\n") {
		t.Errorf("history by short ID: %q", r.Stdout)
	}
	strata(t, store, "save", "-o", filepath.Join(t.TempDir(), "x.tar"), hex[:12])
	strata(t, store, "layers", hex[:12])

	// Not in the default listing (as docker images since v29), in -a and
	// with --filter dangling=true.
	if _, ok := findRow(imageRows(t, strata(t, store, "images").Stdout), id); ok {
		t.Errorf("strata images lists the dangling image")
	}
	for _, args := range [][]string{{"images", "-a"}, {"images", "--filter", "dangling=true"}} {
		row, ok := findRow(imageRows(t, strata(t, store, args...).Stdout), id)
		if !ok || row.repo != "<none>" || row.tag != "<none>" || row.id != hex[:12] {
			t.Errorf("strata %v: row for %s = %+v %v", args, id, row, ok)
		}
	}
	if rows := imageRows(t, strata(t, store, "images", "--filter", "dangling=true").Stdout); len(rows) != 1 {
		t.Errorf("--filter dangling=true lists %d images, want 1: %v", len(rows), rows)
	}
	if rows := imageRows(t, strata(t, store, "images", "-a", "--filter", "dangling=false").Stdout); len(rows) != 1 || rows[0].repo != "base" {
		t.Errorf("--filter dangling=false: %v", rows)
	}
	if r := strata(t, store, "images", "-q", "-a"); !strings.Contains(r.Stdout, hex[:12]+"\n") {
		t.Errorf("images -q -a: %q", r.Stdout)
	}

	// fsck finds nothing wrong with the record.
	if r := strata(t, store, "fsck"); strings.Contains(r.Stdout+r.Stderr, "untagged") {
		t.Errorf("fsck flags the untagged image:\n%s", r)
	}

	// tag gives it a name: it is no longer dangling.
	strata(t, store, "tag", hex[:8], "named:1")
	if _, ok := findRow(imageRows(t, strata(t, store, "images", "--filter", "dangling=true").Stdout), id); ok {
		t.Error("a tagged image is still listed as dangling")
	}
	if r := strata(t, store, "rmi", "named:1"); !strings.Contains(r.Stdout, "Untagged: named:1") || !strings.Contains(r.Stdout, "Deleted: "+id) {
		t.Errorf("rmi of the last name: %q", r.Stdout)
	}
	if r := strataRun(t, store, "", "run", hex[:12], "true"); r.Code == 0 || !strings.Contains(r.Stderr, "no such image") {
		t.Errorf("run after rmi:\n%s", r)
	}

	// Build again (cached) without -t: recorded again; rmi by ID removes it.
	r = strata(t, store, "build", "-q", ctx)
	if strings.TrimSpace(r.Stdout) != id {
		t.Fatalf("rebuild gave %q, want %s", r.Stdout, id)
	}
	if r := strata(t, store, "rmi", hex[:12]); !strings.Contains(r.Stdout, "Deleted: "+id) {
		t.Errorf("rmi ID: %q", r.Stdout)
	}
	if rows := imageRows(t, strata(t, store, "images", "-a").Stdout); len(rows) != 1 {
		t.Errorf("after rmi ID: %v", rows)
	}
	if r := strataRun(t, store, "", "rmi", hex[:12]); r.Code == 0 || !strings.Contains(r.Stderr, "no such image") {
		t.Errorf("second rmi ID:\n%s", r)
	}
}

// TestRetagLeavesDangling: rebuilding a name leaves the old image dangling
// (usable by ID) until strata prune removes it.
func TestRetagLeavesDangling(t *testing.T) {
	store := newStore(t)
	first := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM base\nRUN echo one > /v\n"})
	second := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM base\nRUN echo two > /v\n"})
	old := strings.TrimSpace(strata(t, store, "build", "-q", "-t", "app:1", first).Stdout)
	cur := strings.TrimSpace(strata(t, store, "build", "-q", "-t", "app:1", second).Stdout)
	if old == cur {
		t.Fatal("both builds made the same image")
	}
	rows := imageRows(t, strata(t, store, "images", "-a").Stdout)
	if row, ok := findRow(rows, old); !ok || row.repo != "<none>" {
		t.Errorf("the replaced image: %+v %v in %v", row, ok, rows)
	}
	if row, ok := findRow(rows, cur); !ok || row.repo != "app" || row.tag != "1" {
		t.Errorf("the new image: %+v %v in %v", row, ok, rows)
	}
	if r := strata(t, store, "run", old[7:19], "cat", "/v"); r.Stdout != "one\n" {
		t.Errorf("run the dangling image: %q", r.Stdout)
	}
	// Tagging an image with a name it already has changes nothing.
	strata(t, store, "tag", "app:1", "app:1")
	if n := len(imageRows(t, strata(t, store, "images", "-a").Stdout)); n != 3 {
		t.Errorf("after tag app:1 app:1: %d images, want 3", n)
	}
	// rmi by ID of an image with two names needs -f.
	strata(t, store, "tag", "app:1", "app:2")
	if r := strataRun(t, store, "", "rmi", cur[7:19]); r.Code == 0 || !strings.Contains(r.Stderr, "referenced in multiple repositories") {
		t.Errorf("rmi ID of an image with two names:\n%s", r)
	}
	strata(t, store, "rmi", "app:2")
	// A digest reference names the image too.
	manifest := strings.TrimSpace(strata(t, store, "inspect", "-f", "{{.Manifest.Config.Digest}}", "app:1").Stdout)
	if manifest != cur {
		t.Fatalf("inspect config digest %q, want %s", manifest, cur)
	}

	// --keep-storage trims the build cache only, as docker builder prune
	// --keep-storage: the dangling image stays.
	if r := strata(t, store, "prune", "--keep-storage", "1GB"); strings.Contains(r.Stdout, old) {
		t.Errorf("prune --keep-storage removed the dangling image:\n%s", r)
	}
	strata(t, store, "run", old, "true")
	r := strata(t, store, "prune")
	if !strings.Contains(r.Stdout, "deleted: "+old) {
		t.Errorf("prune does not report the dangling image:\n%s", r)
	}
	if r := strataRun(t, store, "", "run", old, "true"); r.Code == 0 {
		t.Errorf("the dangling image survived prune:\n%s", r)
	}
	if r := strata(t, store, "run", "app:1", "cat", "/v"); r.Stdout != "two\n" {
		t.Errorf("the tagged image after prune: %q", r.Stdout)
	}
	if r := strata(t, store, "fsck"); strings.Contains(r.Stdout, "problem") && !strings.Contains(r.Stdout, "0 problems") {
		t.Logf("fsck after prune:\n%s", r)
	}
}

// TestImagesSizeAndAge: images and inspect show the same size (the layers'
// content, uncompressed, as docker does) and ages in docker's words.
func TestImagesSizeAndAge(t *testing.T) {
	store := newStore(t)
	files := map[string]string{
		"Dockerfile":     "FROM base\nCOPY big /big\n",
		"old.Dockerfile": "FROM scratch\nCOPY big /big\n",
		"big":            strings.Repeat("0123456789", 300_000), // 3 MB, compresses to almost nothing
	}
	ctx := suite.WriteFiles(t, files)
	// every step of old:1 is dated 2018-01-01
	strata(t, store, "build", "-q", "--source-date-epoch", "1514764800", "-f", filepath.Join(ctx, "old.Dockerfile"), "-t", "old:1", ctx)
	strata(t, store, "build", "-q", "-t", "new:1", ctx)
	rows := imageRows(t, strata(t, store, "images").Stdout)
	for _, name := range []string{"old", "new"} {
		var row imageRow
		for _, r := range rows {
			if r.repo == name {
				row = r
			}
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strata(t, store, "inspect", "-f", "{{.Size}}", name+":1").Stdout), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if n < 3_000_000 {
			t.Errorf("inspect %s: Size %d, want at least the 3 MB file", name, n)
		}
		if want := units.HumanSizeWithPrecision(float64(n), 3); row.size != want {
			t.Errorf("images %s: SIZE %q, inspect Size %d (%s)", name, row.size, n, want)
		}
		created, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(strata(t, store, "inspect", "-f", "{{.Created}}", name+":1").Stdout))
		if err != nil {
			t.Fatal(err)
		}
		want := units.HumanDuration(time.Since(created)) + " ago"
		if name == "new" && row.created != want && row.created != units.HumanDuration(time.Since(created)-time.Second)+" ago" {
			t.Errorf("images %s: CREATED %q, want %q", name, row.created, want)
		}
		if name == "old" && (row.created != want || !strings.HasSuffix(want, "years ago")) {
			t.Errorf("images %s: CREATED %q, want %q", name, row.created, want)
		}
	}
}

// TestBuildFromImageID: FROM and COPY --from take a full image ID, which
// names a local image (it is never pulled).
func TestBuildFromImageID(t *testing.T) {
	store := newStore(t)
	id := strings.TrimSpace(strata(t, store, "build", "-q", suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM base\nRUN echo base-of-id > /x\n"})).Stdout)
	for _, from := range []string{id, strings.TrimPrefix(id, "sha256:")} {
		df := "FROM " + from + "\nRUN cat /x > /y\nFROM scratch\nCOPY --from=" + from + " /x /z\nCOPY --from=0 /y /y\n"
		got := strings.TrimSpace(strata(t, store, "build", "-q", suite.WriteFiles(t, map[string]string{"Dockerfile": df})).Stdout)
		if r := strata(t, store, "layers", "--json", got); !strings.Contains(r.Stdout, `"/z"`) || !strings.Contains(r.Stdout, `"/y"`) {
			t.Errorf("FROM/COPY --from=%s: layers\n%s", from, r.Stdout)
		}
	}
	r := strataRun(t, store, "", "build", "-q", suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM sha256:" + strings.Repeat("ab", 32) + "\n"}))
	if r.Code == 0 || !strings.Contains(r.Stderr, "no such image") || strings.Contains(r.Stderr, "pull") {
		t.Errorf("FROM an ID the store does not hold:\n%s", r)
	}
}
