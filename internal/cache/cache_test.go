package cache

import "testing"

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
