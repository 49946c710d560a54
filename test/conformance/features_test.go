package conformance

// TestFeatures builds the cases under testdata/features: one per Dockerfile
// feature, each with a SUBSET expectation written from Docker's documented
// behaviour (not a BuildKit listing). See testdata/features/README.md for the
// case format; the image is flattened with the same code as TestConformance.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const featuresDir = "testdata/features"

// featureKitFiles are the top-level entries of a feature case folder that
// describe the case and are not part of its build context.
var featureKitFiles = map[string]bool{
	"expect.json": true, "expected-error": true, "expected-warnings": true,
	"expected-output": true, "args": true, "env": true, "stdin": true,
	"stdin-tar": true, "target": true, "build-args": true, "known-bug": true,
	"repeat": true, "www": true, "repos": true,
}

// featureExpect is expect.json: only what is given is checked.
type featureExpect struct {
	Config     json.RawMessage `json:"config"`
	Files      []expectFile    `json:"files"`
	Absent     []string        `json:"absent"`
	GrepAbsent []string        `json:"grep_absent"`
}

// expectFile is one path that must exist; nil fields are not compared.
type expectFile struct {
	Path    string  `json:"path"`
	Type    *string `json:"type"`
	Mode    *string `json:"mode"`
	UID     *int    `json:"uid"`
	GID     *int    `json:"gid"`
	Size    *int64  `json:"size"`
	Content *string `json:"content"`
	Link    *string `json:"link"`
	// Mtime (RFC 3339, UTC) is compared with the tar header of the topmost
	// layer that holds the path.
	Mtime *string `json:"mtime"`
}

func TestFeatures(t *testing.T) {
	suite.RequireBuild(t)
	entries, err := os.ReadDir(featuresDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		for _, f := range []string{"expect.json", "expected-error", "expected-warnings"} {
			if fileExists(filepath.Join(featuresDir, e.Name(), f)) {
				names = append(names, e.Name())
				break
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("no cases (folders with expect.json, expected-error or expected-warnings) in %s", featuresDir)
	}
	timeout := time.Duration(envInt(t, "CONFORMANCE_CASE_TIMEOUT", 120)) * time.Second
	for _, name := range names {
		t.Run(name, func(t *testing.T) { runFeature(t, name, timeout) })
	}
}

// featureRun is one case being run; problems are collected so that a case
// marked known-bug can be reported as a skip.
type featureRun struct {
	t        *testing.T
	name     string
	src      string // the case folder in testdata
	dir      string // its work folder
	staged   string // the staged build context ({{CASE}})
	problems []string
}

func (f *featureRun) fail(format string, args ...any) {
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func runFeature(t *testing.T, name string, timeout time.Duration) {
	f := &featureRun{
		t:    t,
		name: name,
		src:  filepath.Join(featuresDir, name),
		dir:  filepath.Join(suite.WorkDir, "features", name),
	}
	f.staged = filepath.Join(f.dir, "context")
	knownBug := readLines(t, filepath.Join(f.src, "known-bug"))
	stdinTar := fileExists(filepath.Join(f.src, "stdin-tar"))
	skipTop := func(rel string) bool {
		return featureKitFiles[rel] || (stdinTar && rel == "ctx")
	}
	if err := stageTree(f.src, f.staged, skipTop); err != nil {
		t.Fatalf("staging the build context: %v", err)
	}
	// Deferred (run LIFO): the leftover check, then the work folder's removal,
	// so that both also happen when the case ends in t.Skip or t.Fatal.
	defer func() {
		if !t.Failed() && os.Getenv("CONFORMANCE_KEEP") == "" {
			_ = os.RemoveAll(f.dir)
		}
	}()
	defer func() {
		if err := checkNothingLeft(); err != nil {
			suite.markLeftovers()
			t.Errorf("after this case: %v", err)
		}
	}()

	f.run(timeout, stdinTar)

	switch {
	case len(knownBug) > 0 && len(f.problems) > 0:
		t.Logf("still failing as marked:\n    %s", strings.Join(f.problems, "\n    "))
		t.Skipf("known bug: %s", knownBug[0])
	case len(knownBug) > 0:
		t.Errorf("the case passes now but is marked known-bug (%q): remove %s/known-bug", knownBug[0], f.src)
	default:
		for _, p := range f.problems {
			t.Error(p)
		}
	}
}

func (f *featureRun) run(timeout time.Duration, stdinTar bool) {
	t := f.t
	ph := &placeholders{t: t, f: f}
	expand := func(lines []string) []string {
		out := make([]string, len(lines))
		for i, l := range lines {
			out[i] = ph.expand(l)
		}
		return out
	}
	extra := expand(readLines(t, filepath.Join(f.src, "args")))
	envLines := expand(readLines(t, filepath.Join(f.src, "env")))
	checkMode := fileExists(filepath.Join(f.src, "expected-warnings"))

	args := []string{"build"}
	if target := readLines(t, filepath.Join(f.src, "target")); len(target) > 0 {
		args = append(args, "--target", strings.TrimSpace(target[0]))
	}
	for _, kv := range readLines(t, filepath.Join(f.src, "build-args")) {
		args = append(args, "--build-arg", kv)
	}
	if checkMode {
		args = append(args, "--check")
	}
	args = append(args, extra...)
	out := filepath.Join(f.dir, "out.tar")
	iid := filepath.Join(f.dir, "iid.txt")
	args = append(args, "--iidfile", iid,
		"--output", "type=docker,dest="+out+",name=features/"+f.name+":latest")
	if !contextFromStdin(extra) {
		args = append(args, f.staged)
	}

	var stdin []byte
	if b, err := os.ReadFile(filepath.Join(f.src, "stdin")); err == nil {
		stdin = b
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if stdinTar {
		b, err := tarOfTree(filepath.Join(f.src, "ctx"), filepath.Join(f.dir, "stdin-ctx"))
		if err != nil {
			t.Fatalf("tar of ctx/ for stdin: %v", err)
		}
		stdin = b
	}

	repeat := 1
	if r := readLines(t, filepath.Join(f.src, "repeat")); len(r) > 0 {
		n, err := strconv.Atoi(strings.TrimSpace(r[0]))
		if err != nil || n < 1 {
			t.Fatalf("%s/repeat: want a positive number, got %q", f.src, r[0])
		}
		repeat = n
	}

	cmdline := "strata " + strings.Join(quoteArgs(args), " ")
	if stdin != nil {
		cmdline += " < STDIN"
	}
	if len(envLines) > 0 {
		cmdline = strings.Join(envLines, " ") + " " + cmdline
	}
	var output []byte
	var exit int
	for i := 1; i <= repeat; i++ {
		_ = os.Remove(out)
		_ = os.Remove(iid)
		o, code, timedOut, err := runStrata(t, timeout, args, envLines, stdin)
		if err != nil {
			t.Fatalf("running strata: %v", err)
		}
		_ = os.WriteFile(filepath.Join(f.dir, fmt.Sprintf("build%d.log", i)), o, 0o644)
		if timedOut {
			f.fail("build %d/%d timed out after %v: %s\nlast lines:\n%s", i, repeat, timeout, cmdline, lastLines(o, 15))
			return
		}
		output, exit = o, code
		if i < repeat && exit != 0 {
			f.fail("build %d/%d failed (exit %d): %s\nlast lines:\n%s", i, repeat, exit, cmdline, lastLines(o, 15))
			return
		}
	}
	t.Logf("%s", cmdline)

	if wantErr := readLines(t, filepath.Join(f.src, "expected-error")); fileExists(filepath.Join(f.src, "expected-error")) {
		f.checkError(wantErr, output, exit, cmdline)
		return
	}
	if exit != 0 {
		f.fail("build failed (exit %d): %s\nlast lines of its output:\n%s", exit, cmdline, lastLines(output, 15))
		return
	}
	for _, want := range readLines(t, filepath.Join(f.src, "expected-output")) {
		if !bytes.Contains(bytes.ToLower(output), bytes.ToLower([]byte(want))) {
			f.fail("the build output lacks %q; last lines:\n%s", want, lastLines(output, 15))
		}
	}
	if checkMode {
		f.checkWarnings(output)
		for _, p := range []string{out, iid} {
			if fileExists(p) {
				f.fail("--check wrote %s: no image should be built", filepath.Base(p))
			}
		}
		return
	}
	if fileExists(filepath.Join(f.src, "expect.json")) {
		f.checkImage(out)
	}
}

// contextFromStdin says whether the extra arguments give "-" as the build
// context (a positional "-", not the value of -f/--file).
func contextFromStdin(args []string) bool {
	for i, a := range args {
		if a != "-" {
			continue
		}
		if i > 0 && (args[i-1] == "-f" || args[i-1] == "--file") {
			continue
		}
		return true
	}
	return false
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\{}*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

func (f *featureRun) checkError(want []string, output []byte, exit int, cmdline string) {
	if len(want) == 0 {
		f.t.Fatalf("%s/expected-error is empty", f.src)
	}
	if exit == 0 {
		f.fail("build succeeded, but it should fail with an error containing %q: %s", want[0], cmdline)
		return
	}
	if !bytes.Contains(bytes.ToLower(output), bytes.ToLower([]byte(want[0]))) {
		f.fail("build failed (exit %d) as it should, but its output lacks %q; last lines:\n%s", exit, want[0], lastLines(output, 10))
	}
	for i, expr := range want[1:] {
		re, err := regexp.Compile(expr)
		if err != nil {
			f.t.Fatalf("%s/expected-error line %d: %v", f.src, i+2, err)
		}
		if !re.Match(output) {
			f.fail("build failed (exit %d), but its output does not match /%s/; last lines:\n%s", exit, expr, lastLines(output, 10))
		}
	}
}

// warningLine is how strata (like docker build) prints a check finding.
var warningLine = regexp.MustCompile(`(?m)^WARNING: (\w+) - (?:\S*/)?Dockerfile:(\d+) - (.*)$`)

// checkWarnings compares the WARNING lines with expected-warnings: lines
// RULE:LINE, optionally followed by a space and a substring of the message.
func (f *featureRun) checkWarnings(output []byte) {
	type key struct {
		rule string
		line int
	}
	got := map[key][]string{}
	for _, m := range warningLine.FindAllStringSubmatch(string(output), -1) {
		n, _ := strconv.Atoi(m[2])
		k := key{m[1], n}
		got[k] = append(got[k], m[3])
	}
	want := map[key]bool{}
	for _, l := range readLines(f.t, filepath.Join(f.src, "expected-warnings")) {
		spec, msg, _ := strings.Cut(l, " ")
		rule, line, ok := strings.Cut(spec, ":")
		n, err := strconv.Atoi(line)
		if !ok || err != nil {
			f.t.Fatalf("%s/expected-warnings: want RULE:LINE [message], got %q", f.src, l)
		}
		k := key{rule, n}
		want[k] = true
		msgs, found := got[k]
		switch {
		case !found:
			f.fail("missing warning %s at Dockerfile:%d", rule, n)
		case msg != "" && !strings.Contains(strings.Join(msgs, "\n"), msg):
			f.fail("warning %s at Dockerfile:%d says %q, want it to contain %q", rule, n, msgs, msg)
		}
	}
	var extra []string
	for k, msgs := range got {
		if !want[k] {
			extra = append(extra, fmt.Sprintf("%s:%d %s", k.rule, k.line, strings.Join(msgs, " | ")))
		}
	}
	sort.Strings(extra)
	for _, e := range extra {
		f.fail("unexpected warning %s", e)
	}
	if len(want) > 0 && len(got) == 0 {
		f.fail("no WARNING lines in the output; last lines:\n%s", lastLines(output, 15))
	}
}

func (f *featureRun) checkImage(out string) {
	exp, raw, err := loadFeatureExpect(filepath.Join(f.src, "expect.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := validateArchive(out); err != nil {
		f.fail("the built image %s: %v", out, err)
	}
	f.compareImage(exp, raw, out)
}

// compareImage checks the image archive out against an expect.json (raw holds
// its config fields as given).
func (f *featureRun) compareImage(exp featureExpect, raw map[string]json.RawMessage, out string) {
	got, err := flattenArchiveFile(out)
	if err != nil {
		f.fail("cannot read the built image %s: %v", out, err)
		return
	}
	_ = os.WriteFile(filepath.Join(f.dir, "got.json"), marshalDoc(got), 0o644)
	scan, err := scanArchive(out)
	if err != nil {
		f.fail("cannot scan the built image %s: %v", out, err)
		return
	}

	// config: only the fields given, normalized like expected.json
	if len(raw) > 0 {
		var want imageConfig
		dec := json.NewDecoder(bytes.NewReader(exp.Config))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil {
			f.t.Fatalf("%s/expect.json config: %v", f.src, err)
		}
		want.normalize()
		gotCfg := got.Config
		gotCfg.normalize()
		wantFields, gotFields := fieldsJSON(want), fieldsJSON(gotCfg)
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if wantFields[k] != gotFields[k] {
				f.fail("config %s differs: want %s, got %s", k, wantFields[k], gotFields[k])
			}
		}
	}

	byPath := map[string]fileEntry{}
	for _, e := range got.Files {
		byPath[e.Path] = e
	}
	for _, w := range exp.Files {
		g, ok := byPath[w.Path]
		if !ok {
			f.fail("missing %s", w.Path)
			continue
		}
		cmp := func(field string, want, got any) {
			if ws, gs := fmt.Sprint(want), fmt.Sprint(got); ws != gs {
				f.fail("%s: %s differs: want %s, got %s", w.Path, field, ws, gs)
			}
		}
		if w.Type != nil {
			cmp("type", *w.Type, g.Type)
		}
		if w.Mode != nil {
			cmp("mode", *w.Mode, g.Mode)
		}
		if w.UID != nil {
			cmp("uid", *w.UID, g.UID)
		}
		if w.GID != nil {
			cmp("gid", *w.GID, g.GID)
		}
		if w.Size != nil {
			cmp("size", *w.Size, g.Size)
		}
		if w.Link != nil {
			cmp("link", *w.Link, g.Link)
		}
		if w.Content != nil {
			sum := sha256.Sum256([]byte(*w.Content))
			if g.Type != "file" {
				f.fail("%s: content expected, but it is a %s", w.Path, g.Type)
			} else if hex.EncodeToString(sum[:]) != g.SHA256 {
				shown := fmt.Sprintf("%d bytes, sha256 %s", g.Size, shortValue(g.SHA256))
				if b, ok := scan.content[w.Path]; ok && sha256Hex(b) == g.SHA256 {
					shown = strconv.Quote(string(b))
				}
				f.fail("%s: content differs: want %q, got %s", w.Path, *w.Content, shown)
			}
		}
		if w.Mtime != nil {
			h := scan.headers[w.Path]
			switch {
			case h == nil:
				f.fail("%s: mtime: no layer entry with this exact name", w.Path)
			case h.ModTime.UTC().Format(time.RFC3339) != *w.Mtime:
				f.fail("%s: mtime differs: want %s, got %s", w.Path, *w.Mtime, h.ModTime.UTC().Format(time.RFC3339))
			}
		}
	}
	for _, p := range exp.Absent {
		if g, ok := byPath[path.Clean(p)]; ok {
			f.fail("%s should not exist, but it does (%s)", p, summary(g))
		}
	}
	for _, s := range exp.GrepAbsent {
		if where := scan.grep([]byte(s)); where != "" {
			f.fail("%q must not appear in the image, but it is in %s", s, where)
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fieldsJSON maps each config field name to its compact JSON.
func fieldsJSON(c imageConfig) map[string]string {
	b, _ := json.Marshal(c)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func loadFeatureExpect(file string) (featureExpect, map[string]json.RawMessage, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return featureExpect{}, nil, err
	}
	return parseFeatureExpect(file, b)
}

func parseFeatureExpect(file string, b []byte) (featureExpect, map[string]json.RawMessage, error) {
	b = bytes.ReplaceAll(b, []byte("{{GOARCH}}"), []byte(runtime.GOARCH))
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e featureExpect
	if err := dec.Decode(&e); err != nil {
		return featureExpect{}, nil, fmt.Errorf("%s: %w", file, err)
	}
	var raw map[string]json.RawMessage
	if len(e.Config) > 0 {
		if err := json.Unmarshal(e.Config, &raw); err != nil {
			return featureExpect{}, nil, fmt.Errorf("%s: config: %w", file, err)
		}
	}
	return e, raw, nil
}

// archiveScan holds what the flattener does not keep: the raw bytes of the
// archive's files and uncompressed layers (for grep_absent), and per path the
// tar header and small contents of the topmost layer entry with that name.
type archiveScan struct {
	parts   map[string][]byte // description -> bytes
	headers map[string]*tar.Header
	content map[string][]byte
}

func scanArchive(file string) (*archiveScan, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	a, err := readArchive(bufio.NewReader(fh))
	if err != nil {
		return nil, err
	}
	s := &archiveScan{parts: map[string][]byte{}, headers: map[string]*tar.Header{}, content: map[string][]byte{}}
	for name, b := range a.data {
		s.parts["archive file "+name] = b
	}
	img, err := imageFromArchive(a)
	if err != nil {
		return nil, err
	}
	s.parts["image config (with history)"] = img.config
	for i, blob := range img.layers {
		r, done, err := decompress(blob)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		data, err := io.ReadAll(r)
		done()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		s.parts[fmt.Sprintf("layer %d", i+1)] = data
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", i+1, err)
			}
			name := path.Clean("/" + hdr.Name)
			s.headers[name] = hdr
			delete(s.content, name)
			if hdr.Typeflag == tar.TypeReg && hdr.Size <= 1<<20 {
				b, err := io.ReadAll(tr)
				if err != nil {
					return nil, fmt.Errorf("layer %d: %s: %w", i+1, name, err)
				}
				s.content[name] = b
			}
		}
	}
	return s, nil
}

// grep says where needle occurs ("" when nowhere).
func (s *archiveScan) grep(needle []byte) string {
	var where []string
	for name, b := range s.parts {
		if bytes.Contains(b, needle) {
			where = append(where, name)
		}
	}
	sort.Strings(where)
	return strings.Join(where, ", ")
}

// stageTree copies src to dst like stageContext (folders and executables
// 0755, other files 0644, symlinks as symlinks), leaving out the top-level
// entries skip names.
func stageTree(src, dst string, skip func(rel string) bool) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel != "." && !strings.Contains(rel, string(filepath.Separator)) && skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, 0o755)
		case info.Mode().IsRegular():
			mode := os.FileMode(0o644)
			if info.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(p, target, mode)
		}
		return fmt.Errorf("%s: unsupported file type %v", p, info.Mode().Type())
	})
}

// tarOfTree stages src into tmp and returns a tar of it (sorted, root-owned,
// fixed times).
func tarOfTree(src, tmp string) ([]byte, error) {
	if err := stageTree(src, tmp, nil); err != nil {
		return nil, err
	}
	var paths []string
	if err := filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != tmp {
			paths = append(paths, p)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range paths {
		rel, _ := filepath.Rel(tmp, p)
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil, err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if _, err := tw.Write(b); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
