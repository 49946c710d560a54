package builder

// In-process builds: the image config and history every instruction makes,
// RUN, ARG/ENV, ONBUILD and heredocs. Expected values follow BuildKit
// (dockerfile2llb's dispatch functions and the conformance kit's
// expected.json files made with BuildKit v0.34.2).

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
)

// Every config instruction lands in the config and in the history with
// BuildKit's created_by text; only WORKDIR (a new directory) makes a layer;
// ONBUILD makes no history entry.
func TestInprocConfigInstructions(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	start := time.Now().Add(-time.Second)
	r := e.mustBuild(`FROM busybox
LABEL org.example.name="conformance" org.example.multi="two words"
LABEL org.example.name=overridden
EXPOSE 80 53/udp
EXPOSE 8080-8081/tcp
VOLUME ["/data", "/logs"]
VOLUME /cache
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=4 CMD ["wget", "-q", "http://127.0.0.1/"]
ENV A=1 B="two words"
ENV C=${A}-${B:-x}-${UNSET:-dflt} D=\$A E=${A:+set}
MAINTAINER someone
USER app:app
WORKDIR /srv/app
SHELL ["/bin/sh", "-e", "-c"]
CMD echo hi
ENTRYPOINT ["/bin/echo"]
ONBUILD RUN echo child
`, nil)
	cfg := r.img.Config.Config
	wantEnv := []string{basePath, "A=1", "B=two words", "C=1-two words-dflt", "D=$A", "E=set"}
	if !reflect.DeepEqual(cfg.Env, wantEnv) {
		t.Errorf("Env = %q, want %q", cfg.Env, wantEnv)
	}
	if want := map[string]string{"org.example.name": "overridden", "org.example.multi": "two words"}; !reflect.DeepEqual(cfg.Labels, want) {
		t.Errorf("Labels = %v, want %v", cfg.Labels, want)
	}
	if want := map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8080/tcp": {}, "8081/tcp": {}}; !reflect.DeepEqual(cfg.ExposedPorts, want) {
		t.Errorf("ExposedPorts = %v, want %v", cfg.ExposedPorts, want)
	}
	if want := map[string]struct{}{"/data": {}, "/logs": {}, "/cache": {}}; !reflect.DeepEqual(cfg.Volumes, want) {
		t.Errorf("Volumes = %v, want %v", cfg.Volumes, want)
	}
	if cfg.StopSignal != "SIGQUIT" {
		t.Errorf("StopSignal = %q", cfg.StopSignal)
	}
	wantHC := &v1.HealthConfig{Test: []string{"CMD", "wget", "-q", "http://127.0.0.1/"}, Interval: 30 * time.Second, Timeout: 5 * time.Second, StartPeriod: 10 * time.Second, Retries: 4}
	if !reflect.DeepEqual(cfg.Healthcheck, wantHC) {
		t.Errorf("Healthcheck = %+v, want %+v", cfg.Healthcheck, wantHC)
	}
	if cfg.User != "app:app" || cfg.WorkingDir != "/srv/app" || r.img.Config.Author != "someone" {
		t.Errorf("User %q, WorkingDir %q, Author %q", cfg.User, cfg.WorkingDir, r.img.Config.Author)
	}
	if want := []string{"/bin/sh", "-e", "-c"}; !reflect.DeepEqual(cfg.Shell, want) {
		t.Errorf("Shell = %q", cfg.Shell)
	}
	// CMD in shell form runs through the SHELL set before it; ENTRYPOINT
	// keeps a CMD set in the same stage.
	if want := []string{"/bin/sh", "-e", "-c", "echo hi"}; !reflect.DeepEqual(cfg.Cmd, want) {
		t.Errorf("Cmd = %q, want %q", cfg.Cmd, want)
	}
	if want := []string{"/bin/echo"}; !reflect.DeepEqual(cfg.Entrypoint, want) {
		t.Errorf("Entrypoint = %q", cfg.Entrypoint)
	}
	if want := []string{"RUN echo child"}; !reflect.DeepEqual(cfg.OnBuild, want) {
		t.Errorf("OnBuild = %q", cfg.OnBuild)
	}

	hist := newHistory(t, r.img)
	want := []struct {
		createdBy string // prefix when it ends in "*"
		empty     bool
	}{
		{"LABEL org.example.name=conformance org.example.multi=two words", true},
		{"LABEL org.example.name=overridden", true},
		{"EXPOSE *", true},
		{"EXPOSE *", true},
		{"VOLUME [/data /logs]", true},
		{"VOLUME [/cache]", true},
		{"STOPSIGNAL SIGQUIT", true},
		{"HEALTHCHECK *", true},
		{"ENV A=1 B=two words", true},
		{"ENV C=1-two words-dflt D=$A E=set", true},
		{"MAINTAINER someone", true},
		{"USER app:app", true},
		{"WORKDIR /srv/app", false},
		{"SHELL [/bin/sh -e -c]", true},
		{`CMD ["/bin/sh" "-e" "-c" "echo hi"]`, true},
		{`ENTRYPOINT ["/bin/echo"]`, true},
	}
	if len(hist) != len(want) {
		t.Fatalf("%d new history entries, want %d: %+v", len(hist), len(want), hist)
	}
	for i, w := range want {
		h := hist[i]
		ok := h.CreatedBy == w.createdBy
		if p, isPrefix := strings.CutSuffix(w.createdBy, "*"); isPrefix {
			ok = strings.HasPrefix(h.CreatedBy, p)
		}
		if !ok || h.EmptyLayer != w.empty || h.Comment != historyComment {
			t.Errorf("history[%d] = %q empty=%v comment=%q, want %q empty=%v", i, h.CreatedBy, h.EmptyLayer, h.Comment, w.createdBy, w.empty)
		}
		if h.Created.Before(start) {
			t.Errorf("history[%d] %q: created %v, before the build", i, h.CreatedBy, h.Created)
		}
	}
	if !r.img.Config.Created.Equal(hist[len(hist)-1].Created.Time) {
		t.Errorf("image created %v, want the last history entry's time %v", r.img.Config.Created, hist[len(hist)-1].Created)
	}
	if l := newLayers(t, r.img); len(l) != 1 {
		t.Fatalf("%d new layers, want 1 (WORKDIR)", len(l))
	}
	root := e.rootfs(r.img)
	// Directories WORKDIR makes belong to the USER (BuildKit's mkdir with WithUser).
	wantFile(t, root, "/srv", os.ModeDir, 0o755, 1000, 1000, "-")
	wantFile(t, root, "/srv/app", os.ModeDir, 0o755, 1000, 1000, "-")
}

// Small config-only Dockerfiles and what each gives.
func TestInprocConfigCases(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	for _, tc := range []struct {
		name, dockerfile string
		check            func(t *testing.T, c v1.Config)
	}{
		{"entrypoint drops the base's cmd", "FROM busybox\nENTRYPOINT [\"/bin/true\"]\n", func(t *testing.T, c v1.Config) {
			if len(c.Cmd) != 0 || !reflect.DeepEqual(c.Entrypoint, []string{"/bin/true"}) {
				t.Errorf("Cmd %q Entrypoint %q", c.Cmd, c.Entrypoint)
			}
		}},
		{"shell form uses /bin/sh -c", "FROM busybox\nENTRYPOINT exec top -b\n", func(t *testing.T, c v1.Config) {
			if !reflect.DeepEqual(c.Entrypoint, []string{"/bin/sh", "-c", "exec top -b"}) {
				t.Errorf("Entrypoint %q", c.Entrypoint)
			}
		}},
		{"expose and label expand variables", "FROM busybox\nENV P=9000 V=1.2\nEXPOSE $P/udp ${P}\nLABEL version=$V\n", func(t *testing.T, c v1.Config) {
			if _, ok := c.ExposedPorts["9000/udp"]; !ok || len(c.ExposedPorts) != 2 {
				t.Errorf("ExposedPorts %v", c.ExposedPorts)
			}
			if c.Labels["version"] != "1.2" {
				t.Errorf("Labels %v", c.Labels)
			}
		}},
		{"user from an arg", "FROM busybox\nARG U=nobody\nUSER $U\n", func(t *testing.T, c v1.Config) {
			if c.User != "nobody" {
				t.Errorf("User %q", c.User)
			}
		}},
		{"relative workdirs chain", "FROM busybox\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c/./d\n", func(t *testing.T, c v1.Config) {
			if c.WorkingDir != "/a/c/d" {
				t.Errorf("WorkingDir %q", c.WorkingDir)
			}
		}},
		{"env keeps its position when set again", "FROM busybox\nENV X=1 Y=2\nENV X=3 PATH=/x:$PATH\n", func(t *testing.T, c v1.Config) {
			want := []string{"PATH=/x:" + strings.TrimPrefix(basePath, "PATH="), "X=3", "Y=2"}
			if !reflect.DeepEqual(c.Env, want) {
				t.Errorf("Env %q, want %q", c.Env, want)
			}
		}},
		{"scratch", "FROM scratch\nLABEL a=b\n", func(t *testing.T, c v1.Config) {
			// BuildKit's emptyImage: PATH and WorkingDir "/".
			if !reflect.DeepEqual(c.Env, []string{basePath}) || c.WorkingDir != "/" || len(c.Cmd) != 0 {
				t.Errorf("Env %q WorkingDir %q Cmd %q", c.Env, c.WorkingDir, c.Cmd)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.build(tc.dockerfile, nil)
			if r.err != nil {
				t.Fatalf("build: %v\n%s", r.err, r.log())
			}
			tc.check(t, r.img.Config.Config)
		})
	}
}

// RUN: shell and exec form, the environment and user it runs with, what
// its layer holds (new files, links, special modes, deletions as whiteouts),
// and a RUN that changes nothing makes no layer.
func TestInprocRun(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
ENV GREETING=hello
RUN echo "$GREETING from $(id -u):$(id -g) in $(pwd)" > /out.txt
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
RUN mkdir -p /d && echo x > /d/f && ln -s f /d/link && ln /d/f /d/hard && chmod 4755 /d/f && mkdir -m 1777 /d/sticky
RUN rm /etc/group && rm -r /home/app && mkdir /home/app && touch /home/app/new
RUN true
`, nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/out.txt", 0, 0o644, 0, 0, "hello from 0:0 in /\n")
	wantFile(t, root, "/exec.txt", 0, 0o644, 0, 0, "exec-form\n")
	wantFile(t, root, "/d/f", 0, 0o755|os.ModeSetuid, 0, 0, "x\n")
	wantFile(t, root, "/d/link", os.ModeSymlink, 0o777, 0, 0, "f")
	wantFile(t, root, "/d/sticky", os.ModeDir, 0o777|os.ModeSticky, 0, 0, "-")
	if inodeOf(t, root+"/d/f") != inodeOf(t, root+"/d/hard") {
		t.Error("/d/hard is not a hard link of /d/f")
	}
	if _, ok := statFile(t, root, "/etc/group"); ok {
		t.Error("/etc/group was deleted but is in the image")
	}
	wantFile(t, root, "/home/app/new", 0, 0o644, 0, 0, "")

	layers := newLayers(t, r.img)
	if len(layers) != 4 {
		t.Fatalf("%d new layers, want 4 (RUN true changes nothing)", len(layers))
	}
	rm := e.layerEntries(layers[3])
	if _, ok := rm["etc/.wh.group"]; !ok {
		t.Errorf("the deletion of /etc/group is no whiteout in its layer: %v", entryNames(rm))
	}
	if _, ok := rm["home/app/.wh..wh..opq"]; !ok {
		t.Errorf("the recreated /home/app is not opaque in its layer: %v", entryNames(rm))
	}
	hard := e.layerEntries(layers[2])
	if h := hard["d/hard"].hdr; h == nil || h.Typeflag != '1' || h.Linkname != "d/f" {
		t.Errorf("d/hard in the layer: %+v", h)
	}

	hist := newHistory(t, r.img)
	wantHist := []struct {
		createdBy string
		empty     bool
	}{
		{"ENV GREETING=hello", true},
		{`RUN /bin/sh -c echo "$GREETING from $(id -u):$(id -g) in $(pwd)" > /out.txt # buildkit`, false},
		{"RUN /bin/sh -c echo exec-form > /exec.txt # buildkit", false},
		{"", false},
		{"", false},
		{"RUN /bin/sh -c true # buildkit", true},
	}
	if len(hist) != len(wantHist) {
		t.Fatalf("history %+v", hist)
	}
	for i, w := range wantHist {
		if (w.createdBy != "" && hist[i].CreatedBy != w.createdBy) || hist[i].EmptyLayer != w.empty {
			t.Errorf("history[%d] = %q empty=%v, want %q empty=%v", i, hist[i].CreatedBy, hist[i].EmptyLayer, w.createdBy, w.empty)
		}
	}
}

// RUN as other users and WORKDIR under them (the conformance kit's
// user-named-numeric-run-ownership and workdir-chain-as-user cases).
func TestInprocUsers(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
RUN mkdir -m 1777 /out
USER app
RUN touch /out/as-app && id > /out/id-app.txt
USER 1000
RUN touch /out/as-1000
USER 4242
RUN touch /out/as-4242
USER nobody:app
RUN touch /out/as-nobody-app
USER 0:0
RUN touch /out/as-root
USER app
WORKDIR /srv/app/data
RUN pwd > where.txt
USER 1000:65534
`, nil)
	root := e.rootfs(r.img)
	for _, f := range []struct {
		path     string
		uid, gid int
	}{
		{"/out/as-app", 1000, 1000},
		{"/out/as-1000", 1000, 1000},
		{"/out/as-4242", 4242, 0}, // not in /etc/passwd: gid 0
		{"/out/as-nobody-app", 65534, 1000},
		{"/out/as-root", 0, 0},
		{"/srv/app/data", 1000, 1000},
		{"/srv", 1000, 1000},
		{"/srv/app/data/where.txt", 1000, 1000},
	} {
		fi, ok := statFile(t, root, f.path)
		if !ok || fi.uid != f.uid || fi.gid != f.gid {
			t.Errorf("%s: %+v (exists %v), want owner %d:%d", f.path, fi, ok, f.uid, f.gid)
		}
	}
	if got := readText(t, root, "/srv/app/data/where.txt"); got != "/srv/app/data\n" {
		t.Errorf("where.txt = %q", got)
	}
	if got := readText(t, root, "/out/id-app.txt"); !strings.HasPrefix(got, "uid=1000(app) gid=1000(app)") {
		t.Errorf("id as app: %q", got)
	}
	if c := r.img.Config.Config; c.User != "1000:65534" || c.WorkingDir != "/srv/app/data" {
		t.Errorf("User %q WorkingDir %q", c.User, c.WorkingDir)
	}
}

// A failing RUN is a *RunError naming the stage, step, command and exit
// code, with the last output lines, inside an error naming the Dockerfile
// line; no mount or container is left (checked by the env).
func TestInprocRunError(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.build(`FROM busybox AS build
RUN echo fine
RUN echo before; echo to-stderr >&2; exit 3
RUN echo never
`, nil)
	var re *RunError
	if !errors.As(r.err, &re) {
		t.Fatalf("err = %v, want a *RunError", r.err)
	}
	want := RunError{Stage: "build", Step: "3/4", Command: "/bin/sh -c echo before; echo to-stderr >&2; exit 3", ExitCode: 3}
	if re.Stage != want.Stage || re.Step != want.Step || re.Command != want.Command || re.ExitCode != want.ExitCode {
		t.Errorf("RunError %+v, want %+v", *re, want)
	}
	if strings.Join(re.Tail, "\n") != "before\nto-stderr" {
		t.Errorf("Tail = %q", re.Tail)
	}
	var de *dockerfile.Error
	if !errors.As(r.err, &de) || de.Line != 3 || de.File != "Dockerfile" {
		t.Errorf("err = %v, want a Dockerfile error at line 3", r.err)
	}
	for _, s := range []string{`exit code: 3`, "stage build", "step 3/4", "Dockerfile:3"} {
		if !strings.Contains(r.err.Error(), s) {
			t.Errorf("error %q does not say %q", r.err, s)
		}
	}
	if r.img != nil {
		t.Error("a failed build returned an image")
	}
	if r.ended("RUN echo never") != "" {
		t.Error("the step after the failed RUN ran")
	}
	if r.ended("exit 3") != progress.EventError {
		t.Errorf("the failed step did not end as an error:\n%s", r.log())
	}
}

// ARG before and after FROM, build args, the automatic platform args and
// ENV made from ARGs: what RUN sees, what the config keeps, the history.
func TestInprocArgs(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	plat := platform.Host()
	ps := plat.OS + "/" + plat.Architecture
	if plat.Variant != "" {
		ps += "/" + plat.Variant
	}
	r := e.mustBuild(`ARG GLOBAL=g1
ARG OVERRIDE=default
ARG BASE=busybox
FROM ${BASE}
ARG GLOBAL
ARG OVERRIDE
ARG LOCAL=l1-${GLOBAL}
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG BUILDPLATFORM
ARG NOVALUE
ENV FROM_ARG=${LOCAL}
RUN echo "$GLOBAL|$OVERRIDE|$LOCAL|$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$BUILDPLATFORM|$FROM_ARG|${NOVALUE-unset}|${NOTDECLARED:-unset}" > /args
`, nil, func(o *Options) {
		o.BuildArgs = map[string]string{"OVERRIDE": "cli", "UNUSED": "x", "NOTDECLARED": "y"}
	})
	root := e.rootfs(r.img)
	want := "g1|cli|l1-g1|" + ps + "|" + plat.OS + "|" + plat.Architecture + "|" + ps + "|l1-g1|unset|unset\n"
	if got := readText(t, root, "/args"); got != want {
		t.Errorf("/args = %q, want %q", got, want)
	}
	if c := r.img.Config.Config; !reflect.DeepEqual(c.Env, []string{basePath, "FROM_ARG=l1-g1"}) {
		t.Errorf("Env = %q: ARGs must not be kept", c.Env)
	}
	hist := newHistory(t, r.img)
	wantHist := []string{
		"ARG GLOBAL=g1", "ARG OVERRIDE=cli", "ARG LOCAL=l1-g1", "ARG TARGETPLATFORM=" + ps, "ARG TARGETOS=" + plat.OS,
		"ARG TARGETARCH=" + plat.Architecture, "ARG BUILDPLATFORM=" + ps, "ARG NOVALUE", "ENV FROM_ARG=l1-g1",
		"RUN |8 GLOBAL=g1 OVERRIDE=cli LOCAL=l1-g1 TARGETPLATFORM=" + ps + " TARGETOS=" + plat.OS + " TARGETARCH=" + plat.Architecture +
			" BUILDPLATFORM=" + ps + " NOVALUE= /bin/sh -c echo \"$GLOBAL|$OVERRIDE|$LOCAL|$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$BUILDPLATFORM|$FROM_ARG|${NOVALUE-unset}|${NOTDECLARED:-unset}\" > /args # buildkit",
	}
	var got []string
	for _, h := range hist {
		got = append(got, h.CreatedBy)
	}
	if !reflect.DeepEqual(got, wantHist) {
		t.Errorf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantHist, "\n"))
	}
	warned := false
	for _, m := range r.messages() {
		if strings.Contains(m, "not consumed") && strings.Contains(m, "NOTDECLARED, UNUSED") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about the unused build args:\n%s", r.log())
	}
}

// ONBUILD triggers of a base stage and of a base image run first in the
// child and are not inherited further (the conformance kit's
// onbuild-triggered-by-child).
func TestInprocOnbuild(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	parent := `FROM busybox AS parent
RUN echo parent > /parent.txt
ONBUILD RUN echo "triggered in child" > /onbuild.txt
ONBUILD ENV FROM_ONBUILD=yes
ONBUILD WORKDIR /child-work
`
	check := func(t *testing.T, r buildResult) {
		t.Helper()
		c := r.img.Config.Config
		if len(c.OnBuild) != 0 {
			t.Errorf("OnBuild = %q: triggers must not be inherited", c.OnBuild)
		}
		if !reflect.DeepEqual(c.Env, []string{basePath, "FROM_ONBUILD=yes"}) || c.WorkingDir != "/child-work" {
			t.Errorf("Env %q WorkingDir %q", c.Env, c.WorkingDir)
		}
		root := e.rootfs(r.img)
		if got := readText(t, root, "/child.txt"); got != "after triggers: yes in /child-work\n" {
			t.Errorf("/child.txt = %q", got)
		}
		if got := readText(t, root, "/onbuild.txt"); got != "triggered in child\n" {
			t.Errorf("/onbuild.txt = %q", got)
		}
	}
	child := `RUN echo "after triggers: $FROM_ONBUILD in $(pwd)" > /child.txt` + "\n"
	t.Run("stage", func(t *testing.T) {
		check(t, e.mustBuild(parent+"FROM parent\n"+child, nil))
	})
	t.Run("image", func(t *testing.T) {
		p := e.mustBuild(parent, nil)
		if len(p.img.Config.Config.OnBuild) != 3 {
			t.Fatalf("parent OnBuild = %q", p.img.Config.Config.OnBuild)
		}
		if err := e.s.Tag("example.com/parent:1", p.img.Descriptor); err != nil {
			t.Fatal(err)
		}
		check(t, e.mustBuild("FROM example.com/parent:1\n"+child, nil))
	})
}

// Heredocs in RUN (script, command with stdin, shebang) and COPY (expanded,
// literal, several files) as in the conformance kit's heredoc-run-and-copy.
func TestInprocHeredocs(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.mustBuild(`FROM busybox
ARG NAME=world
ENV GREETING=hello
RUN <<EOF
mkdir -p /hd
echo "$GREETING $NAME" > /hd/run.txt
echo "second line" >> /hd/run.txt
EOF
RUN <<-EOT sh
	echo "tabs stripped" > /hd/tabs.txt
	EOT
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /hd/shebang.txt
EOF
COPY <<EOF /hd/expanded.txt
greeting=${GREETING} name=${NAME}
EOF
COPY <<'EOF' /hd/literal.txt
greeting=${GREETING} name=$NAME
EOF
COPY --chmod=0755 <<EOF /hd/script.sh
#!/bin/sh
echo script
EOF
COPY <<one.txt <<two.txt /hd/multi/
first
one.txt
second
two.txt
`, nil)
	root := e.rootfs(r.img)
	wantFile(t, root, "/hd/run.txt", 0, 0o644, 0, 0, "hello world\nsecond line\n")
	wantFile(t, root, "/hd/tabs.txt", 0, 0o644, 0, 0, "tabs stripped\n")
	wantFile(t, root, "/hd/shebang.txt", 0, 0o644, 0, 0, "shebang /dev/pipes/EOF\n")
	wantFile(t, root, "/hd/expanded.txt", 0, 0o644, 0, 0, "greeting=hello name=world\n")
	wantFile(t, root, "/hd/literal.txt", 0, 0o644, 0, 0, "greeting=${GREETING} name=$NAME\n")
	wantFile(t, root, "/hd/script.sh", 0, 0o755, 0, 0, "#!/bin/sh\necho script\n")
	wantFile(t, root, "/hd/multi/one.txt", 0, 0o644, 0, 0, "first\n")
	wantFile(t, root, "/hd/multi/two.txt", 0, 0o644, 0, 0, "second\n")
	if _, ok := statFile(t, root, "/dev/pipes"); ok {
		t.Error("/dev/pipes, where the shebang script was mounted, is left in the image")
	}
}

// ApplyChanges applies the config instructions of `strata import --change`
// as a build would, without Dockerfile history comments.
func TestApplyChanges(t *testing.T) {
	imported := v1.Time{Time: baseEpoch}
	cfg := v1.ConfigFile{Config: v1.Config{Env: []string{"PATH=/bin"}}, History: []v1.History{{CreatedBy: "import", Created: imported}}}
	err := ApplyChanges(&cfg, []string{
		`CMD ["sh"]`, "ENV A=1", "ENV B=${A}2", "WORKDIR /srv", "WORKDIR sub", "USER app", "EXPOSE 80 53/udp",
		"LABEL a=b", `ENTRYPOINT ["/e"]`, "VOLUME /v", "STOPSIGNAL SIGTERM", "ONBUILD RUN x",
		`SHELL ["/bin/bash", "-c"]`, "HEALTHCHECK NONE", "MAINTAINER me",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"Cmd", c.Cmd, []string{"sh"}}, // ENTRYPOINT keeps a CMD set before it
		{"Entrypoint", c.Entrypoint, []string{"/e"}},
		{"Env", c.Env, []string{"PATH=/bin", "A=1", "B=12"}},
		{"WorkingDir", c.WorkingDir, "/srv/sub"},
		{"User", c.User, "app"},
		{"ExposedPorts", c.ExposedPorts, map[string]struct{}{"80/tcp": {}, "53/udp": {}}},
		{"Labels", c.Labels, map[string]string{"a": "b"}},
		{"Volumes", c.Volumes, map[string]struct{}{"/v": {}}},
		{"StopSignal", c.StopSignal, "SIGTERM"},
		{"OnBuild", c.OnBuild, []string{"RUN x"}},
		{"Shell", c.Shell, []string{"/bin/bash", "-c"}},
		{"Healthcheck", c.Healthcheck.Test, []string{"NONE"}},
		{"Author", cfg.Author, "me"},
	} {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s = %#v, want %#v", f.name, f.got, f.want)
		}
	}
	if cfg.History[0].CreatedBy != "import" || len(cfg.History) < 2 {
		t.Fatalf("history %+v", cfg.History)
	}
	for _, h := range cfg.History[1:] {
		if h.Comment != "" || !h.EmptyLayer || !h.Created.Equal(imported.Time) {
			t.Errorf("history entry %+v: want no comment, empty_layer and the import's time", h)
		}
	}
	if cfg.History[1].CreatedBy != `CMD ["sh"]` {
		t.Errorf("first change's history: %q", cfg.History[1].CreatedBy)
	}
	for _, ch := range []string{"RUN echo", "COPY a /b", "ADD a /b", "ARG X"} {
		c := v1.ConfigFile{}
		if err := ApplyChanges(&c, []string{ch}); err == nil || !strings.Contains(err.Error(), "cannot be used with import") {
			t.Errorf("--change %q: %v", ch, err)
		}
	}
	if err := ApplyChanges(&v1.ConfigFile{}, []string{"BOGUS x"}); err == nil || !strings.Contains(err.Error(), `--change "BOGUS x"`) {
		t.Errorf("--change BOGUS: %v", err)
	}
}

// A stage that fails fails the build with its own error, not the "a stage
// this one needs failed" of the stages waiting for it.
func TestInprocDependencyFails(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	r := e.build("FROM busybox AS a\nRUN exit 5\nFROM busybox AS b\nRUN sleep 1\nCOPY --from=a /x /x\n", nil)
	var re *RunError
	if !errors.As(r.err, &re) || re.Stage != "a" || re.ExitCode != 5 {
		t.Errorf("err = %v, want stage a's RunError", r.err)
	}
	if r.ended("COPY --from=a") != "" {
		t.Errorf("the COPY of the failed stage ran:\n%s", r.log())
	}
}
