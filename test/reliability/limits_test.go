package reliability

import (
	"strings"
	"testing"
)

// TestLayerEntryLimit: a layer with more entries than STRATA_MAX_LAYER_ENTRIES
// (a tar bomb) is refused with a clear error when it is unpacked, and the
// store stays consistent.
func TestLayerEntryLimit(t *testing.T) {
	store := newBusyboxStore(t) // busybox's one layer has about 280 entries
	ctxDir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"})
	r := strataRun(t, store, runOpts{env: []string{"STRATA_MAX_LAYER_ENTRIES=100"}}, "build", ctxDir)
	if r.code == 0 || !strings.Contains(r.stderr, "more than 100 tar entries") {
		t.Fatalf("a layer over the entry limit was unpacked, or the error does not say why:\n%s", r)
	}
	strata(t, store, "fsck")
	strata(t, store, "build", ctxDir) // the default limit lets it through
}
