package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestBadInput feeds strata broken builds. Each must fail with exit code 1
// (2 only for a wrong command line), print a one-line cause naming what is
// wrong (Dockerfile:LINE where there is a line), leave nothing behind, and
// leave the store usable.
func TestBadInput(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	good := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo ok > /ok\n"})

	cases := []struct {
		name       string
		dockerfile string            // "" → no Dockerfile in the context
		files      map[string]string // more context files
		args       []string          // extra build flags
		codes      []int             // acceptable exit codes
		line       []string          // all on one stderr line (case-insensitive; "a|b" = either)
		anywhere   []string          // anywhere in stderr
		within     time.Duration
	}{
		{
			name:  "MissingDockerfile",
			codes: []int{1},
			line:  []string{"Dockerfile", "no such file|not found|does not exist"},
		},
		{
			name:  "MissingDockerfileFlag",
			args:  []string{"-f", "nope.Dockerfile"},
			codes: []int{1},
			line:  []string{"nope.Dockerfile", "no such file|not found|does not exist"},
		},
		{
			// BuildKit's parser takes a RUN that is not valid JSON as shell
			// form, as docker does: the shell then fails on line 2.
			name:       "UnterminatedJSONRun",
			dockerfile: "FROM busybox\nRUN [\"unterminated\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "unterminated"},
		},
		{
			// A Dockerfile error is not a mistake in strata's command line:
			// exit 1 as for every other Dockerfile error (docker build does).
			name:       "BadFlag",
			dockerfile: "FROM busybox\nCOPY --nope a b\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "--nope"},
		},
		{
			name:       "UnknownInstruction",
			dockerfile: "FROM busybox\nFROBNICATE x\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "frobnicate"},
		},
		{
			name:       "CopySourceMissing",
			dockerfile: "FROM busybox\nCOPY missing-file.txt /\n",
			files:      map[string]string{"present.txt": "here\n"},
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "missing-file.txt"},
		},
		{
			name:       "UnknownFromStage",
			dockerfile: "FROM busybox AS builder\nRUN echo x > /x\nFROM busybox\nCOPY --from=biulder /x /\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:4", "biulder", "builder\""},
			within:     60 * time.Second,
		},
		{
			name:       "StageCycle",
			dockerfile: "FROM a AS a\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:1", "circular|cycle|itself"},
		},
		{
			name:       "FromLaterStage",
			dockerfile: "FROM busybox\nCOPY --from=later /x /\nFROM busybox AS later\nRUN echo x > /x\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "later"},
		},
		{
			name:       "FailingRun",
			dockerfile: "FROM busybox AS failing\nRUN echo out-line && exit 7\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "failing", "echo out-line && exit 7", "exit code: 7|exit code 7|exit status 7"},
			anywhere:   []string{"out-line"},
		},
		{
			// The output of a failing RUN must not turn it into a usage error.
			name:       "FailingRunPrintingUsageWords",
			dockerfile: "FROM busybox\nRUN echo 'unknown flag: --x' && exit 1\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:2", "exit code: 1|exit code 1|exit status 1"},
		},
		{
			name:       "UnreachableRegistry",
			dockerfile: "FROM 127.0.0.1:1/nothing:latest\n",
			codes:      []int{1},
			line:       []string{"Dockerfile:1", "127.0.0.1:1/nothing", "refused"},
			within:     60 * time.Second,
		},
		{
			name:       "UnknownTarget",
			dockerfile: "FROM busybox AS base\nRUN true\nFROM base AS final\nRUN true\n",
			args:       []string{"--target", "nosuch"},
			codes:      []int{1, 2},
			line:       []string{"nosuch"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range c.files {
				files[k] = v
			}
			if c.dockerfile != "" {
				files["Dockerfile"] = c.dockerfile
			}
			ctx := suite.WriteFiles(t, files)
			args := []string{"build"}
			for _, a := range c.args {
				if strings.HasSuffix(a, ".Dockerfile") {
					a = filepath.Join(ctx, a)
				}
				args = append(args, a)
			}
			args = append(args, ctx)
			timeout := c.within
			if timeout == 0 {
				timeout = 2 * time.Minute
			}
			r := strataRun(t, store, runOpts{Timeout: timeout}, args...)
			if r.Err != nil {
				t.Fatalf("strata did not finish in %s:\n%s", timeout, r)
			}
			okCode := false
			for _, c := range c.codes {
				okCode = okCode || r.Code == c
			}
			if !okCode {
				t.Errorf("exit code %d, want one of %v:\n%s", r.Code, c.codes, r)
			}
			if strings.Contains(r.Stderr, "See 'strata --help'") && r.Code != 2 {
				t.Errorf("a usage hint for an error that is not a usage error:\n%s", r)
			}
			if r.Code == 2 && c.dockerfile != "" && len(c.args) == 0 {
				t.Errorf("a Dockerfile error is reported as a command-line usage error (exit 2, \"See 'strata --help'\"):\n%s", r)
			}
			if strings.Contains(r.Stderr, "panic:") || strings.Contains(r.Stderr, "goroutine ") {
				t.Errorf("strata panicked:\n%s", r)
			}
			if _, ok := lineWithAlt(r.Stderr, c.line); !ok {
				t.Errorf("no single stderr line names the cause: want one line holding all of %q:\n%s", c.line, r)
			}
			for _, s := range c.anywhere {
				if !strings.Contains(r.Stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, r)
				}
			}
			if left := testenv.Leftovers(store); len(left) > 0 {
				t.Errorf("the failed build left behind: %q", left)
			}
			// The store is still usable.
			strata(t, store, "images")
			strata(t, store, "build", "-q", "--no-cache", "-t", "good", good)
		})
	}
	r := strata(t, store, "run", "good", "cat", "/ok")
	if strings.TrimSpace(r.Stdout) != "ok" {
		t.Errorf("good build after the bad ones:\n%s", r)
	}
}

// lineWithAlt returns the first line of s holding every item of want,
// compared case-insensitively; an item "a|b" is satisfied by either.
func lineWithAlt(s string, want []string) (string, bool) {
	for _, l := range strings.Split(s, "\n") {
		ll := strings.ToLower(l)
		ok := true
		for _, w := range want {
			any := false
			for _, alt := range strings.Split(w, "|") {
				if strings.Contains(ll, strings.ToLower(alt)) {
					any = true
					break
				}
			}
			if !any {
				ok = false
				break
			}
		}
		if ok {
			return l, true
		}
	}
	return "", false
}
