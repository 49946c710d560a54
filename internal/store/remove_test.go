package store

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// RemoveRef follows docker rmi: a name is untagged and the image goes with
// its last name; an ID removes every name, which takes force when there
// are several.
func TestRemoveRef(t *testing.T) {
	s := openStore(t)
	a, idA := putImage(t, s, `{"a":1}`)
	for _, n := range []string{"one:1", "two:1"} {
		if err := s.Tag(n, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RemoveRef(idA.Encoded()[:12], false); err == nil || !strings.HasPrefix(err.Error(), "conflict: unable to delete "+idA.Encoded()[:12]+" (must be forced)") {
		t.Errorf("ID of an image with two names, no force: err = %v", err)
	}
	r, err := s.RemoveRef("one:1", false)
	if err != nil || !slices.Equal(r.Untagged, []string{"docker.io/library/one:1"}) || r.Deleted != "" {
		t.Errorf("untag one of two names: %+v, %v", r, err)
	}
	r, err = s.RemoveRef("two:1", false)
	if err != nil || len(r.Untagged) != 1 || r.Deleted != idA {
		t.Errorf("untag the last name: %+v, %v; want deleted %s", r, err, idA)
	}
	if e := entries(t, s); e != "" {
		t.Errorf("index after the last name went: %q", e)
	}

	b, idB := putImage(t, s, `{"b":1}`)
	for _, n := range []string{"three:1", "four:1"} {
		if err := s.Tag(n, b); err != nil {
			t.Fatal(err)
		}
	}
	r, err = s.RemoveRef(idB.String(), true)
	if err != nil || len(r.Untagged) != 2 || r.Deleted != idB {
		t.Errorf("forced removal by ID: %+v, %v", r, err)
	}
	if _, err := s.RemoveRef("three:1", false); !errors.Is(err, ErrNoSuchImage) {
		t.Errorf("removed name: err = %v, want ErrNoSuchImage", err)
	}
}
