package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRunOutputOrder builds a RUN that prints to stdout and then fails with
// a message on stderr, several times: the progress output keeps the
// order the process wrote in, and the failure's "last output lines" end
// with the real error.
func TestRunOutputOrder(t *testing.T) {
	s := suite.NewBusyboxStore(t)
	dir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\n" +
		"RUN echo before && for i in $(seq 30); do echo line $i; done && ls /nonexistent\n"})
	const lsErr = "ls: /nonexistent: No such file or directory"
	var want []string
	want = append(want, "before")
	for i := 1; i <= 30; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	want = append(want, lsErr)
	logLine := regexp.MustCompile(`^#2 [0-9]+\.[0-9]{3} (.*)$`)
	for n := 0; n < 5; n++ {
		r := strataRun(t, s, runOpts{}, "build", "--progress=plain", "--no-cache", dir)
		if r.Code != 1 {
			t.Fatalf("want exit code 1:\n%s", r)
		}
		var got []string
		for _, l := range strings.Split(r.Stderr, "\n") {
			if m := logLine.FindStringSubmatch(l); m != nil {
				got = append(got, m[1])
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("build %d: RUN output out of order:\n%s", n, strings.Join(got, "\n"))
		}
		_, tail, ok := strings.Cut(r.Stderr, "last output lines:\n")
		if !ok {
			t.Fatalf("build %d: no failure summary:\n%s", n, r)
		}
		lines := strings.Split(strings.TrimRight(tail, "\n"), "\n")
		if last := strings.TrimSpace(lines[len(lines)-1]); last != lsErr {
			t.Fatalf("build %d: the failure summary ends with %q, want the ls error:\n%s", n, last, tail)
		}
	}
}

// jsonEvents parses every line of out as a --progress=json event and fails
// the test on a line that is not one.
func jsonEvents(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" && out == "" {
			break
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Errorf("%s line %d is not a JSON event: %q", what, i+1, l)
			continue
		}
		if e["type"] == nil || e["time"] == nil {
			t.Errorf("%s line %d has no type or time: %q", what, i+1, l)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestProgressJSONOnly checks that with --progress=json every line strata
// writes is a JSON event: for a build that tags its image, one that warns,
// and one that fails.
func TestProgressJSONOnly(t *testing.T) {
	s := suite.NewBusyboxStore(t)
	ok := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\nRUN echo hello\n"})
	r := strata(t, s, "build", "--progress=json", "-t", "json-ok", "--build-arg", "UNUSED=1", ok)
	jsonEvents(t, "stdout", r.Stdout)
	evs := jsonEvents(t, "stderr", r.Stderr)
	var names []string
	for _, e := range evs {
		if e["type"] == "message" {
			names = append(names, fmt.Sprint(e["line"]))
		}
	}
	if !strings.Contains(strings.Join(names, "\n"), "naming to json-ok done") {
		t.Errorf("no message event names the image:\n%s", r.Stderr)
	}

	bad := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\nRUN echo out && exit 3\n"})
	r = strataRun(t, s, runOpts{}, "build", "--progress=json", bad)
	if r.Code != 1 {
		t.Fatalf("want exit code 1:\n%s", r)
	}
	jsonEvents(t, "stdout", r.Stdout)
	evs = jsonEvents(t, "stderr", r.Stderr)
	if len(evs) == 0 {
		t.Fatalf("no events:\n%s", r)
	}
	last := evs[len(evs)-1]
	if last["type"] != "error" || !strings.Contains(fmt.Sprint(last["error"]), "exit code: 3") {
		t.Errorf("the last event is not the build's error: %v", last)
	}
}

// TestBadNamesFailBeforeBuilding checks that bad image names, outputs,
// cache references and platforms are usage errors (exit code 2) found
// before any step runs.
func TestBadNamesFailBeforeBuilding(t *testing.T) {
	s := suite.NewBusyboxStore(t)
	dir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\nRUN echo ran && sleep 2\n"})
	missing := filepath.Join(suite.TempDir(t), "no-such-folder")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "Bad:Tag"}, `-t Bad:Tag: invalid image name "Bad:Tag": repository name "Bad" must be lowercase`},
		{[]string{"-t", "ok", "-t", "x@sha256:" + strings.Repeat("0", 64)}, "cannot have a digest"},
		{[]string{"--output", "type=image,name=Bad:Tag"}, `--output name=Bad:Tag: invalid image name`},
		{[]string{"--output", "type=docker"}, "needs dest=FILE"},
		{[]string{"--push"}, "nothing to push"},
		{[]string{"--cache-to", "type=registry,ref=Bad:Ref"}, `--cache-to: invalid image reference "Bad:Ref"`},
		{[]string{"--cache-from", "type=registry,ref=Bad:Ref"}, `--cache-from: invalid image reference "Bad:Ref"`},
		{[]string{"--cache-to", "type=bogus"}, "type must be registry, local or inline"},
		{[]string{"--platform", "linux/amd64,linux/arm64", "--output", "type=docker,dest=" + dir + "/x.tar"}, "docker exporter does not currently support exporting manifest lists"},
		{[]string{"--platform", "linux/arm64,linux/arm64/v8"}, "are the same platform"},
		{[]string{"--platform", "a/b/c/d"}, "--platform=a/b/c/d"},
		// files the build writes need a folder to go to
		{[]string{"--output", "type=docker,dest=" + missing + "/x.tar"}, "--output type=docker,dest=" + missing + "/x.tar: folder " + missing},
		{[]string{"--output", "type=oci,dest=" + dir + "/Dockerfile/x.tar"}, "is not a folder"},
		{[]string{"--iidfile", missing + "/id"}, "--iidfile " + missing + "/id: folder"},
		{[]string{"--metadata-file", missing + "/m.json"}, "--metadata-file " + missing + "/m.json: folder"},
		{[]string{"--report", missing + "/r.html"}, "--report " + missing + "/r.html: folder"},
	} {
		args := append(append([]string{"build", "--progress=plain"}, tc.args...), dir)
		r := strataRun(t, s, runOpts{}, args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("want exit code 2 and %q:\n%s", tc.want, r)
		}
		if strings.Contains(r.Stderr, "[stage-0") || r.Elapsed > 2*time.Second {
			t.Errorf("the build started before the error:\n%s", r)
		}
	}
}

// TestErrorsSayWhatIsWrong checks the error lines users meet first: a
// missing image in a real registry (FROM and COPY --from) is "not found",
// without Go maps, and a failing RUN continued over several lines is named
// whole in the ERROR line, with all its lines marked in the excerpt.
func TestErrorsSayWhatIsWrong(t *testing.T) {
	s := suite.NewBusyboxStore(t)
	reg := startRegistry(t)
	for _, df := range []string{
		"FROM " + reg.Addr + "/nope:latest\nRUN true\n",
		"FROM busybox:latest\nCOPY --from=" + reg.Addr + "/nope:tag /x /x\n",
	} {
		r := strataRun(t, s, runOpts{}, "build", "--progress=plain", suite.WriteFiles(t, map[string]string{"Dockerfile": df}))
		if r.Code != 1 || strings.Contains(r.Stderr, "map[") || !strings.Contains(r.Stderr, "/nope") || !strings.Contains(r.Stderr, "not found: manifest unknown") {
			t.Errorf("want a failure that says the image is not found, without Go maps:\n%s", r)
		}
	}

	dir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\nRUN set -eux; \\\n    echo one; \\\n    false\n"})
	r := strataRun(t, s, runOpts{}, "build", "--progress=plain", dir)
	if r.Code != 1 {
		t.Fatalf("want exit code 1:\n%s", r)
	}
	if !strings.Contains(r.Stderr, "ERROR: Dockerfile:2: RUN set -eux; echo one; false: ") {
		t.Errorf("the ERROR line does not name the whole RUN:\n%s", r)
	}
	if !strings.Contains(r.Stderr, "   4 | >>>     false\n") {
		t.Errorf("the excerpt does not mark the RUN's last line:\n%s", r)
	}
}

// TestStepNumbersAndBaseUnpackTime builds FROM an image pulled from a real
// registry (so its layers are unpacked on first use) with --progress=json:
// the steps shown are numbered 1/N..N/N without gaps (config-only
// instructions are no steps, as in BuildKit), and the time to unpack the
// base is the FROM step's, not the next step's.
func TestStepNumbersAndBaseUnpackTime(t *testing.T) {
	reg := startRegistry(t)
	src := suite.NewBusyboxStore(t)
	big := reg.Addr + "/manyfiles:1"
	dir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\n" +
		"RUN mkdir /many && cd /many && i=0; while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i+1)); done\n"})
	strata(t, src, "build", "--progress=plain", "-t", big, dir)
	strata(t, src, "push", big)

	s := suite.NewStore(t)
	dir = suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM " + big + "\n" +
		"ENV A=1\nLABEL x=y\nARG B=2\nWORKDIR /w\nUSER root\nRUN echo hi\nCMD [\"sh\"]\n"})
	r := strata(t, s, "build", "--progress=json", dir)
	type step struct {
		name     string
		duration float64
	}
	var steps []step
	for _, e := range jsonEvents(t, "stderr", r.Stderr) {
		name, _ := e["name"].(string)
		if e["type"] == "done" && strings.HasPrefix(name, "[stage-0 ") {
			d, _ := e["duration"].(float64)
			steps = append(steps, step{name, d})
		}
	}
	want := []string{"[stage-0 1/3] FROM " + big, "[stage-0 2/3] WORKDIR /w", "[stage-0 3/3] RUN echo hi"}
	var names []string
	for _, st := range steps {
		names = append(names, st.name)
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("steps:\n%s\nwant:\n%s\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"), r.Stderr)
	}
	from, workdir := steps[0].duration, steps[1].duration
	t.Logf("FROM %.3fs, WORKDIR %.3fs", from, workdir)
	if from < 5*workdir {
		t.Errorf("unpacking the base was charged to WORKDIR (%.3fs) rather than FROM (%.3fs):\n%s", workdir, from, r.Stderr)
	}
}
