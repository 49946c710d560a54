package reliability

import (
	"strings"
	"testing"
)

// TestLayerEntryLimit: a layer with more entries than STRATA_MAX_LAYER_ENTRIES
// (a tar bomb) is refused with a clear error when it is unpacked, and the
// store stays consistent.
func TestLayerEntryLimit(t *testing.T) {
	store := suite.NewBusyboxStore(t) // busybox's one layer has about 280 entries
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"})
	r := strataRun(t, store, runOpts{Env: []string{"STRATA_MAX_LAYER_ENTRIES=100"}}, "build", ctxDir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "more than 100 tar entries") {
		t.Fatalf("a layer over the entry limit was unpacked, or the error does not say why:\n%s", r)
	}
	strata(t, store, "fsck")
	strata(t, store, "build", ctxDir) // the default limit lets it through
}

// TestLayerByteLimit: the same for what a layer's files add up to
// (STRATA_MAX_LAYER_BYTES): a gzip or sparse-file bomb is refused before the
// file that crosses the bound is written.
func TestLayerByteLimit(t *testing.T) {
	store := suite.NewBusyboxStore(t) // busybox's layer: one ~1-2 MB binary and its links
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"})
	r := strataRun(t, store, runOpts{Env: []string{"STRATA_MAX_LAYER_BYTES=10000"}}, "build", ctxDir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "add up to more than 10000 bytes") {
		t.Fatalf("a layer over the byte limit was unpacked, or the error does not say why:\n%s", r)
	}
	strata(t, store, "fsck")
	strata(t, store, "build", ctxDir)
}
