package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// buildReq is one build of a workload directory (its Dockerfile at the top).
type buildReq struct {
	dir       string
	tag       string // local image name, without registry (bench/NAME)
	cacheTo   string // registry ref for a mode=max cache export, or ""
	cacheFrom string // registry ref to import cache from, or ""
	platforms string // --platform (a comma-separated list), or "" for the host's
	log       string
}

// builder is one Dockerfile builder under test.
type builder interface {
	name() string
	// start makes the builder usable (daemons, configuration); an error
	// means the builder is unavailable on this machine.
	start(ctx context.Context) error
	// reset empties the builder's cache and images ("cold"); with bases, the
	// base images are then pulled from the loopback registry and unpacked,
	// so they are local before the timed build.
	reset(ctx context.Context, bases bool, log string) error
	build(ctx context.Context, req buildReq) result
	// push pushes the image built by req to dest (a registry ref).
	push(ctx context.Context, req buildReq, dest string) result
	// supports says whether the builder can run a workload at all ("" if it can).
	supports(workload string) string
	version() string
	stop()
}

// ---------------------------------------------------------------- strata

type strataBuilder struct {
	h       *harness
	bin     string
	root    string
	cfgFile string
	mode    string     // "" (rootful), "rootless" or "chroot" (see isolation.go)
	user    *benchUser // rootless: the user it runs as
}

func (s *strataBuilder) name() string {
	if s.mode != "" {
		return "strata-" + s.mode
	}
	return "strata"
}

// cmd is a command line of strata's, run as the mode wants.
func (s *strataBuilder) cmd(log string, args ...string) cmdSpec {
	argv := append([]string{s.bin, "--root", s.root}, args...)
	if s.mode == "chroot" {
		argv = unprivileged(argv)
	}
	return cmdSpec{argv: argv, env: s.env(), log: log, user: s.user}
}

func (s *strataBuilder) env() []string {
	return []string{
		"STRATA_REGISTRY_MIRRORS=docker.io=http://" + s.h.reg,
		"STRATA_CONFIG=" + s.cfgFile,
		"STRATA_ROOT=" + s.root,
	}
}

func (s *strataBuilder) start(ctx context.Context) error {
	s.root = s.h.statePath(s.name(), filepath.Join(s.h.cfg.work, "state", s.name()))
	s.cfgFile = filepath.Join(s.h.cfg.work, "strata-config.json")
	if s.mode == "rootless" {
		u, err := newBenchUser(s.h.cfg.work)
		if err != nil {
			return err
		}
		s.user = u
	}
	return writeFile(s.cfgFile, fmt.Sprintf(`{"registries": {
  "docker.io": {"mirrors": ["http://%s"]},
  "%s": {"insecure": true}
}}
`, s.h.reg, s.h.reg))
}

func (s *strataBuilder) reset(ctx context.Context, bases bool, log string) error {
	if err := removeTree(s.root); err != nil {
		return err
	}
	if s.user != nil {
		if err := os.MkdirAll(s.root, 0o700); err != nil {
			return err
		}
		if err := os.Chown(s.root, s.user.uid, s.user.gid); err != nil {
			return err
		}
	}
	if !bases {
		return nil
	}
	for _, ref := range []string{"busybox:latest", "golang:1.26"} {
		if err := must(ctx, s.cmd(log, "pull", ref)); err != nil {
			return err
		}
	}
	// Unpack the bases' layers (strata unpacks lazily, on first use).
	for _, w := range []string{"warm-busybox", "warm-golang"} {
		dir := filepath.Join(s.h.cfg.work, "w", w)
		if err := must(ctx, s.cmd(log, "build", "--progress=plain", dir)); err != nil {
			return err
		}
	}
	return nil
}

func (s *strataBuilder) build(ctx context.Context, req buildReq) result {
	args := []string{"build", "--progress=plain", "--network", "host", "-t", req.tag}
	if req.cacheTo != "" {
		args = append(args, "--cache-to", "type=registry,ref="+req.cacheTo+",mode=max")
	}
	if req.cacheFrom != "" {
		args = append(args, "--cache-from", "type=registry,ref="+req.cacheFrom)
	}
	if req.platforms != "" {
		args = append(args, "--platform", req.platforms)
	}
	spec := s.cmd(req.log, append(args, req.dir)...)
	spec.sample, spec.timeout = true, s.h.cfg.timeout
	return runCmd(ctx, spec)
}

func (s *strataBuilder) push(ctx context.Context, req buildReq, dest string) result {
	spec := s.cmd(req.log, "push", req.tag, dest)
	spec.sample, spec.timeout = true, s.h.cfg.timeout
	return runCmd(ctx, spec)
}

func (s *strataBuilder) supports(w string) string {
	if w == "fleet" && s.mode != "" {
		return "the fleet runs strata as root"
	}
	return ""
}
func (s *strataBuilder) version() string {
	spec := s.cmd("", "version")
	c := exec.Command(spec.argv[0], spec.argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{}
	if s.user != nil {
		s.user.apply(c)
	}
	out, _ := c.CombinedOutput()
	return strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")
}
func (s *strataBuilder) stop() {
	if !s.h.cfg.keep && s.root != "" {
		if err := removeTree(s.root); err != nil {
			logf("strata: remove %s: %v", s.root, err)
		}
	}
	s.user.remove()
}

// ---------------------------------------------------------------- BuildKit

type buildkitBuilder struct {
	h      *harness
	bin    string // directory of buildkitd and buildctl
	root   string
	runDir string
	addr   string
	d      *daemon
	// rootless: buildkitd runs as the bench user under rootlesskit
	// (Debian's rootlesskit), as BuildKit's docs/rootless.md says.
	rootless bool
	user     *benchUser
}

func (b *buildkitBuilder) name() string {
	if b.rootless {
		return "buildkit-rootless"
	}
	return "buildkit"
}

func (b *buildkitBuilder) ctl(args ...string) []string {
	return append([]string{filepath.Join(b.bin, "buildctl"), "--addr", b.addr}, args...)
}

func (b *buildkitBuilder) start(ctx context.Context) error {
	for _, dir := range []string{b.h.cfg.bkBin, ""} {
		p := "buildkitd"
		if dir != "" {
			p = filepath.Join(dir, "buildkitd")
		}
		if lp, err := exec.LookPath(p); err == nil {
			if _, err := exec.LookPath(filepath.Join(filepath.Dir(lp), "buildctl")); err == nil {
				b.bin = filepath.Dir(lp)
				break
			}
		}
	}
	if b.bin == "" {
		return fmt.Errorf("buildkitd and buildctl not found in %s or on PATH", b.h.cfg.bkBin)
	}
	b.root, b.runDir = b.h.statePath("buildkit", "/var/lib/bk-bench"), "/run/bk-bench"
	if b.rootless {
		b.root, b.runDir = b.h.statePath(b.name(), filepath.Join(b.h.cfg.work, "state", b.name())), filepath.Join(b.h.cfg.work, "run-"+b.name())
	}
	b.addr = "unix://" + b.runDir + "/buildkitd.sock"
	if err := removeTree(b.root); err != nil {
		return err
	}
	if err := os.MkdirAll(b.runDir, 0o755); err != nil {
		return err
	}
	var prefix, env []string
	if b.rootless {
		u, err := newBenchUser(b.h.cfg.work)
		if err != nil {
			return err
		}
		b.user = u
		for _, d := range []string{b.root, b.runDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
			if err := os.Chown(d, u.uid, u.gid); err != nil {
				return err
			}
		}
		prefix = []string{"rootlesskit", "--net=host", "--copy-up=/etc", "--disable-host-loopback"}
		env = []string{"XDG_RUNTIME_DIR=" + b.runDir}
	}
	conf := filepath.Join(b.h.cfg.work, "buildkitd.toml")
	if err := writeFile(conf, fmt.Sprintf(`# written by bench/: the loopback registry serves docker.io's images
[worker.oci]
  gc = false
[registry."docker.io"]
  mirrors = ["%s"]
[registry."%s"]
  http = true
  insecure = true
`, b.h.reg, b.h.reg)); err != nil {
		return err
	}
	argv := append(prefix, filepath.Join(b.bin, "buildkitd"), "--config", conf,
		"--oci-worker=true", "--containerd-worker=false", "--oci-worker-snapshotter=overlayfs",
		"--oci-worker-net=host", "--root", b.root, "--addr", b.addr)
	d, err := startDaemon(b.name()+"d", filepath.Join(b.h.cfg.work, "logs", b.name()+"d.log"), env, b.user, argv...)
	if err != nil {
		return err
	}
	b.d = d
	return waitFor(d, 60*time.Second, func() bool {
		return exec.Command(b.ctl("debug", "workers")[0], b.ctl("debug", "workers")[1:]...).Run() == nil
	})
}

// reset prunes all of BuildKit's cache (build records, the local context
// copies, pulled layers); with bases it pulls and unpacks them again with a
// throw-away build (FROM base + RUN true, no export).
func (b *buildkitBuilder) reset(ctx context.Context, bases bool, log string) error {
	if err := must(ctx, cmdSpec{argv: b.ctl("prune", "--all"), log: log}); err != nil {
		return err
	}
	if !bases {
		return nil
	}
	for _, w := range []string{"warm-busybox", "warm-golang"} {
		dir := filepath.Join(b.h.cfg.work, "w", w)
		if err := must(ctx, cmdSpec{argv: b.ctl("build", "--progress=plain", "--frontend", "dockerfile.v0",
			"--local", "context="+dir, "--local", "dockerfile="+dir), log: log}); err != nil {
			return err
		}
	}
	return nil
}

func (b *buildkitBuilder) buildArgs(req buildReq, output string) []string {
	argv := b.ctl("build", "--progress=plain", "--frontend", "dockerfile.v0",
		"--local", "context="+req.dir, "--local", "dockerfile="+req.dir, "--output", output)
	if req.cacheTo != "" {
		argv = append(argv, "--export-cache", "type=registry,ref="+req.cacheTo+",mode=max")
	}
	if req.cacheFrom != "" {
		argv = append(argv, "--import-cache", "type=registry,ref="+req.cacheFrom)
	}
	if req.platforms != "" {
		argv = append(argv, "--opt", "platform="+req.platforms)
	}
	return argv
}

func (b *buildkitBuilder) build(ctx context.Context, req buildReq) result {
	return runCmd(ctx, cmdSpec{argv: b.buildArgs(req, "type=image,name=docker.io/"+req.tag), log: req.log, timeout: b.h.cfg.timeout})
}

// push: buildctl has no push command; the (fully cached) build is run again
// with an image output that pushes.
func (b *buildkitBuilder) push(ctx context.Context, req buildReq, dest string) result {
	return runCmd(ctx, cmdSpec{argv: b.buildArgs(req, "type=image,name="+dest+",push=true"), log: req.log, timeout: b.h.cfg.timeout})
}

func (b *buildkitBuilder) supports(w string) string {
	if w == "fleet" && b.rootless {
		return "the fleet runs buildkitd as root"
	}
	return ""
}
func (b *buildkitBuilder) version() string {
	return output(filepath.Join(b.bin, "buildkitd"), "--version")
}
func (b *buildkitBuilder) stop() {
	if b.d == nil {
		return
	}
	b.d.stop(30 * time.Second)
	if !b.h.cfg.keep {
		for _, dir := range []string{b.root, b.runDir} {
			if err := removeTree(dir); err != nil {
				logf("buildkit: remove %s: %v", dir, err)
			}
		}
	}
	b.user.remove()
}

// ---------------------------------------------------------------- buildah

type buildahBuilder struct {
	h       *harness
	bin     string
	top     string // everything buildah keeps (storage below it)
	root    string
	runroot string
	regConf string
}

func (b *buildahBuilder) name() string { return "buildah" }

func (b *buildahBuilder) cmd(args ...string) []string {
	return append([]string{b.bin, "--root", b.root, "--runroot", b.runroot, "--storage-driver", "overlay"}, args...)
}

func (b *buildahBuilder) env() []string {
	return []string{"CONTAINERS_REGISTRIES_CONF=" + b.regConf, "BUILDAH_LAYERS=true"}
}

func (b *buildahBuilder) start(ctx context.Context) error {
	p, err := exec.LookPath("buildah")
	if err != nil {
		return fmt.Errorf("buildah not installed (apt-get install buildah)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc not installed")
	}
	b.bin = p
	b.top = b.h.statePath("buildah", "/var/lib/buildah-bench")
	b.root, b.runroot = filepath.Join(b.top, "storage"), "/run/buildah-bench"
	b.regConf = filepath.Join(b.h.cfg.work, "registries.conf")
	// docker.io is remapped to the loopback registry (not a mirror), so buildah
	// never tries the internet.
	if err := writeFile(b.regConf, fmt.Sprintf(`# written by bench/
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

[[registry]]
prefix = "docker.io"
location = "%s"
insecure = true

[[registry]]
location = "%s"
insecure = true
`, b.h.reg, b.h.reg)); err != nil {
		return err
	}
	b.wipe()
	return nil
}

// wipe removes buildah's store entirely.
func (b *buildahBuilder) wipe() {
	if _, err := os.Stat(b.root); err == nil {
		ctx := context.Background()
		log := filepath.Join(b.h.cfg.work, "logs", "buildah-wipe.log")
		_ = must(ctx, cmdSpec{argv: b.cmd("rm", "--all"), env: b.env(), log: log})
		_ = must(ctx, cmdSpec{argv: b.cmd("rmi", "--all", "--force"), env: b.env(), log: log})
	}
	for _, dir := range []string{b.runroot, b.top} {
		if err := removeTree(dir); err != nil {
			logf("buildah: remove %s: %v", dir, err)
		}
	}
}

func (b *buildahBuilder) reset(ctx context.Context, bases bool, log string) error {
	b.wipe()
	if !bases {
		return nil
	}
	for _, ref := range []string{"docker.io/library/busybox:latest", "docker.io/library/golang:1.26"} {
		if err := must(ctx, cmdSpec{argv: b.cmd("pull", "--tls-verify=false", ref), env: b.env(), log: log}); err != nil {
			return err
		}
	}
	return nil
}

func (b *buildahBuilder) build(ctx context.Context, req buildReq) result {
	argv := b.cmd("bud", "--isolation", "oci", "--runtime", "runc", "--layers", "--network", "host",
		"--tls-verify=false", "-t", req.tag)
	if req.cacheTo != "" {
		argv = append(argv, "--cache-to", req.cacheTo)
	}
	if req.cacheFrom != "" {
		argv = append(argv, "--cache-from", req.cacheFrom)
	}
	argv = append(argv, req.dir)
	return runCmd(ctx, cmdSpec{argv: argv, env: b.env(), log: req.log, timeout: b.h.cfg.timeout})
}

func (b *buildahBuilder) push(ctx context.Context, req buildReq, dest string) result {
	return runCmd(ctx, cmdSpec{argv: b.cmd("push", "--tls-verify=false", req.tag, "docker://"+dest), env: b.env(), log: req.log, timeout: b.h.cfg.timeout})
}

func (b *buildahBuilder) supports(w string) string {
	if w == "multiarch" || w == "emulated" || w == "fleet" {
		return "not measured: strata against BuildKit only"
	}
	return ""
}
func (b *buildahBuilder) version() string { return output(b.bin, "--version") }
func (b *buildahBuilder) stop() {
	if b.bin != "" && !b.h.cfg.keep {
		b.wipe()
	}
}

// ---------------------------------------------------------------- Docker

type dockerBuilder struct {
	h       *harness
	dockerd string
	client  string
	data    string
	runDir  string
	sock    string
	d       *daemon
}

func (b *dockerBuilder) name() string { return "docker" }

func (b *dockerBuilder) env() []string {
	return []string{"DOCKER_HOST=unix://" + b.sock, "DOCKER_BUILDKIT=1", "DOCKER_CONFIG=" + filepath.Join(b.h.cfg.work, "docker-config")}
}

func (b *dockerBuilder) cli(args ...string) []string { return append([]string{b.client}, args...) }

func (b *dockerBuilder) start(ctx context.Context) error {
	for _, p := range []string{"/usr/sbin/dockerd", "dockerd"} {
		if lp, err := exec.LookPath(p); err == nil {
			b.dockerd = lp
			break
		}
	}
	// Debian's client matches Debian's daemon; another docker on PATH may not.
	for _, p := range []string{"/usr/bin/docker", "docker"} {
		if lp, err := exec.LookPath(p); err == nil {
			b.client = lp
			break
		}
	}
	if b.dockerd == "" || b.client == "" {
		return fmt.Errorf("dockerd or docker not installed (apt-get install docker.io)")
	}
	b.data, b.runDir = b.h.statePath("docker", "/var/lib/docker-bench"), "/run/docker-bench"
	b.sock = b.runDir + "/docker.sock"
	if err := os.MkdirAll(b.runDir, 0o755); err != nil {
		return err
	}
	d, err := startDaemon("dockerd", filepath.Join(b.h.cfg.work, "logs", "dockerd.log"), nil, nil,
		b.dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--data-root", b.data, "--exec-root", b.runDir+"/exec", "--pidfile", b.runDir+"/dockerd.pid",
		"-H", "unix://"+b.sock, "--storage-driver", "overlay2",
		"--registry-mirror", "http://"+b.h.reg, "--insecure-registry", b.h.reg)
	if err != nil {
		return err
	}
	b.d = d
	return waitFor(d, 60*time.Second, func() bool {
		c := exec.Command(b.client, "version")
		c.Env = append(os.Environ(), b.env()...)
		return c.Run() == nil
	})
}

// reset removes the build cache and every image but the bases; with bases
// they are pulled if missing, without they are removed too.
func (b *dockerBuilder) reset(ctx context.Context, bases bool, log string) error {
	if err := must(ctx, cmdSpec{argv: b.cli("builder", "prune", "--all", "--force"), env: b.env(), log: log}); err != nil {
		return err
	}
	c := exec.CommandContext(ctx, b.client, "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	c.Env = append(os.Environ(), b.env()...)
	out, err := c.Output()
	if err != nil {
		return fmt.Errorf("docker image ls: %v", err)
	}
	var rm []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if bases && (f[0] == "busybox:latest" || f[0] == "golang:1.26") {
			continue
		}
		rm = append(rm, f[1])
	}
	if len(rm) > 0 {
		if err := must(ctx, cmdSpec{argv: b.cli(append([]string{"rmi", "--force"}, rm...)...), env: b.env(), log: log}); err != nil {
			return err
		}
	}
	if bases {
		for _, ref := range []string{"busybox:latest", "golang:1.26"} {
			if err := must(ctx, cmdSpec{argv: b.cli("pull", "-q", ref), env: b.env(), log: log}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *dockerBuilder) build(ctx context.Context, req buildReq) result {
	argv := b.cli("build", "--network", "host", "--progress=plain", "-t", req.tag, req.dir)
	return runCmd(ctx, cmdSpec{argv: argv, env: b.env(), log: req.log, timeout: b.h.cfg.timeout})
}

func (b *dockerBuilder) push(ctx context.Context, req buildReq, dest string) result {
	if err := must(ctx, cmdSpec{argv: b.cli("tag", req.tag, dest), env: b.env(), log: req.log}); err != nil {
		return fail(err.Error())
	}
	return runCmd(ctx, cmdSpec{argv: b.cli("push", dest), env: b.env(), log: req.log, timeout: b.h.cfg.timeout})
}

func (b *dockerBuilder) supports(w string) string {
	switch w {
	case "regcache":
		return "Docker 20.10's builder has no registry cache export (needs buildx)"
	case "multiarch", "emulated":
		return "Docker 20.10's builder builds the host's platform (needs buildx)"
	case "fleet":
		return "not measured: strata against BuildKit only"
	}
	return ""
}

func (b *dockerBuilder) version() string {
	return output(b.dockerd, "--version")
}

func (b *dockerBuilder) stop() {
	if b.d == nil {
		return
	}
	b.d.stop(60 * time.Second)
	if !b.h.cfg.keep {
		for _, dir := range []string{b.data, b.runDir} {
			if err := removeTree(dir); err != nil {
				logf("docker: remove %s: %v", dir, err)
			}
		}
	}
}
