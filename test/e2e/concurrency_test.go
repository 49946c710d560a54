package e2e

import (
	"strings"
	"sync"
	"testing"
)

// TestConcurrentBuilds runs two different builds in the same store at once
// (both unpack the same busybox base layer): both must succeed and give the
// right images.
func TestConcurrentBuilds(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	ctxs := []string{
		suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo one > /one && sleep 1\nCMD [\"cat\", \"/one\"]\n"}),
		suite.WriteFiles(t, map[string]string{
			"Dockerfile": "FROM busybox AS b\nRUN echo two > /two && sleep 1\nFROM busybox\nCOPY --from=b /two /two\nCOPY f /f\nCMD [\"cat\", \"/two\", \"/f\"]\n",
			"f":          "file\n",
		}),
	}
	results := make([]result, len(ctxs))
	var wg sync.WaitGroup
	for i, ctx := range ctxs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = strataRun(t, store, runOpts{}, "build", "-t", []string{"conc-one", "conc-two"}[i], ctx)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 || r.Err != nil {
			t.Errorf("concurrent build %d failed:\n%s", i+1, r)
		}
	}
	if t.Failed() {
		return
	}
	if r := strata(t, store, "run", "conc-one"); strings.TrimSpace(r.Stdout) != "one" {
		t.Errorf("conc-one: want \"one\":\n%s", r)
	}
	if r := strata(t, store, "run", "conc-two"); strings.Fields(r.Stdout) == nil || strings.Join(strings.Fields(r.Stdout), " ") != "two file" {
		t.Errorf("conc-two: want \"two\\nfile\":\n%s", r)
	}
	r := strata(t, store, "images")
	for _, n := range []string{"conc-one", "conc-two", "busybox"} {
		if !strings.Contains(r.Stdout, n) {
			t.Errorf("strata images does not list %s after the concurrent builds:\n%s", n, r)
		}
	}
}
