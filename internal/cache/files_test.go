package cache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/layer"
)

// Records written before the layer descriptor was shared (cache.Layer with
// string fields) must read the same, and records written now must have the
// same bytes, so stores of either version share one cache.
func TestRecordFormat(t *testing.T) {
	epoch := int64(1700000000)
	d, id := digest.FromString("blob"), digest.FromString("tar")
	rec := Record{
		Layer:   &Layer{Blob: layer.Blob{Digest: d, DiffID: id, Size: 42, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}, Epoch: &epoch},
		Created: time.Unix(1700000001, 0).UTC(),
	}
	want := `{"layer":{"digest":"` + d.String() + `","diffID":"` + id.String() + `","size":42,"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","epoch":1700000000},"created":"2023-11-14T22:13:21Z"}`
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("record bytes\n got %s\nwant %s", b, want)
	}
	lazy := `{"layer":{"digest":"","diffID":"` + id.String() + `","size":0,"mediaType":""},"created":"2023-11-14T22:13:21Z"}`
	var r Record
	if err := json.Unmarshal([]byte(lazy), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Layer.Lazy() || r.Layer.DiffID != id || r.Layer.Epoch != nil {
		t.Errorf("lazy record read as %+v", r.Layer)
	}
}

func TestRecordFiles(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := NewKey("", Input{Name: "step", Value: "1"})
	if err := ix.Put(k, &Record{Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "keys", string(k)[:2])
	stray := filepath.Join(sub, "not-a-key")
	temp := filepath.Join(sub, tempPrefix+"123")
	for _, p := range []string{stray, temp} {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	records, temps := RecordFiles(dir)
	slices.Sort(records)
	good := filepath.Join(sub, string(k))
	want := []string{stray, good}
	slices.Sort(want)
	if !slices.Equal(records, want) {
		t.Errorf("records = %q, want %q", records, want)
	}
	if !slices.Equal(temps, []string{temp}) {
		t.Errorf("temps = %q, want %q", temps, []string{temp})
	}
	for p, want := range map[string]bool{
		good:  true,
		stray: false,
		filepath.Join(dir, "keys", "00", string(k)):           false, // wrong folder
		filepath.Join(sub, string(k)[:2]+string(k)[2:63]+"G"): false,
		filepath.Join(dir, "keys", "AB", "AB"+string(k)[2:]):  false, // upper case
	} {
		if got := ValidRecordPath(p); got != want {
			t.Errorf("ValidRecordPath(%s) = %v, want %v", p, got, want)
		}
	}
	if r, err := ReadRecord(good); err != nil || r.Layer != nil {
		t.Errorf("ReadRecord(good) = %+v, %v", r, err)
	}
	if _, err := ReadRecord(stray); err == nil {
		t.Error("ReadRecord of a broken file: no error")
	}
}
