package testsuite_test

import (
	"testing"

	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/snapshot/native"
	"github.com/strata-build/strata/internal/snapshot/overlay"
	"github.com/strata-build/strata/internal/snapshot/testsuite"
)

// Both snapshotters give byte-identical layers for every scenario of the
// suite: the same diffID (times clamped to the suite's epoch, which keeps
// every time a fixture set and maps the times of the changes to one value).
func TestSameLayers(t *testing.T) {
	var ov, na map[string]string
	t.Run("overlay", func(t *testing.T) {
		ov = testsuite.DiffIDs(t, func(_ *testing.T, dir string) snapshot.Snapshotter { return overlay.New(dir) })
	})
	t.Run("native", func(t *testing.T) {
		na = testsuite.DiffIDs(t, func(_ *testing.T, dir string) snapshot.Snapshotter { return native.New(dir) })
	})
	if len(ov) == 0 || len(ov) != len(na) {
		t.Fatalf("scenarios run: overlay %d, native %d", len(ov), len(na))
	}
	for name, id := range ov {
		if na[name] != id {
			t.Errorf("%s: overlay layer %s, native layer %s", name, id, na[name])
		}
	}
}
