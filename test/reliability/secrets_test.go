package reliability

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/test/internal/testenv"
)

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scanBytes reports whether needle is in b, or in b decompressed (gzip,
// zstd), or in a member of b as a tar archive, recursively.
func scanBytes(b, needle []byte, depth int) bool {
	if bytes.Contains(b, needle) {
		return true
	}
	if depth >= 4 {
		return false
	}
	if len(b) > 4 && (b[0] == 0x1f && b[1] == 0x8b || bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd})) {
		zr, err := layer.Decompress(bytes.NewReader(b))
		if err == nil {
			d, _ := io.ReadAll(io.LimitReader(zr, 1<<30))
			zr.Close()
			if scanBytes(d, needle, depth+1) {
				return true
			}
		}
	}
	if len(b) >= 512 && string(b[257:262]) == "ustar" {
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.Contains(h.Name, string(needle)) || strings.Contains(h.Linkname, string(needle)) {
				return true
			}
			for k, v := range h.PAXRecords {
				if strings.Contains(k+v, string(needle)) {
					return true
				}
			}
			m, _ := io.ReadAll(tr)
			if scanBytes(m, needle, depth+1) {
				return true
			}
		}
	}
	return false
}

// grepTree lists the regular files below dir (and names) holding needle,
// looking into compressed files and archives.
func grepTree(t testing.TB, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if strings.Contains(d.Name(), string(needle)) {
			hits = append(hits, p+" (name)")
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if target, _ := os.Readlink(p); strings.Contains(target, string(needle)) {
				hits = append(hits, p+" (symlink target)")
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && scanBytes(b, needle, 0) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// TestSecretsDoNotLeak builds with --secret (from a file and as an
// environment variable) and checks the value is in no file of the store
// (blobs decompressed, unpacked layers, cache records and their explanations,
// stat caches), no output (docker and OCI archives, local cache export,
// metadata, iid, HTML report) and not in the build output, also when the RUN
// that uses it fails.
func TestSecretsDoNotLeak(t *testing.T) {
	t.Parallel()
	suite.RequireBuild(t)
	store := suite.NewBusyboxStore(t)
	secret := fmt.Sprintf("S3CR3T-%d-%x-value", time.Now().UnixNano(), randIntn(1<<30))
	dir := suite.TempDir(t)
	secretFile := filepath.Join(dir, "secret.txt")
	os.WriteFile(secretFile, []byte(secret), 0o600)
	outs := filepath.Join(dir, "outs")
	os.MkdirAll(outs, 0o755)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\n" +
		"RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len && cp /run/secrets/tok /tmp/x && rm /tmp/x\n" +
		"RUN --mount=type=secret,id=tok,env=TOK test -n \"$TOK\" && echo ${#TOK} > /envlen\n" +
		"RUN --mount=type=secret,id=tok,target=/etc/tok.conf test -s /etc/tok.conf && echo ok > /target-ok\n" +
		"RUN --mount=type=secret,id=envtok,env=ETOK test -n \"$ETOK\" && echo ok > /env-ok\n",
	})
	var logs []string
	for i, progress := range []string{"plain", "json"} {
		r := strataRun(t, store, runOpts{Env: []string{"MY_SECRET_ENV=" + secret}}, "build", "--progress", progress,
			"--secret", "id=tok,src="+secretFile, "--secret", "id=envtok,env=MY_SECRET_ENV",
			"-t", "withsecret", "--no-cache",
			"-o", "type=docker,dest="+filepath.Join(outs, fmt.Sprintf("docker-%d.tar", i)),
			"-o", "type=oci,dest="+filepath.Join(outs, fmt.Sprintf("oci-%d.tar", i)),
			"-o", "type=local,dest="+filepath.Join(outs, fmt.Sprintf("rootfs-%d", i)),
			"--cache-to", "type=local,dest="+filepath.Join(outs, fmt.Sprintf("cache-%d", i)),
			"--metadata-file", filepath.Join(outs, fmt.Sprintf("meta-%d.json", i)),
			"--iidfile", filepath.Join(outs, fmt.Sprintf("iid-%d", i)),
			"--report", filepath.Join(outs, fmt.Sprintf("report-%d.html", i)),
			ctx)
		hostileTried.Add(1)
		if r.Code != 0 {
			t.Fatalf("build with secrets failed:\n%s", r)
		}
		logs = append(logs, r.Stdout, r.Stderr)
		files := imageFiles(t, store, "docker.io/library/withsecret:latest")
		if strings.TrimSpace(files["len"].content) != fmt.Sprint(len(secret)) || strings.TrimSpace(files["envlen"].content) != fmt.Sprint(len(secret)) ||
			files["target-ok"].content != "ok\n" || files["env-ok"].content != "ok\n" {
			t.Errorf("the RUNs did not see the secret: len %q envlen %q target %q env %q", files["len"].content, files["envlen"].content, files["target-ok"].content, files["env-ok"].content)
		}
	}
	// A RUN that fails while it holds the secret, and one whose command
	// line names the secret's environment variable.
	failing := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\n" +
		"RUN --mount=type=secret,id=tok,env=TOK sh -c 'test -n \"$TOK\"; echo the value is hidden; exit 3'\n"})
	r := strataRun(t, store, runOpts{}, "build", "--progress", "plain", "--secret", "id=tok,src="+secretFile, failing)
	hostileTried.Add(1)
	if r.Code != 1 {
		t.Errorf("the failing RUN: exit %d, want 1:\n%s", r.Code, r)
	}
	logs = append(logs, r.Stdout, r.Stderr)
	// strata history/inspect of the image print what the store holds.
	for _, cmd := range [][]string{{"history", "--no-trunc", "withsecret"}, {"inspect", "withsecret"}} {
		r := strataRun(t, store, runOpts{}, cmd...)
		logs = append(logs, r.Stdout, r.Stderr)
	}

	needle := []byte(secret)
	for i, l := range logs {
		if strings.Contains(l, secret) {
			corruptions.Add(1)
			t.Errorf("LEAK: the secret is in the output of command %d:\n%s", i/2, testenv.Indent(l))
		}
	}
	for _, d := range []string{store, outs} {
		if hits := grepTree(t, d, needle); len(hits) > 0 {
			corruptions.Add(1)
			t.Errorf("LEAK: the secret is in %d files: %q", len(hits), hits)
		}
	}
	if hits := grepTree(t, outs, []byte("run/secrets/tok")); len(hits) > 0 {
		t.Logf("note: the secret's mount point is named in %q (the name, not the value)", hits)
	}
	requireNoLeftovers(t, store, "after the secret builds")
}
