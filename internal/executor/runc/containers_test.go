package runc

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// ReclaimDead removes the state of the containers its predicate calls dead
// (here: state runc cannot load, as a container half created) and keeps the
// others, and Containers lists what runc still knows.
func TestReclaimDeadAndContainers(t *testing.T) {
	requireRunc(t)
	state := t.TempDir()
	for _, id := range []string{"strata-1-2-0", "strata-3-4-7", "other-5-6-0"} {
		if err := os.MkdirAll(filepath.Join(state, id), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r := &Runner{StateDir: state}
	var asked []string
	r.ReclaimDead(context.Background(), func(id string) bool {
		asked = append(asked, id)
		return id == "strata-1-2-0"
	})
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"other-5-6-0", "strata-1-2-0", "strata-3-4-7"}) {
		t.Errorf("asked about %q", asked)
	}
	for id, want := range map[string]bool{"strata-1-2-0": false, "strata-3-4-7": true, "other-5-6-0": true} {
		if _, err := os.Stat(filepath.Join(state, id)); (err == nil) != want {
			t.Errorf("%s: kept %v, want %v", id, err == nil, want)
		}
	}
	ids, err := (&Runner{StateDir: t.TempDir()}).Containers(context.Background())
	if err != nil || len(ids) != 0 {
		t.Errorf("Containers of an empty state dir = %q, %v", ids, err)
	}
	// --force: a container that is gone already is no error.
	if err := r.DeleteContainer(context.Background(), "strata-none"); err != nil {
		t.Errorf("DeleteContainer of no container: %v", err)
	}
}
