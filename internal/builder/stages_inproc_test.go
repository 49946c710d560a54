package builder

// In-process builds of multi-stage Dockerfiles, named build contexts, build
// checks and errors. Expected files come from the conformance kit's
// BuildKit results (copy-from-stage-by-index-and-name,
// from-stage-inherits-fs-and-config, target-skips-unused-stages,
// arg-before-from-scoping).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/moby/buildkit/util/entitlements"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/progress"
)

// COPY --from a stage by index and by name keeps modes and owners below the
// copied directory; FROM an earlier stage inherits its files and config.
func TestInprocMultiStage(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
RUN mkdir -p /out/nested && echo "from stage zero" > /out/zero.txt \
 && echo nested > /out/nested/deep.txt && chmod 0600 /out/nested/deep.txt

FROM busybox AS assets
RUN mkdir -p /assets/img /assets/css && echo png > /assets/img/logo.png \
 && echo body > /assets/css/site.css && chmod 0750 /assets/img && chown 1000:1000 /assets/css/site.css \
 && chmod 0700 /assets && chown 1000:1000 /assets

FROM busybox AS base
ENV APP_HOME=/srv/app APP_MODE=base
LABEL org.example.stage=base
EXPOSE 8080
WORKDIR $APP_HOME
RUN echo "made in base" > base.txt && mkdir data && chown app:app . data
USER app
CMD ["run-base"]

FROM base AS final
ENV APP_MODE=final EXTRA=${APP_MODE}-extended
RUN echo "made in final as $(id -u)" > final.txt
LABEL org.example.final=yes
COPY --from=0 /out/zero.txt /from-index/
COPY --from=0 /out/nested /from-index/nested
COPY --from=assets /assets /from-name
COPY --from=assets /assets/img/logo.png /logo.png
`, nil)
	c := r.img.Config.Config
	if want := []string{basePath, "APP_HOME=/srv/app", "APP_MODE=final", "EXTRA=base-extended"}; !reflect.DeepEqual(c.Env, want) {
		t.Errorf("Env %q, want %q", c.Env, want)
	}
	if c.User != "app" || c.WorkingDir != "/srv/app" || !reflect.DeepEqual(c.Cmd, []string{"run-base"}) {
		t.Errorf("User %q WorkingDir %q Cmd %q", c.User, c.WorkingDir, c.Cmd)
	}
	if want := map[string]string{"org.example.stage": "base", "org.example.final": "yes"}; !reflect.DeepEqual(c.Labels, want) {
		t.Errorf("Labels %v", c.Labels)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ExposedPorts %v", c.ExposedPorts)
	}
	root := e.rootfs(r.img)
	wantFile(t, root, "/srv/app", os.ModeDir, 0o755, 1000, 1000, "-")
	wantFile(t, root, "/srv/app/base.txt", 0, 0o644, 0, 0, "made in base\n")
	wantFile(t, root, "/srv/app/final.txt", 0, 0o644, 1000, 1000, "made in final as 1000\n")
	// COPY runs as root whatever the USER: files are root's unless the
	// source keeps its owner (a stage does).
	wantFile(t, root, "/from-index/zero.txt", 0, 0o644, 0, 0, "from stage zero\n")
	wantFile(t, root, "/from-index/nested", os.ModeDir, 0o755, 0, 0, "-")
	wantFile(t, root, "/from-index/nested/deep.txt", 0, 0o600, 0, 0, "nested\n")
	wantFile(t, root, "/from-name", os.ModeDir, 0o755, 0, 0, "-")
	wantFile(t, root, "/from-name/css", os.ModeDir, 0o755, 0, 0, "-")
	wantFile(t, root, "/from-name/css/site.css", 0, 0o644, 1000, 1000, "body\n")
	wantFile(t, root, "/from-name/img", os.ModeDir, 0o750, 0, 0, "-")
	wantFile(t, root, "/logo.png", 0, 0o644, 0, 0, "png\n")
	// The image is the final stage's: base's layers, then final's own.
	hist := newHistory(t, r.img)
	if hist[0].CreatedBy != "ENV APP_HOME=/srv/app APP_MODE=base" {
		t.Errorf("the final image's history does not start with base's: %q", hist[0].CreatedBy)
	}
	for _, h := range hist {
		if strings.HasPrefix(h.CreatedBy, "RUN mkdir -p /assets") || strings.Contains(h.CreatedBy, "from stage zero") {
			t.Errorf("history holds a step of another stage: %q", h.CreatedBy)
		}
	}
}

// --target builds the stages it needs and no other: a failing stage it does
// not reach and a stage after it never start.
func TestInprocTarget(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	const df = `FROM busybox AS broken
RUN echo "this stage must not run" && exit 1

FROM busybox AS deps
RUN mkdir /deps && echo lib-1.0 > /deps/lib.txt

FROM busybox AS app
COPY --from=deps /deps /opt/deps
RUN echo built > /opt/built.txt
CMD ["cat", "/opt/built.txt"]

FROM app AS test
RUN echo "tests must not run" && exit 3
`
	r := e.mustBuild(df, nil, func(o *Options) { o.Target = "app" })
	root := e.rootfs(r.img)
	wantFile(t, root, "/opt/deps/lib.txt", 0, 0o644, 0, 0, "lib-1.0\n")
	wantFile(t, root, "/opt/built.txt", 0, 0o644, 0, 0, "built\n")
	for _, ev := range r.events {
		if ev.Stage == "broken" || ev.Stage == "test" {
			t.Errorf("stage %s was started: %+v", ev.Stage, ev)
		}
	}
	if !reflect.DeepEqual(r.img.Config.Config.Cmd, []string{"cat", "/opt/built.txt"}) {
		t.Errorf("Cmd %q", r.img.Config.Config.Cmd)
	}
	// Without --target the last stage is built, and fails.
	var re *RunError
	if all := e.build(df, nil); !errors.As(all.err, &re) || re.Stage != "test" || re.ExitCode != 3 {
		t.Errorf("building every stage: %v", all.err)
	}
	bad := e.build(df, nil, func(o *Options) { o.Target = "ap" })
	if bad.err == nil || !strings.Contains(bad.err.Error(), `target stage "ap" could not be found`) {
		t.Errorf("--target ap: %v", bad.err)
	}
}

// ARG scoping across stages (the conformance kit's arg-before-from-scoping).
func TestInprocArgScoping(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`ARG BASE=busybox
ARG TAG=latest
ARG SHARED=global-default
FROM ${BASE}:${TAG} AS first
ARG TAG
ARG SHARED=stage-default
RUN echo "base=[$BASE] tag=[$TAG] shared=[$SHARED]" > /first.txt

FROM $BASE
ARG SHARED
COPY --from=first /first.txt /first.txt
RUN echo "base=[$BASE] tag=[$TAG] shared=[$SHARED]" > /second.txt
ENV SEEN_SHARED=$SHARED
`, nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/first.txt", 0, 0o644, 0, 0, "base=[] tag=[latest] shared=[stage-default]\n")
	wantFile(t, root, "/second.txt", 0, 0o644, 0, 0, "base=[] tag=[] shared=[global-default]\n")
	if want := []string{basePath, "SEEN_SHARED=global-default"}; !reflect.DeepEqual(r.img.Config.Config.Env, want) {
		t.Errorf("Env %q", r.img.Config.Config.Env)
	}
}

// Named build contexts: a directory (COPY --from, RUN --mount from=, FROM),
// an image of the store (docker-image://) that also stands in for an image
// name, and an OCI layout (oci-layout://).
func TestInprocNamedContexts(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	extra := t.TempDir()
	writeContext(t, extra, map[string]string{"data.txt": "extra data\n", "sub/x": "x\n"})
	oci := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(oci, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	vimg, err := e.base.V1(e.s)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(vimg, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "v1"})); err != nil {
		t.Fatal(err)
	}
	contexts := map[string]string{
		"extra":  extra,
		"alpine": "docker-image://busybox:latest",
		"ocictx": "oci-layout://" + oci + ":v1",
	}
	r := e.mustBuild(`FROM extra AS fromdir
FROM alpine
COPY --from=extra data.txt /from-extra.txt
COPY --from=fromdir /sub /sub-from-stage
COPY --from=ocictx /etc/group /group-from-oci
RUN --mount=from=extra,target=/e cat /e/data.txt > /mounted.txt
`, nil, func(o *Options) { o.Contexts = contexts })
	root := e.rootfs(r.img)
	wantFile(t, root, "/from-extra.txt", 0, 0o644, 0, 0, "extra data\n")
	wantFile(t, root, "/sub-from-stage/x", 0, 0o644, 0, 0, "x\n")
	wantFile(t, root, "/mounted.txt", 0, 0o644, 0, 0, "extra data\n")
	wantFile(t, root, "/group-from-oci", 0, 0o644, 0, 0, "root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")
	if r.img.Layers[0].DiffID != inprocBase.layer.DiffID {
		t.Error("FROM alpine did not use the docker-image:// context (busybox)")
	}
	bad := e.build("FROM busybox\nCOPY --from=web index.html /\n", nil, func(o *Options) {
		o.Contexts = map[string]string{"web": "https://example.com/ctx.tar"}
	})
	if bad.err == nil || !strings.Contains(bad.err.Error(), "only directories, docker-image:// and oci-layout:// are supported") {
		t.Errorf("an unsupported named context: %v", bad.err)
	}
}

// CheckOnly runs BuildKit's checks over every stage without building
// (a failing RUN does not matter); "# check=error=true" makes findings fail
// a build before any step runs.
func TestInprocChecks(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	df := `FROM busybox AS base
ENV SECRET_TOKEN=x
CMD echo hi
CMD ["a"]
WORKDIR rel
EXPOSE 80/TCP
RUN exit 1
from busybox AS other
RUN echo $UNDEFINED_THING
`
	r := e.build(df, nil, func(o *Options) { o.CheckOnly = true })
	if r.err != nil || r.img != nil {
		t.Fatalf("check: img %v err %v\n%s", r.img, r.err, r.log())
	}
	msgs := strings.Join(r.messages(), "\n")
	for _, want := range []string{
		"WARNING: SecretsUsedInArgOrEnv - Dockerfile:2 - ",
		"WARNING: JSONArgsRecommended - Dockerfile:3 - ",
		"WARNING: MultipleInstructionsDisallowed - Dockerfile:3 - ",
		"WARNING: WorkdirRelativePath - Dockerfile:5 - ",
		"WARNING: ExposeProtoCasing - Dockerfile:6 - ",
		"WARNING: FromAsCasing - Dockerfile:8 - ",
		"WARNING: ConsistentInstructionCasing - Dockerfile:8 - ",
		"Check complete, 7 warnings have been found!",
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("check output lacks %q:\n%s", want, msgs)
		}
	}
	if len(r.steps(progress.EventStart)) != 0 {
		t.Errorf("a check ran steps:\n%s", r.log())
	}
	clean := e.build("FROM busybox\nCMD [\"sh\"]\n", nil, func(o *Options) { o.CheckOnly = true })
	if clean.err != nil || !strings.Contains(strings.Join(clean.messages(), "\n"), "Check complete, no warnings found.") {
		t.Errorf("a clean check: %v %q", clean.err, clean.messages())
	}

	strict := e.build("# check=error=true\nFROM busybox\nENV API_KEY=x\nRUN touch /ran\n", nil)
	if !errors.Is(strict.err, ErrCheckFailed) {
		t.Errorf("check=error=true with a finding: %v", strict.err)
	}
	if strict.ended("RUN touch") != "" {
		t.Errorf("a step ran although the checks failed:\n%s", strict.log())
	}
	// In a normal build the findings are warnings.
	warn := e.mustBuild("FROM busybox\nENV X=$UNDEFINED_VAR\n", nil)
	if m := strings.Join(warn.messages(), "\n"); !strings.Contains(m, "WARNING: UndefinedVar - Dockerfile:2 - Usage of undefined variable '$UNDEFINED_VAR'") {
		t.Errorf("build warnings: %q", m)
	}
}

// Dockerfile errors name the file and line of the instruction.
func TestInprocErrors(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	other := "s390x"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	for _, tc := range []struct {
		name, dockerfile string
		line             int // 0: no line
		want             string
		opts             func(*Options)
	}{
		{"unknown instruction", "FROM busybox\nRUN echo fine > /fine.txt\nFROBNICATE /fine.txt\n", 3, "unknown instruction: FROBNICATE", nil},
		{"missing COPY source", "FROM busybox\nCOPY present.txt /present.txt\nCOPY missing-file.txt /x\n", 3, `"missing-file.txt" not found`, nil},
		{"missing COPY source, close name", "FROM busybox\nCOPY presnt.txt /x\n", 2, `did you mean "present.txt"?`, nil},
		{"wildcard matching nothing", "FROM busybox\nCOPY *.nothing /x/\n", 2, "no source files were specified", nil},
		{"stage index out of range", "FROM busybox\nCOPY --from=5 /x /x\n", 2, "invalid stage index 5", nil},
		{"stage defined later", "FROM busybox\nCOPY --from=later /x /x\nFROM busybox AS later\n", 2, `stage "later" is defined after the stage that uses it`, nil},
		{"duplicate stage name", "FROM busybox AS a\nFROM busybox AS a\n", 2, `duplicate stage name "a"`, nil},
		{"blank base", "ARG EMPTY\nFROM ${EMPTY}\n", 2, "should not be blank", nil},
		{"empty volume", "FROM busybox\nVOLUME [\"\"]\n", 2, "VOLUME specified can not be an empty string", nil},
		{"bad port", "FROM busybox\nEXPOSE eighty\n", 2, `invalid port "eighty"`, nil},
		{"network host not allowed", "FROM busybox\nRUN --network=host true\n", 2, "network.host", nil},
		{"insecure not allowed", "FROM busybox\nRUN --security=insecure true\n", 2, "security.insecure", nil},
		{"bad platform", "FROM --platform=linux/arm64/v8/x busybox\n", 1, "FROM --platform=linux/arm64/v8/x", nil},
		{"foreign RUN without an emulator", "FROM --platform=linux/" + other + " busybox\nRUN true\n", 2, "registered with binfmt_misc", func(o *Options) { o.BinfmtDir = t.TempDir() }},
		{"required secret missing", "FROM busybox\nRUN --mount=type=secret,id=tok,required=true true\n", 2, "secret tok: not provided", nil},
		{"required ssh missing", "FROM busybox\nRUN --mount=type=ssh,required=true true\n", 2, "ssh default: no agent forwarded", nil},
		{"missing bind source", "FROM busybox\nRUN --mount=type=bind,source=nope,target=/n true\n", 2, `--mount source "nope"`, nil},
		{"unset required variable", "FROM busybox\nARG V\nENV X=${V:?V must be set}\n", 3, "V must be set", nil},
		{"empty Dockerfile", "\n", 0, "the Dockerfile is empty", nil},
		{"no FROM", "ARG X=1\n", 0, "no build stage", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*Options)
			if tc.opts != nil {
				opts = append(opts, tc.opts)
			}
			r := e.build(tc.dockerfile, map[string]string{"present.txt": "p"}, opts...)
			if r.err == nil {
				t.Fatalf("the build succeeded, want an error saying %q", tc.want)
			}
			if !strings.Contains(r.err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", r.err, tc.want)
			}
			var de *dockerfile.Error
			if !errors.As(r.err, &de) || de.File != "Dockerfile" || de.Line != tc.line {
				t.Errorf("err = %v (%T), want a Dockerfile error at line %d", r.err, r.err, tc.line)
			}
		})
	}
}

// Granted entitlements let RUN use the host's network and run insecure
// (with CAP_SYS_ADMIN, which the sandbox does not give).
func TestInprocEntitlements(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
RUN --network=host cat /proc/net/dev > /host-net.txt
RUN --network=none cat /proc/net/dev > /no-net.txt
RUN --security=insecure grep CapEff /proc/self/status > /caps-insecure.txt
RUN grep CapEff /proc/self/status > /caps-sandbox.txt
`, nil, func(o *Options) {
		o.Entitlements = entitlements.Set{entitlements.EntitlementNetworkHost: nil, entitlements.EntitlementSecurityInsecure: nil}
	})
	root := e.rootfs(r.img)
	// --network=host sees the interfaces of the host (this goroutine's
	// thread's network namespace: /proc/self/net is the main thread's,
	// which a network namespace made by the executor may have kept, see
	// netns.create); --network=none only a loopback.
	ifaces := func(dev string) string {
		var out []string
		for _, l := range strings.Split(dev, "\n") {
			if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(name, "|") {
				out = append(out, strings.TrimSpace(name))
			}
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	runtime.LockOSThread()
	host, err := os.ReadFile("/proc/thread-self/net/dev")
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ifaces(readText(t, root, "/host-net.txt")), ifaces(string(host)); got != want {
		t.Errorf("--network=host sees %q, the host has %q", got, want)
	}
	if got := ifaces(readText(t, root, "/no-net.txt")); got != "lo" {
		t.Errorf("--network=none sees %q, want only lo", got)
	}
	const capSysAdmin = 21
	caps := func(p string) uint64 {
		t.Helper()
		var v uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(readText(t, root, p)), "CapEff:\t%x", &v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return v
	}
	if caps("/caps-insecure.txt")&(1<<capSysAdmin) == 0 {
		t.Errorf("--security=insecure runs without CAP_SYS_ADMIN: %x", caps("/caps-insecure.txt"))
	}
	if caps("/caps-sandbox.txt")&(1<<capSysAdmin) != 0 {
		t.Errorf("a sandboxed RUN has CAP_SYS_ADMIN: %x", caps("/caps-sandbox.txt"))
	}
}

// A build given its Dockerfile as bytes (-f -) names it as told, and the
// syntax directive of a labs frontend gets a notice.
func TestInprocDockerfileBytes(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	dir := t.TempDir()
	pr := progress.New(nil, true)
	pr.Record()
	_, err := e.b.Build(context.Background(), Options{ContextDir: dir, Dockerfile: []byte("# syntax=docker/dockerfile:1-labs\nFROM busybox\nRUN exit 4\n"), DockerfileName: "stdin", Progress: pr})
	var de *dockerfile.Error
	if !errors.As(err, &de) || de.File != "stdin" || de.Line != 3 {
		t.Errorf("err = %v, want one at stdin:3", err)
	}
	found := false
	for _, ev := range pr.Events() {
		if ev.Type == progress.EventMessage && strings.Contains(ev.Line, "labs-only features are not available") {
			found = true
		}
	}
	if !found {
		t.Error("no notice for the labs syntax")
	}
}
