package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestRunOutputOrder builds a RUN that prints to stdout and then fails with
// a message on stderr, several times: the progress output keeps the
// order the process wrote in, and the failure's "last output lines" end
// with the real error.
func TestRunOutputOrder(t *testing.T) {
	s := newBusyboxStore(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox:latest\n" +
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
		if r.code != 1 {
			t.Fatalf("want exit code 1:\n%s", r)
		}
		var got []string
		for _, l := range strings.Split(r.stderr, "\n") {
			if m := logLine.FindStringSubmatch(l); m != nil {
				got = append(got, m[1])
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("build %d: RUN output out of order:\n%s", n, strings.Join(got, "\n"))
		}
		_, tail, ok := strings.Cut(r.stderr, "last output lines:\n")
		if !ok {
			t.Fatalf("build %d: no failure summary:\n%s", n, r)
		}
		lines := strings.Split(strings.TrimRight(tail, "\n"), "\n")
		if last := strings.TrimSpace(lines[len(lines)-1]); last != lsErr {
			t.Fatalf("build %d: the failure summary ends with %q, want the ls error:\n%s", n, last, tail)
		}
	}
}
