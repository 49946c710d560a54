package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

const casesDir = "testdata/cases"

// kitFiles are the files of a case folder that describe the case and are
// not part of its build context.
var kitFiles = map[string]bool{"expected.json": true, "expected-error": true, "build-args": true, "target": true}

// TestConformance builds every case with strata and compares the image with
// BuildKit's (expected.json), or checks that the build fails as BuildKit's
// did (expected-error).
func TestConformance(t *testing.T) {
	suite.RequireBuild(t)
	entries, err := os.ReadDir(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(casesDir, e.Name(), "Dockerfile")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("no cases (folders with a Dockerfile) in %s", casesDir)
	}
	jobs := envInt(t, "CONFORMANCE_JOBS", 1)
	jobs = max(1, min(jobs, 2))
	perCase := time.Duration(envInt(t, "CONFORMANCE_CASE_TIMEOUT", 300)) * time.Second
	sem := make(chan struct{}, jobs)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if jobs > 1 {
				t.Parallel()
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			runCase(t, name, perCase, jobs == 1)
		})
	}
}

func envInt(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", key, v)
	}
	return n
}

// readLines returns the non-empty lines of an optional file that are not comments.
func readLines(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimRight(l, "\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func runCase(t *testing.T, name string, timeout time.Duration, checkLeftovers bool) {
	src := filepath.Join(casesDir, name)
	dir := filepath.Join(suite.WorkDir, "cases", name)
	buildCtx := filepath.Join(dir, name)
	if err := stageContext(src, buildCtx); err != nil {
		t.Fatalf("staging the build context: %v", err)
	}
	if err := suite.Own(dir); err != nil { // rootless: strata writes out.tar here
		t.Fatal(err)
	}

	args := []string{"build", "-f", filepath.Join(buildCtx, "Dockerfile")}
	if target := readLines(t, filepath.Join(src, "target")); len(target) > 0 {
		args = append(args, "--target", strings.TrimSpace(target[0]))
	}
	for _, kv := range readLines(t, filepath.Join(src, "build-args")) {
		args = append(args, "--build-arg", kv)
	}
	out := filepath.Join(dir, "out.tar")
	args = append(args, "--output", "type=docker,dest="+out+",name=conformance/"+name+":latest", buildCtx)

	output, exit, timedOut, err := runStrata(t, timeout, args, nil, nil)
	if err != nil {
		t.Fatalf("running strata: %v", err)
	}
	if werr := os.WriteFile(filepath.Join(dir, "build.log"), output, 0o644); werr != nil {
		t.Log(werr)
	}
	if checkLeftovers {
		defer func() {
			if err := checkNothingLeft(); err != nil {
				suite.markLeftovers()
				t.Errorf("after this case: %v", err)
			}
		}()
	}
	cmdline := "strata " + strings.Join(args, " ")

	if errFile := filepath.Join(src, "expected-error"); fileExists(errFile) {
		wantErr := readLines(t, errFile)
		if len(wantErr) == 0 {
			t.Fatalf("%s/expected-error is empty", src)
		}
		switch {
		case timedOut:
			t.Errorf("build timed out after %v (it should fail with an error containing %q); last lines:\n%s", timeout, wantErr[0], lastLines(output, 10))
		case exit == 0:
			t.Errorf("build succeeded, but it should fail with an error containing: %s\n%s", wantErr[0], cmdline)
		case !bytes.Contains(bytes.ToLower(output), bytes.ToLower([]byte(wantErr[0]))):
			t.Errorf("build failed (exit %d) as it should, but its output lacks: %s\nlast lines:\n%s", exit, wantErr[0], lastLines(output, 10))
		}
		return
	}

	if timedOut {
		t.Fatalf("build timed out after %v; last lines of its output:\n%s", timeout, lastLines(output, 15))
	}
	if exit != 0 {
		t.Fatalf("build failed (exit %d): %s\nlast lines of its output:\n%s", exit, cmdline, lastLines(output, 15))
	}
	want, err := loadDoc(filepath.Join(src, "expected.json"))
	if err != nil {
		t.Fatalf("no usable expected.json or expected-error: %v", err)
	}
	if err := validateArchive(out); err != nil {
		t.Errorf("the built image %s: %v", out, err)
	}
	got, err := flattenArchiveFile(out)
	if err != nil {
		t.Fatalf("cannot read the built image %s: %v", out, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "got.json"), marshalDoc(got), 0o644); err != nil {
		t.Log(err)
	}
	diffs := diffDocs(want, got)
	if len(diffs) > 0 {
		_ = os.WriteFile(filepath.Join(dir, "diff.txt"), []byte(strings.Join(diffs, "\n")+"\n"), 0o644)
		const show = 40
		shown := diffs
		more := ""
		if len(diffs) > show {
			shown = diffs[:show]
			more = fmt.Sprintf("\n    ... %d more", len(diffs)-show)
		}
		t.Errorf("image differs from BuildKit's (%d differences):\n    %s%s", len(diffs), strings.Join(shown, "\n    "), more)
		return
	}
	if os.Getenv("CONFORMANCE_KEEP") == "" {
		_ = os.RemoveAll(dir) // the archives add up
	}
}

// validateArchive reads strata's docker archive with go-containerregistry
// and checks it with validate.Image (digests, sizes, diffIDs).
func validateArchive(archive string) error {
	img, _, err := testenv.OpenDockerArchive(archive)
	if err != nil {
		return err
	}
	if err := testenv.Validate(img); err != nil {
		return fmt.Errorf("not a valid image: %w", err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// runStrata runs the binary under test with env (more environment) and
// stdin, with a timeout (and within the test binary's own deadline). On
// timeout strata gets SIGTERM, so that it releases its mounts and
// containers, and SIGKILL only if it has not exited 30s later. Its output
// is stdout and stderr interleaved; exit is 128 for a signal.
func runStrata(t *testing.T, timeout time.Duration, args, env []string, stdin []byte) (output []byte, exit int, timedOut bool, err error) {
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 45*time.Second; left < timeout {
			timeout = max(left, 10*time.Second)
		}
	}
	o := testenv.RunOpts{Env: env, Timeout: timeout}
	if stdin != nil {
		o.Stdin = bytes.NewReader(stdin)
	}
	r := suite.Run("", o, args...)
	switch {
	case r.TimedOut:
		return []byte(r.Output), 128, true, nil
	case r.Err != nil:
		return []byte(r.Output), 0, false, r.Err
	case r.Code < 0:
		return []byte(r.Output), 128, false, nil // killed by a signal
	}
	return []byte(r.Output), r.Code, false, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// stageContext copies a case folder into a fresh build context without the
// kit's files, like the kit's run.sh: folders and executables 0755, other
// files 0644, symlinks copied as symlinks (never followed), all root-owned.
func stageContext(src, dst string) error {
	return stageTree(src, dst, func(rel string) bool { return kitFiles[rel] })
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // not subject to the umask
}
