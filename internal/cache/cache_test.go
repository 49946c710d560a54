package cache

import (
	"strings"
	"testing"
)

// TestPrefixMarks: a prefix is unknown until marked, marks survive
// reopening the index, and marking twice is harmless.
func TestPrefixMarks(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := NewKey("parent", Input{Name: "instruction", Value: "COPY"})
	if ix.HasPrefix(p) {
		t.Fatal("unmarked prefix reported")
	}
	for i := 0; i < 2; i++ {
		if err := ix.MarkPrefix(p); err != nil {
			t.Fatal(err)
		}
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.HasPrefix(p) || again.HasPrefix(NewKey("parent")) {
		t.Fatal("marks not kept, or another prefix reported")
	}
}

// A cache export names its layers' blobs; a record whose layer does not
// (e.g. a layer recorded without a blob, or a damaged export) must not be
// imported, since nothing could fetch it.
func TestParseExportRejectsLayersWithoutBlob(t *testing.T) {
	good := `{"records":[{"key":"k1","record":{"layer":{"digest":"sha256:` + strings.Repeat("a", 64) + `","diffID":"sha256:` + strings.Repeat("b", 64) + `"}}},{"key":"k2","record":{}}]}`
	e, err := ParseExport([]byte(good))
	if err != nil || len(e.Records) != 2 {
		t.Fatalf("valid export: %v, %d records", err, len(e.Records))
	}
	lazy := `{"records":[{"key":"k1","record":{"layer":{"digest":"","diffID":"sha256:` + strings.Repeat("b", 64) + `"}}}]}`
	if _, err := ParseExport([]byte(lazy)); err == nil || !strings.Contains(err.Error(), "record k1") {
		t.Errorf("export with a layer without blob: err %v", err)
	}
}
