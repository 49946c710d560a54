package reliability

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// Fault plans: which requests fail, and how often.

// onFirst injects f into the first attempt of every request that match selects.
func onFirst(f fault, match func(*http.Request) bool) func(*http.Request, int) fault {
	return func(r *http.Request, attempt int) fault {
		if attempt == 0 && match(r) {
			return f
		}
		return passThrough
	}
}

// firstN injects f into the first n requests that match selects (for
// uploads, whose URLs change with every attempt).
func firstN(f fault, n int64, match func(*http.Request) bool) func(*http.Request, int) fault {
	var seen atomic.Int64
	return func(r *http.Request, _ int) fault {
		if match(r) && seen.Add(1) <= n {
			return f
		}
		return passThrough
	}
}

// always injects f into every request match selects.
func always(f fault, match func(*http.Request) bool) func(*http.Request, int) fault {
	return func(r *http.Request, _ int) fault {
		if match(r) {
			return f
		}
		return passThrough
	}
}

// mixed injects a random fault (500, reset or slow) into the first attempt
// of about half the requests, and into at most budget requests in all.
// Truncated bodies are left out: strata does not survive even one
// (TestBugTruncatedBodyNotRetried).
func mixed(budget int64, match func(*http.Request) bool) func(*http.Request, int) fault {
	var n atomic.Int64
	return func(r *http.Request, attempt int) fault {
		if attempt > 0 || !match(r) || randIntn(2) == 0 || n.Add(1) > budget {
			return passThrough
		}
		return []fault{fail500, reset, slow}[randIntn(3)]
	}
}

func anyRequest(*http.Request) bool { return true }

func registryAPI(r *http.Request) bool { return r.URL.Path != "/v2/" }

func blobGET(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
}

func manifestGET(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.URL.Path, "/manifests/")
}

func uploads(r *http.Request) bool {
	return r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut
}

func manifestPUT(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
}

type faultCase struct {
	name       string
	plan       func(*http.Request, int) fault
	transient  bool     // the operation must succeed
	errorWords []string // for a persistent fault: one of them in the error ("a|b")
}

// TestRegistryFaults pulls and pushes through a loopback proxy that injects
// 500s, connection resets, slow responses and truncated bodies in front of an
// in-process registry. Transient faults (each request fails at most twice)
// must be retried and the operation must succeed; persistent ones must fail
// with a clear error, leave no image tagged (in the store for a pull, in the
// registry for a push) and leave the store sound.
func TestRegistryFaults(t *testing.T) {
	t.Parallel()
	suite.RequireBuild(t)
	reg := testenv.StartRegistry(t, nil)
	src := suite.NewBusyboxStore(t)
	base := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 2m /dev/urandom > /r\nRUN echo second > /second\n"})
	strata(t, src, "build", "-t", "base", base)
	strata(t, src, "push", "base", reg+"/base:1")

	pulls := []faultCase{
		{name: "500-once", plan: onFirst(fail500, anyRequest), transient: true},
		{name: "reset-once", plan: onFirst(reset, registryAPI), transient: true},
		{name: "slow", plan: always(slow, anyRequest), transient: true},
		{name: "mixed", plan: mixed(8, anyRequest), transient: true},
		{name: "blob-500-always", plan: always(fail500, blobGET), errorWords: []string{"500|internal server error|unknown"}},
		{name: "manifest-reset-always", plan: always(reset, manifestGET), errorWords: []string{"reset|eof|connection"}},
		{name: "truncate-always", plan: always(truncate, blobGET), errorWords: []string{"eof|unexpected|truncat|short"}},
	}
	pushes := []faultCase{
		{name: "500-twice", plan: firstN(fail500, 2, uploads), transient: true},
		{name: "reset-twice", plan: firstN(reset, 2, uploads), transient: true},
		{name: "slow", plan: always(slow, uploads), transient: true},
		{name: "mixed", plan: mixed(2, registryAPI), transient: true},
		{name: "manifest-500-always", plan: always(fail500, manifestPUT), errorWords: []string{"500|internal server error|unknown"}},
		{name: "upload-reset-always", plan: always(reset, uploads), errorWords: []string{"reset|eof|connection"}},
	}
	// One image to push per push case, each with a layer of its own (a layer
	// the registry has already would not be uploaded).
	for i, c := range pushes {
		ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN head -c 1m /dev/urandom > /r && echo %d-%s > /case\n", i, c.name)})
		strata(t, src, "build", "-t", "push-"+c.name, ctxDir)
	}
	var srcMu sync.Mutex // pushes share the source store: one at a time, so that its checks see no other's session

	t.Run("pull", func(t *testing.T) {
		for _, c := range pulls {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				px := startProxy(t, reg)
				px.setPlan(c.plan)
				store := suite.NewStore(t)
				ref := px.addr + "/base:1"
				r := strataRun(t, store, runOpts{}, "pull", ref)
				t.Logf("%d requests, %d faults injected, exit %d after %s", px.requests.Load(), px.faults.Load(), r.Code, r.Elapsed.Round(1e6))
				checkFaultOutcome(t, store, c, r, px)
				imgs := storeImages(t, store)
				_, tagged := imgs[ref]
				switch {
				case c.transient && r.Code == 0:
					if !tagged {
						t.Errorf("pull succeeded but %s is not tagged: %v", ref, keys(imgs))
					} else if files := imageFiles(t, store, ref); files["second"].content != "second\n" || len(files["r"].content) != 1<<20 {
						t.Errorf("the pulled image lacks /second or /r")
					}
				case !c.transient && tagged:
					corruptions.Add(1)
					t.Errorf("a failed pull left %s tagged", ref)
				}
			})
		}
	})
	t.Run("push", func(t *testing.T) {
		for _, c := range pushes {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				px := startProxy(t, reg)
				px.setPlan(c.plan)
				repo := "pushed-" + c.name
				srcMu.Lock()
				defer srcMu.Unlock()
				r := strataRun(t, src, runOpts{}, "push", "push-"+c.name, px.addr+"/"+repo+":1")
				t.Logf("%d requests, %d faults injected, exit %d after %s", px.requests.Load(), px.faults.Load(), r.Code, r.Elapsed.Round(1e6))
				checkFaultOutcome(t, src, c, r, px)
				exists := manifestExists(t, reg, repo, "1")
				switch {
				case c.transient && r.Code == 0:
					if !exists {
						t.Errorf("push succeeded but the registry has no %s:1", repo)
					} else {
						verifyRemoteImage(t, reg, repo, "1", "case")
					}
				case !c.transient && exists:
					t.Errorf("a failed push left %s:1 in the registry", repo)
				}
			})
		}
	})
}

// checkFaultOutcome checks the exit and message of an operation under
// faults, and that the store is sound and clean afterwards.
func checkFaultOutcome(t *testing.T, store string, c faultCase, r result, px *proxy) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s", r)
	}
	if c.transient {
		if r.Code != 0 {
			t.Errorf("transient faults (%d injected) were not survived:\n%s\nproxy log:\n%s", px.faults.Load(), r, testenv.Indent(px.Log()))
		}
	} else {
		if r.Code != 1 {
			t.Errorf("persistent faults: exit %d, want 1:\n%s", r.Code, r)
		}
		msg := strings.ToLower(r.Stderr)
		if !strings.Contains(msg, "error") {
			t.Errorf("persistent faults: no error message:\n%s", r)
		}
		for _, w := range c.errorWords {
			found := false
			for _, alt := range strings.Split(w, "|") {
				found = found || strings.Contains(msg, alt)
			}
			if !found {
				t.Errorf("persistent faults: the error does not say %q:\n%s", w, r)
			}
		}
		if len(strings.Split(strings.TrimSpace(r.Stderr), "\n")) > 30 {
			t.Errorf("persistent faults: the error is not short and clear (%d lines):\n%s", len(strings.Split(r.Stderr, "\n")), r)
		}
	}
	requireNoLeftovers(t, store, "after registry faults")
	if tmp := tempFiles(store); len(tmp) > 0 {
		t.Errorf("temp files left after registry faults: %q", tmp)
	}
	requireWholeImages(t, store)
	requireFsckClean(t, store)
}
