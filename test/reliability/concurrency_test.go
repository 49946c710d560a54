package reliability

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentBuildsOneStore runs two, then eight builds at once on one
// store: each with its own RUN, COPY and a second stage, some sharing steps
// (the same cached base steps, the same layer committed twice), while
// strata fsck checks the store. All must succeed with the right images, fsck
// must find nothing wrong, and the store must be whole afterwards.
func TestConcurrentBuildsOneStore(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	for _, n := range []int{2, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			type build struct {
				ctx, tag string
				want     map[string]string
			}
			var builds []build
			for i := range n {
				shared := "RUN echo shared > /shared\n" // the same step in every build
				df := "FROM busybox AS base\n" + shared +
					fmt.Sprintf("RUN echo %d-%d > /own && head -c 300k /dev/urandom > /noise\n", n, i) +
					"FROM busybox\n" + shared +
					"COPY --from=base /own /own\nCOPY f /f\n" +
					fmt.Sprintf("RUN cat /own /f > /both\nENV BUILD=%d\n", i)
				ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": df, "f": fmt.Sprintf("file %d\n", i)})
				builds = append(builds, build{ctx: ctx, tag: fmt.Sprintf("conc-%d-%d", n, i), want: map[string]string{
					"shared": "shared\n", "own": fmt.Sprintf("%d-%d\n", n, i), "f": fmt.Sprintf("file %d\n", i),
					"both": fmt.Sprintf("%d-%d\nfile %d\n", n, i, i),
				}})
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			for i, b := range builds {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = strataRun(t, store, runOpts{}, "build", "--progress", "plain", "-t", b.tag, b.ctx)
				}()
			}
			// fsck while the builds run: it must find nothing wrong with a
			// store in use (their sessions, temp files and half-done layers).
			var fsckResults []result
			stop := make(chan struct{})
			fsckDone := make(chan struct{})
			go func() {
				defer close(fsckDone)
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, _ := runFsck(t, store)
					fsckResults = append(fsckResults, r)
				}
			}()
			wg.Wait()
			close(stop)
			<-fsckDone
			for _, r := range fsckResults {
				if r.Code != 0 {
					corruptions.Add(1)
					t.Errorf("strata fsck during the builds found problems:\n%s", r)
				}
			}
			t.Logf("%d fsck runs during the builds", len(fsckResults))
			for i, r := range results {
				if r.Code != 0 || r.Err != nil {
					t.Errorf("concurrent build %d of %d failed:\n%s", i+1, n, r)
				}
			}
			if t.Failed() {
				return
			}
			for _, b := range builds {
				files := imageFiles(t, store, "docker.io/library/"+b.tag+":latest")
				for p, want := range b.want {
					if got := files[p].content; got != want {
						corruptions.Add(1)
						t.Errorf("%s: /%s = %q, want %q", b.tag, p, got, want)
					}
				}
				if _, ok := files["noise"]; ok {
					t.Errorf("%s: a file of the first stage is in the final image", b.tag)
				}
			}
			requireNoLeftovers(t, store, "after the concurrent builds")
			if tmp := tempFiles(store); len(tmp) > 0 {
				t.Errorf("temp files left: %q", tmp)
			}
			imgs := requireWholeImages(t, store)
			r := strata(t, store, "images")
			for _, b := range builds {
				if _, ok := imgs["docker.io/library/"+b.tag+":latest"]; !ok || !strings.Contains(r.Stdout, b.tag) {
					t.Errorf("%s is not listed:\n%s", b.tag, r)
				}
			}
			requireFsckClean(t, store)
		})
	}
}
