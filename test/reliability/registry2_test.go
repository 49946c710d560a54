package reliability

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-units"
	"github.com/strata-build/strata/test/internal/testenv"
)

// registryTimeout is the STRATA_REGISTRY_TIMEOUT of the misbehaving
// registry tests.
const registryTimeout = 2 * time.Second

// peakRun runs strata like strataRun and also returns its peak resident
// memory (VmHWM, polled from /proc while it runs).
func peakRun(t *testing.T, store string, o runOpts, args ...string) (result, int64) {
	t.Helper()
	p := suite.Start(t, store, o, args...)
	var peak int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !p.Exited() {
		if kb := vmHWM(p.Cmd.Process.Pid); kb > peak {
			peak = kb
		}
		select {
		case <-p.Done():
		case <-tick.C:
		}
	}
	return p.Wait(), peak * 1024
}

// vmHWM is the peak resident set of pid in kB (0 when it is gone).
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// hostileBlobRegistry serves a one-layer image as repo x:1 whose layer blob
// GETs serve answers.
func hostileBlobRegistry(t *testing.T, serve func(w http.ResponseWriter, r *http.Request, blob []byte)) string {
	t.Helper()
	noise := make([]byte, 1<<20)
	rand.Read(noise)
	gz := gzipBytes(tarBytes(t, []tent{tfile("noise", string(noise))}))
	layer := sha(gz)
	reg := testenv.StartRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
			serve(w, r, gz)
			return true
		}
		return false
	})
	pushRaw(t, reg, "x", "1", rawImage{config: imageConfigJSON([]string{sha(tarBytes(t, []tent{tfile("noise", string(noise))}))}), layers: [][]byte{gz}})
	return reg
}

func requireFailsInTime(t *testing.T, r result, peak int64, want string) {
	t.Helper()
	t.Logf("pull failed in %s, peak RSS %d MB:\n%s", r.Elapsed.Round(time.Millisecond), peak>>20, r)
	if r.Err != nil || r.Code == 0 {
		t.Fatalf("pull should fail on its own, quickly:\n%s", r)
	}
	if r.Elapsed > 40*time.Second {
		t.Errorf("pull took %s to fail with a %s timeout", r.Elapsed, registryTimeout)
	}
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("error should say %q:\n%s", want, r)
	}
	if peak > 200<<20 {
		t.Errorf("peak memory %d MB", peak>>20)
	}
}

// A registry that accepts connections and never answers fails a pull after
// the idle timeout instead of hanging.
func TestRegistryNeverAnswers(t *testing.T) {
	suite.RequireBuild(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	store := suite.NewStore(t)
	r, peak := peakRun(t, store, runOpts{Timeout: 90 * time.Second, Env: []string{"STRATA_REGISTRY_TIMEOUT=" + registryTimeout.String()}},
		"pull", ln.Addr().String()+"/x:1")
	requireFailsInTime(t, r, peak, "sent nothing for 2s")
}

// A registry that stops sending a blob halfway fails the pull after the
// idle timeout (each retry included) instead of hanging.
func TestRegistryStallsMidBlob(t *testing.T) {
	suite.RequireBuild(t)
	stop := make(chan struct{})
	reg := hostileBlobRegistry(t, func(w http.ResponseWriter, r *http.Request, blob []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	t.Cleanup(func() { close(stop) })
	store := suite.NewStore(t)
	r, peak := peakRun(t, store, runOpts{Timeout: 90 * time.Second, Env: []string{"STRATA_REGISTRY_TIMEOUT=" + registryTimeout.String()}},
		"pull", reg+"/x:1")
	requireFailsInTime(t, r, peak, "sent nothing for 2s")
	// Progress counts a blob fetched again once, not once per try.
	for _, m := range regexp.MustCompile(`downloaded (\S+) of (\S+) `).FindAllStringSubmatch(r.Stderr, -1) {
		done, err1 := units.FromHumanSize(m[1])
		total, err2 := units.FromHumanSize(m[2])
		if err1 != nil || err2 != nil || done > total {
			t.Errorf("progress %q", m[0])
		}
	}
}

// A blob that redirects to itself forever fails the pull after net/http's
// ten redirects, with bounded memory.
func TestRegistryRedirectLoop(t *testing.T) {
	suite.RequireBuild(t)
	reg := hostileBlobRegistry(t, func(w http.ResponseWriter, r *http.Request, blob []byte) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		http.Redirect(w, r, fmt.Sprintf("%s?n=%d", r.URL.Path, n+1), http.StatusFound)
	})
	store := suite.NewStore(t)
	r, peak := peakRun(t, store, runOpts{Timeout: 60 * time.Second}, "pull", reg+"/x:1")
	requireFailsInTime(t, r, peak, "stopped after 10 redirects")
}

// flipLayerByte damages one byte in the middle of the first layer blob of
// the stored image ref and returns the blob's digest.
func flipLayerByte(t *testing.T, store, ref string) string {
	t.Helper()
	md, ok := storeImages(t, store)[ref]
	if !ok {
		t.Fatalf("no image %s in the store", ref)
	}
	m, err := testenv.StoreManifest(store, md)
	if err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: %v", md, err)
	}
	d := m.Layers[0].Digest.String()
	p := testenv.BlobPath(store, d)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// A layer blob damaged on disk is never sent out: save, build --output
// type=oci|docker and push fail with an error that names the blob and
// `strata fsck --repair`, and push does not retry.
func TestDamagedBlobNotExported(t *testing.T) {
	suite.RequireBuild(t)
	store := suite.NewBusyboxStore(t)
	d := flipLayerByte(t, store, "docker.io/library/busybox:latest")
	reg := testenv.StartRegistry(t, nil)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nLABEL x=1\n"})
	out := suite.TempDir(t)
	cases := []struct {
		name string
		args []string
	}{
		{"save", []string{"save", "-o", out + "/save.tar", "busybox"}},
		{"build-oci", []string{"build", "-o", "type=oci,dest=" + out + "/oci.tar", ctx}},
		{"build-docker", []string{"build", "-o", "type=docker,dest=" + out + "/docker.tar", ctx}},
		{"push", []string{"push", "busybox", reg + "/bb:1"}},
	}
	real := startDockerRegistry(t)
	if real != "" {
		cases = append(cases, struct {
			name string
			args []string
		}{"push-docker-registry", []string{"push", "busybox", real + "/bb:1"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := strataRun(t, store, runOpts{Timeout: time.Minute}, c.args...)
			if r.Err != nil || r.Code == 0 {
				t.Fatalf("%s of an image with a damaged layer should fail:\n%s", c.name, r)
			}
			if !strings.Contains(r.Stderr, d) || !strings.Contains(r.Stderr, "strata fsck --repair") {
				t.Errorf("the error should name blob %s and strata fsck --repair:\n%s", d, r)
			}
			if r.Elapsed > 20*time.Second {
				t.Errorf("%s took %s to fail", c.name, r.Elapsed)
			}
		})
	}
	for _, r := range []string{reg, real} {
		if r != "" && manifestExists(t, r, "bb", "1") {
			t.Errorf("the image was pushed to %s with its damaged layer", r)
		}
	}
}
