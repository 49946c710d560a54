package reliability

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestPushResumesUpload: a push whose connection drops during a blob upload
// asks Docker's distribution registry how much of the upload it has (GET on
// the upload URL) and goes on from there, instead of sending the blob again
// from its start; the image arrives whole either way.
//
// distribution resumes only at a chunk boundary: when part of a chunk
// reached it before the connection dropped, its upload no longer matches
// the state in the upload URL, it cancels the upload, and the blob has to
// start over (the second case).
func TestPushResumesUpload(t *testing.T) {
	suite.RequireBuild(t)
	reg := startDockerRegistry(t)
	if reg == "" {
		t.Skip("docker-registry not installed (apt-get install docker-registry)")
	}
	src := suite.NewBusyboxStore(t)
	// 80 MB that gzip cannot shrink: 32 + 32 + 16 MB chunks.
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 80m /dev/urandom > /r && echo resumed > /case\n"})
	strata(t, src, "build", "-t", "big", ctxDir)
	const layer = 80 << 20

	cases := []struct {
		name     string
		fault    fault
		max, min int64 // PATCH bytes that may reach the registry
	}{
		// Nothing of the second chunk arrives: resume at 32 MB, each byte
		// sent once (starting over would send 32 MB more).
		{"reset-before-chunk", reset, layer + layer/20, layer},
		// Half the second chunk arrives: distribution cancels, start over
		// (32 + 16 + 80 MB).
		{"cut-mid-chunk", cutBody, 2 * layer, layer + 32<<20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			px := startProxy(t, reg)
			var patches atomic.Int64
			px.setPlan(func(r *http.Request, _ int) fault {
				// busybox's layer is PATCH 1; the big layer's second chunk is PATCH 3.
				if r.Method == http.MethodPatch && patches.Add(1) == 3 {
					return c.fault
				}
				return passThrough
			})
			repo := "resume-" + c.name
			r := strataRun(t, src, runOpts{}, "push", "big", px.addr+"/"+repo+":1")
			if r.Code != 0 {
				t.Fatalf("push with one dropped connection failed:\n%s\nproxy log:\n%s", r, testenv.Indent(px.Log()))
			}
			verifyRemoteImage(t, reg, repo, "1", "case")
			sent := px.patchBytes.Load()
			t.Logf("%d MB of PATCH bodies reached the registry for an 80 MB layer", sent>>20)
			if !strings.Contains(px.Log(), "GET /v2/"+repo+"/blobs/uploads/") {
				t.Errorf("the upload's status was never asked for:\n%s", testenv.Indent(px.Log()))
			}
			if sent > c.max || sent < c.min {
				t.Errorf("%d bytes reached the registry, want %d to %d:\n%s", sent, c.min, c.max, testenv.Indent(px.Log()))
			}
		})
	}
	requireFsckClean(t, src)
}
