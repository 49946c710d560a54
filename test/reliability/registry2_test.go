package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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
)

// registryTimeout is the STRATA_REGISTRY_TIMEOUT of the misbehaving
// registry tests.
const registryTimeout = 2 * time.Second

// peakRun runs strata like strataRun and also returns its peak resident
// memory (VmHWM, polled from /proc while it runs).
func peakRun(t *testing.T, store string, o runOpts, args ...string) (result, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := strataCmd(ctx, store, o, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var peak int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb := vmHWM(cmd.Process.Pid); kb > peak {
				peak = kb
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	wg.Wait()
	return finished(ctx, cmd, err, &stdout, &stderr, time.Since(start), o.timeout), peak * 1024
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
	reg := startRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
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
	t.Logf("pull failed in %s, peak RSS %d MB:\n%s", r.elapsed.Round(time.Millisecond), peak>>20, r)
	if r.err != nil || r.code == 0 {
		t.Fatalf("pull should fail on its own, quickly:\n%s", r)
	}
	if r.elapsed > 40*time.Second {
		t.Errorf("pull took %s to fail with a %s timeout", r.elapsed, registryTimeout)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("error should say %q:\n%s", want, r)
	}
	if peak > 200<<20 {
		t.Errorf("peak memory %d MB", peak>>20)
	}
}

// A registry that accepts connections and never answers fails a pull after
// the idle timeout instead of hanging.
func TestRegistryNeverAnswers(t *testing.T) {
	requireEnv(t)
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
	store := newStore(t, "")
	r, peak := peakRun(t, store, runOpts{timeout: 90 * time.Second, env: []string{"STRATA_REGISTRY_TIMEOUT=" + registryTimeout.String()}},
		"pull", ln.Addr().String()+"/x:1")
	requireFailsInTime(t, r, peak, "sent nothing for 2s")
}

// A registry that stops sending a blob halfway fails the pull after the
// idle timeout (each retry included) instead of hanging.
func TestRegistryStallsMidBlob(t *testing.T) {
	requireEnv(t)
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
	store := newStore(t, "")
	r, peak := peakRun(t, store, runOpts{timeout: 90 * time.Second, env: []string{"STRATA_REGISTRY_TIMEOUT=" + registryTimeout.String()}},
		"pull", reg+"/x:1")
	requireFailsInTime(t, r, peak, "sent nothing for 2s")
	// Progress counts a blob fetched again once, not once per try.
	for _, m := range regexp.MustCompile(`downloaded (\S+) of (\S+) `).FindAllStringSubmatch(r.stderr, -1) {
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
	requireEnv(t)
	reg := hostileBlobRegistry(t, func(w http.ResponseWriter, r *http.Request, blob []byte) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		http.Redirect(w, r, fmt.Sprintf("%s?n=%d", r.URL.Path, n+1), http.StatusFound)
	})
	store := newStore(t, "")
	r, peak := peakRun(t, store, runOpts{timeout: 60 * time.Second}, "pull", reg+"/x:1")
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
	mb, err := readBlob(store, md)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(mb, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: %v", md, err)
	}
	d := m.Layers[0].Digest
	p := blobPath(store, d)
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
	requireEnv(t)
	store := newBusyboxStore(t)
	d := flipLayerByte(t, store, "docker.io/library/busybox:latest")
	reg := startRegistry(t, nil)
	ctx := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nLABEL x=1\n"})
	out := tempDir(t)
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
			r := strataRun(t, store, runOpts{timeout: time.Minute}, c.args...)
			if r.err != nil || r.code == 0 {
				t.Fatalf("%s of an image with a damaged layer should fail:\n%s", c.name, r)
			}
			if !strings.Contains(r.stderr, d) || !strings.Contains(r.stderr, "strata fsck --repair") {
				t.Errorf("the error should name blob %s and strata fsck --repair:\n%s", d, r)
			}
			if r.elapsed > 20*time.Second {
				t.Errorf("%s took %s to fail", c.name, r.elapsed)
			}
		})
	}
	for _, r := range []string{reg, real} {
		if r != "" && manifestExists(t, r, "bb", "1") {
			t.Errorf("the image was pushed to %s with its damaged layer", r)
		}
	}
}
