package reliability

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// diskUse is what the files under dir take on disk.
func diskUse(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, _ error) error {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi != nil {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// requireBoundFailure checks a build failed within limit, with an error
// that has every one of want, and that the store grew by at most grow bytes
// and kept no temp files.
func requireBoundFailure(t *testing.T, store string, before int64, r result, limit time.Duration, grow int64, want ...string) {
	t.Helper()
	if r.Code == 0 || r.Err != nil {
		t.Fatalf("expected a failed build:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("the error does not say %q:\n%s", w, r)
		}
	}
	if r.Elapsed > limit {
		t.Errorf("failed after %s, want within %s", r.Elapsed, limit)
	}
	if d := diskUse(store) - before; d > grow {
		t.Errorf("the store grew by %d bytes, more than %d", d, grow)
	}
	if tmp := tempFiles(store); len(tmp) > 0 {
		t.Errorf("temp files left: %q", tmp)
	}
	requireNoLeftovers(t, store, "after the failed build")
}

// TestADDArchiveBound: an ADD archive that expands past STRATA_MAX_LAYER_BYTES
// (a gzip bomb: 64 MiB of zeros in a few KB) is refused before the file is
// written, and the error names the Dockerfile line and the setting.
func TestADDArchiveBound(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	const size = 64 << 20
	tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
	tw.Write(make([]byte, size))
	tw.Close()
	zw.Close()
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nADD bomb.tar.gz /x/\n", "bomb.tar.gz": buf.String()})
	before := diskUse(store)
	r := strataRun(t, store, runOpts{Env: []string{"STRATA_MAX_LAYER_BYTES=8388608"}}, "build", ctxDir)
	requireBoundFailure(t, store, before, r, 30*time.Second, 4<<20, // the base layer is unpacked too
		"Dockerfile:2", "more than 8388608 bytes", "STRATA_MAX_LAYER_BYTES")
	strata(t, store, "build", ctxDir) // under the default bound it extracts
}

// TestADDURLBounds: ADD of a URL whose server never answers, stalls
// mid-body, or streams forever fails within STRATA_HTTP_TIMEOUT or at
// STRATA_MAX_LAYER_BYTES, keeping nothing.
func TestADDURLBounds(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	done := make(chan struct{})
	defer close(done)
	chunk := make([]byte, 64<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Write(chunk)
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	env := []string{"STRATA_MAX_LAYER_BYTES=8388608", "STRATA_HTTP_TIMEOUT=1s"}
	for _, tc := range []struct{ name, url, want string }{
		{"silent", "http://" + silent.Addr().String() + "/f", "no data from the server for 1s"},
		{"stall", "http://" + ln.Addr().String() + "/stall", "no data from the server for 1s"},
		{"endless", "http://" + ln.Addr().String() + "/endless", "the download is more than 8388608 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nADD " + tc.url + " /f\n"})
			before := diskUse(store)
			r := strataRun(t, store, runOpts{Env: env}, "build", ctxDir)
			requireBoundFailure(t, store, before, r, 20*time.Second, 9<<20, "Dockerfile:2", tc.want)
		})
	}
}

// TestSparseFileBounds: a step that makes a huge sparse file commits it
// fast against the byte bound (refused at once when over it), and
// COPY --from --chown of it and a local export keep its holes.
func TestSparseFileBounds(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN truncate -s 4G /sparse\n"})
	before := diskUse(store)
	r := strataRun(t, store, runOpts{Env: []string{"STRATA_MAX_LAYER_BYTES=100MB"}}, "build", ctxDir)
	requireBoundFailure(t, store, before, r, 30*time.Second, 4<<20, // the base layer is unpacked too
		"Dockerfile:2", "more than 104857600 bytes", "STRATA_MAX_LAYER_BYTES")

	// Under the bound (a 256 MiB file: committing it still streams its
	// zeros, which the tar format cannot skip), the copies stay sparse.
	const size = 256 << 20
	ctxDir = suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox AS src\nRUN truncate -s 256M /sparse && echo x >> /sparse\n" +
		"FROM busybox\nCOPY --from=src --chown=1:1 /sparse /copy\nRUN echo y >> /copy\n"})
	out := filepath.Join(suite.TempDir(t), "out")
	r = strataRun(t, store, runOpts{}, "build", "-o", "type=local,dest="+out, ctxDir)
	if r.Code != 0 || r.Err != nil {
		t.Fatalf("expected success:\n%s", r)
	}
	t.Logf("build with a %d-byte sparse file: %s", size, r.Elapsed)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(out, "copy"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size+4 || st.Blocks*512 > 1<<20 {
		t.Errorf("exported /copy: size %d, %d bytes of disk; want %d bytes, holes kept", st.Size, st.Blocks*512, size+4)
	}
	if st.Uid != 1 {
		t.Errorf("exported /copy: owner %d, want 1", st.Uid)
	}
	if d := diskUse(store) - before; d > 64<<20 {
		t.Errorf("the store grew by %d bytes for a file of 4 data bytes", d)
	}
}
