package store

import (
	"os"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestSidecars: a sidecar is read back as written, a missing or damaged
// one reads as none, and Collect removes those whose blob or layer it
// removes.
func TestSidecars(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("a blob"))
	blob, _, err := w.Commit("")
	if err != nil {
		t.Fatal(err)
	}
	gone := digest.FromString("a blob that is not there")
	layerID := digest.FromString("a layer")
	if err := os.MkdirAll(s.LayerDir(layerID), 0o755); err != nil {
		t.Fatal(err)
	}
	type facts struct{ N int }
	for _, p := range []struct {
		kind string
		d    digest.Digest
	}{{SidecarMembers, blob}, {SidecarMembers, gone}, {SidecarFiles, layerID}} {
		if err := s.PutSidecar(p.kind, p.d, facts{N: 7}); err != nil {
			t.Fatal(err)
		}
		var got facts
		if !s.Sidecar(p.kind, p.d, &got) || got.N != 7 {
			t.Errorf("%s of %s: read %+v", p.kind, p.d, got)
		}
	}
	if err := s.PutSidecar("other", blob, facts{}); err == nil {
		t.Error("an unknown kind was written")
	}
	var got facts
	if s.Sidecar(SidecarFiles, blob, &got) {
		t.Error("a sidecar that was never written was read")
	}
	if err := os.WriteFile(s.sidecarPath(SidecarFiles, layerID), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.Sidecar(SidecarFiles, layerID, &got) {
		t.Error("a damaged sidecar was read")
	}

	if _, err := s.Collect(map[digest.Digest]bool{blob: true}, nil); err != nil {
		t.Fatal(err)
	}
	if !s.Sidecar(SidecarMembers, blob, &got) {
		t.Error("Collect removed the sidecar of a kept blob")
	}
	for _, p := range []string{s.sidecarPath(SidecarMembers, gone), s.sidecarPath(SidecarFiles, layerID)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s kept after its blob or layer went: %v", p, err)
		}
	}
}
