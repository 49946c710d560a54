package builder

import (
	"strings"
	"testing"
)

// TestInprocFromErrors pins what a from value that cannot be read says,
// wherever it is used (COPY, COPY --link, RUN --mount bind and cache, FROM):
// they all resolve through source.Resolve, and the messages are the ones
// they gave when each resolved on its own. Images are looked up in a local
// registry (as docker.io's mirror), which does not have them.
func TestInprocFromErrors(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	e.withRegistry(startRegistry(t))
	bad := func(o *Options) {
		o.Contexts = map[string]string{"web": "https://example.com/x", "gone": "docker-image://nosuchimage:1"}
	}
	const stage = "FROM busybox AS builder\nFROM busybox\n"
	for _, tc := range []struct {
		name, dockerfile string
		want             []string // in the error, in order
		not              string   // not in the error
	}{
		{"COPY from a stage name typo", stage + "COPY --from=bulder /x /x\n",
			[]string{`Dockerfile:3: COPY --from=bulder /x /x: --from=bulder: no earlier stage has that name; did you mean "builder"?; as an image: `}, ""},
		{"COPY --link from a stage name typo", stage + "COPY --link --from=bulder /x /x\n",
			[]string{`Dockerfile:3: COPY --link --from=bulder /x /x: --from=bulder: no earlier stage has that name; did you mean "builder"?; as an image: `}, ""},
		{"COPY from a missing image", "FROM busybox\nCOPY --from=nosuchimage /x /x\n",
			[]string{`Dockerfile:2: COPY --from=nosuchimage /x /x: --from=nosuchimage: not a stage name, and pulling it as an image failed: `}, ""},
		{"bind from a missing image", stage + "RUN --mount=type=bind,from=nosuchimage,target=/m true\n",
			[]string{`Dockerfile:3: RUN --mount=type=bind,from=nosuchimage,target=/m true: pull index.docker.io/library/nosuchimage:latest: `}, "not a stage name"},
		{"cache seed from a missing image", stage + "RUN --mount=type=cache,from=nosuchimage,target=/c true\n",
			[]string{`Dockerfile:3: RUN --mount=type=cache,from=nosuchimage,target=/c true: pull index.docker.io/library/nosuchimage:latest: `}, "not a stage name"},
		{"cache seed source missing", stage + "RUN --mount=type=cache,from=builder,source=nope,target=/c true\n",
			[]string{`RUN --mount=type=cache,from=builder,source=nope,target=/c true: --mount=type=cache,from=builder,source=nope: lstat `, "/nope: no such file or directory"}, ""},
		{"COPY from a stage, missing file", stage + "COPY --from=builder /nope /x\n",
			[]string{`COPY --from=builder /nope /x: COPY source not found in stage builder: "/nope" not found`}, ""},
		{"COPY from a later stage", "FROM busybox\nCOPY --from=later /x /x\nFROM busybox AS later\n",
			[]string{`stage "later" is defined after the stage that uses it`}, ""},
		{"COPY from a named context with a bad scheme", "FROM busybox\nCOPY --from=web /x /x\n",
			[]string{`Dockerfile:2: COPY --from=web /x /x: --build-context web=https://example.com/x: only directories, docker-image:// and oci-layout:// are supported`}, ""},
		{"bind from a named context with a bad scheme", "FROM busybox\nRUN --mount=from=web,target=/m true\n",
			[]string{`--build-context web=https://example.com/x: only directories, docker-image:// and oci-layout:// are supported`}, ""},
		{"FROM a named context with a bad scheme", "FROM web\n",
			[]string{`Dockerfile:1: FROM web: --build-context web=https://example.com/x: only directories, docker-image:// and oci-layout:// are supported`}, ""},
		{"COPY from a named image that is missing", "FROM busybox\nCOPY --from=gone /x /x\n",
			[]string{`Dockerfile:2: COPY --from=gone /x /x: --build-context gone: pull index.docker.io/library/nosuchimage:1: `}, "not a stage name"},
		{"bind from a named image that is missing", "FROM busybox\nRUN --mount=from=gone,target=/m true\n",
			[]string{`--build-context gone: pull index.docker.io/library/nosuchimage:1: `}, ""},
		{"FROM a named image that is missing", "FROM gone\n",
			[]string{`Dockerfile:1: FROM gone: --build-context gone: pull index.docker.io/library/nosuchimage:1: `}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.build(tc.dockerfile, map[string]string{"x": "x"}, bad)
			if r.err == nil {
				t.Fatalf("the build succeeded, want an error saying %q", tc.want)
			}
			msg := r.err.Error()
			rest := msg
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("err = %s\nwant one saying %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if tc.not != "" && strings.Contains(msg, tc.not) {
				t.Errorf("err = %s\nwant none saying %q", msg, tc.not)
			}
		})
	}
}
