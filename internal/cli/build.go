package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/report"
)

type buildFlags struct {
	file        string
	tags        []string
	target      string
	buildArgs   []string
	outputs     []string
	push        bool
	iidfile     string
	metadata    string
	load        bool
	quiet       bool
	progress    string
	network     string
	platform    string
	jobs        int
	pull        bool
	noCache     bool
	compression string
	compLevel   int
	report      string
	secrets     []string
	ssh         []string
	argFiles    []string
	contexts    []string
	check       bool
	noCacheF    []string
	cacheFrom   []string
	cacheTo     []string
	debugCache  bool
	epoch       string
	allow       []string
}

// parseOutput maps one --output value onto an export.Output.
func parseOutput(s string) (export.Output, error) {
	if !strings.Contains(s, "=") {
		// `-o DIR` is short for type=local,dest=DIR, as in docker buildx.
		if s == "-" {
			return export.Output{}, usagef("--output -: writing a tar to stdout is not supported yet; use dest=FILE")
		}
		return export.Output{Type: "local", Dest: s}, nil
	}
	var o export.Output
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.TrimSpace(k) {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		case "name":
			o.Names = append(o.Names, strings.Split(v, ";")...)
		case "push":
			o.Push = v == "true" || v == "1"
		case "push-by-digest":
			o.ByDigest = v == "true" || v == "1"
		case "name-canonical":
			// accepted: a push by digest always names repo@digest
		case "compression", "oci-mediatypes", "compression-level", "force-compression":
			// accepted; layers are gzip OCI layers
		default:
			return o, usagef("--output %q: unknown key %q", s, k)
		}
	}
	switch o.Type {
	case "docker", "oci", "tar":
		if o.Dest == "" {
			return o, usagef("--output type=%s needs dest=FILE", o.Type)
		}
	case "local":
		if o.Dest == "" {
			return o, usagef("--output type=local needs dest=DIR")
		}
	case "registry":
		o.Push = true
	case "":
		return o, usagef("--output %q: type= is required", s)
	}
	if o.ByDigest && (o.Type != "registry" && o.Type != "image" || !o.Push) {
		return o, usagef("--output %q: push-by-digest=true needs type=registry (or type=image,push=true)", s)
	}
	if !export.Known(o.Type) {
		return o, usagef("--output type=%s is not supported (docker, oci, local, registry, image)", o.Type)
	}
	return o, nil
}

func (a *app) buildCmd() *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH",
		Short: "Build an image from a Dockerfile",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("\"strata build\" requires exactly 1 argument: the build context directory")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.runBuild(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "name of the Dockerfile (default: PATH/Dockerfile; - reads stdin)")
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "name and optionally a tag (name:tag)")
	fl.StringVar(&f.target, "target", "", "set the target build stage to build")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "set build-time variables (KEY=VALUE, or KEY to take it from the environment)")
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, "output destination (type=docker|oci|local|registry,dest=...,name=...; type=registry,name=REPO,push-by-digest=true pushes with no tag)")
	fl.BoolVar(&f.push, "push", false, "push the -t names to their registries (shorthand for --output=type=registry)")
	fl.StringVar(&f.iidfile, "iidfile", "", "write the image ID (config digest) to the file")
	fl.StringVar(&f.metadata, "metadata-file", "", "write the build result metadata (buildx format: image digest, config digest, names) to the file")
	fl.BoolVar(&f.load, "load", false, "load the image into the running Docker daemon (DOCKER_HOST or /var/run/docker.sock)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "suppress the build output and print the image ID on success")
	fl.StringVar(&f.progress, "progress", "auto", "progress output: auto (tty in a terminal, else plain), tty, plain, json (one event a line) or quiet")
	fl.StringVar(&f.report, "report", "", "write a self-contained HTML build report (timeline, cache hits and misses, layers, config) to this file")
	fl.StringVar(&f.network, "network", "default", "networking mode for RUN: default (own network namespace, outbound through slirp4netns, no host loopback), host or none")
	fl.StringArrayVar(&f.allow, "allow", nil, "allow extra privileged entitlement: security.insecure (for RUN --security=insecure) or network.host")
	fl.StringVar(&f.platform, "platform", "", "target platform, e.g. linux/arm64, or a comma-separated list: an image index (default: the host's; a RUN for another needs QEMU registered with binfmt_misc)")
	fl.IntVar(&f.jobs, "jobs", 0, "how many stages to build at once (default: number of CPUs, at least 4)")
	fl.BoolVar(&f.pull, "pull", false, "always attempt to pull a newer version of the base images")
	fl.BoolVar(&f.noCache, "no-cache", false, "do not use the build cache: run every step")
	fl.StringArrayVar(&f.noCacheF, "no-cache-filter", nil, "do not use the build cache for these stages")
	fl.StringArrayVar(&f.cacheFrom, "cache-from", nil, "import build cache: type=registry,ref=REF | type=local,src=DIR | REF")
	fl.StringArrayVar(&f.cacheTo, "cache-to", nil, "export build cache: type=registry,ref=REF | type=local,dest=DIR | type=inline; options: mode=min|max, max-size=10GB, max-age=7d, ignore-error=true (many builders may export to one registry ref at once)")
	fl.BoolVar(&f.debugCache, "debug-cache", os.Getenv("STRATA_DEBUG_CACHE") == "1", "explain every cache miss: which input changed (env STRATA_DEBUG_CACHE=1)")
	fl.StringVar(&f.epoch, "source-date-epoch", "", "timestamp (Unix seconds) for reproducible images: history times and file times in new layers (env or build-arg SOURCE_DATE_EPOCH)")
	fl.StringVar(&f.compression, "compression", "gzip", "layer compression: gzip, zstd or uncompressed")
	fl.IntVar(&f.compLevel, "compression-level", 0, "layer compression level (gzip 1-9, zstd 1-22; 0: the default, gzip 2, zstd 3)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR]")
	fl.StringArrayVar(&f.ssh, "ssh", nil, "SSH agent socket for RUN --mount=type=ssh: default|ID[=SOCKET]")
	fl.StringArrayVar(&f.argFiles, "build-arg-file", nil, "read build arguments from a file of KEY=VALUE lines")
	fl.BoolVar(&f.check, "check", false, "run BuildKit's build checks and print their warnings, without building")
	fl.StringArrayVar(&f.contexts, "build-context", nil, "additional named context: NAME=DIR|docker-image://REF|oci-layout://PATH[:TAG|@DIGEST]")
	return cmd
}

// runBuild maps the flags onto builder.Options, builds, and puts the image
// where the outputs say.
func (a *app) runBuild(cmd *cobra.Command, ctxDir string, f buildFlags) (err error) {
	ctx := cmd.Context()
	mode, err := progressMode(f, a.stderr)
	if err != nil {
		return err
	}
	printer := progress.NewMode(a.stderr, mode)
	defer printer.Close()
	if mode == progress.JSON {
		// Every line is an event: the error too.
		defer func() { err = reportFailure(printer, err) }()
	}
	outs, err := buildOutputs(f)
	if err != nil {
		return err
	}
	plats, err := buildPlatforms(f.platform)
	if err != nil {
		return err
	}
	if len(plats) > 1 {
		if err := checkIndexOutputs(f, outs); err != nil {
			return err
		}
	}
	if f.report != "" {
		printer.Record()
	}
	opts, cleanup, err := a.buildOptions(ctx, ctxDir, f, printer)
	if len(plats) == 1 {
		opts.Platform = plats[0]
	}
	defer cleanup()
	if err != nil {
		return err
	}
	b, err := a.open(ctx)
	if err != nil {
		return err
	}
	if len(plats) > 1 {
		return a.runIndexBuild(ctx, b, opts, plats, f, outs, printer)
	}
	started := time.Now()
	img, err := b.Build(ctx, opts)
	a.writeReport(f, opts, started, printer, img, err)
	if err != nil || f.check {
		return err
	}
	return a.finishBuild(ctx, b, img, f, outs, printer)
}

// writeReport writes the --report of a build that started at started
// and gave img (nil for an index) or err; a report that cannot be
// written is a warning.
func (a *app) writeReport(f buildFlags, opts builder.Options, started time.Time, pr *progress.Printer, img *image.Image, err error) {
	if f.report == "" {
		return
	}
	d := report.Data{Title: opts.ContextDir, Started: started, Finished: time.Now(), Events: pr.Events(), Image: img, Isolation: a.describeIsolation()}
	if err != nil {
		d.Error = err.Error()
	}
	if rerr := report.WriteFile(f.report, d); rerr != nil {
		pr.Logf("warning: build report: %v", rerr)
	}
}

// progressMode is the progress mode --progress and --quiet ask for.
func progressMode(f buildFlags, stderr io.Writer) (progress.Mode, error) {
	mode := progress.Mode(f.progress)
	switch mode {
	case "auto":
		mode = progress.Plain
		if isTerminal(stderr) {
			mode = progress.TTY
		}
	case progress.TTY, progress.Plain, progress.JSON, progress.Quiet:
	default:
		return "", usagef("--progress=%s: use auto, tty, plain, json or quiet", f.progress)
	}
	if f.quiet {
		mode = progress.Quiet
	}
	return mode, nil
}

// buildOutputs parses --output and --push, and checks before anything is
// built that the names are valid and the files can be written.
func buildOutputs(f buildFlags) ([]export.Output, error) {
	var outs []export.Output
	for _, s := range f.outputs {
		o, err := parseOutput(s)
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
	}
	if f.push {
		outs = append(outs, export.Output{Type: "registry", Push: true})
	}
	if err := checkNames(f.tags, outs); err != nil {
		return nil, err
	}
	if err := checkFileDests(outs, map[string]string{"--iidfile": f.iidfile, "--metadata-file": f.metadata, "--report": f.report}); err != nil {
		return nil, err
	}
	return outs, nil
}

// buildOptions maps the build flags onto builder.Options and checks them.
// cleanup removes what it made (a context read from stdin); it is never nil.
func (a *app) buildOptions(ctx context.Context, ctxDir string, f buildFlags, printer *progress.Printer) (opts builder.Options, cleanup func(), err error) {
	cleanup = func() {}
	network, err := networkMode(f.network)
	if err != nil {
		return opts, cleanup, err
	}
	if f.network == "default" {
		network = a.defaultNetwork()
	}
	comp := layer.Compression(f.compression)
	switch comp {
	case layer.Gzip, layer.Zstd, layer.Uncompressed:
	default:
		return opts, cleanup, usagef("--compression=%s: use gzip, zstd or uncompressed", f.compression)
	}
	if err := checkLevel(comp, f.compLevel); err != nil {
		return opts, cleanup, err
	}
	args, err := buildArgs(f)
	if err != nil {
		return opts, cleanup, err
	}
	opts = builder.Options{
		CheckOnly: f.check, NoCache: f.noCache, NoCacheFilter: f.noCacheF, DebugCache: f.debugCache,
		Target: f.target, BuildArgs: args, Network: network, Jobs: f.jobs, Pull: f.pull,
		Compression: comp, CompressionLevel: f.compLevel, Progress: printer,
	}
	if opts.Secrets, err = parseSecrets(f.secrets); err != nil {
		return opts, cleanup, err
	}
	if opts.SSH, err = parseSSH(f.ssh); err != nil {
		return opts, cleanup, err
	}
	if opts.Entitlements, err = parseAllow(f.allow); err != nil {
		return opts, cleanup, err
	}
	if opts.Contexts, err = parseContexts(f.contexts); err != nil {
		return opts, cleanup, err
	}
	var stdinDockerfile []byte
	if ctxDir, stdinDockerfile, cleanup, err = a.stdinContext(ctx, ctxDir, f.file); err != nil {
		return opts, cleanup, err
	}
	opts.ContextDir = ctxDir
	if opts.CacheFrom, opts.CacheTo, err = cacheSpecs(f); err != nil {
		return opts, cleanup, err
	}
	if opts.SourceDateEpoch, err = image.ParseEpoch(epochValue(f.epoch, args)); err != nil {
		return opts, cleanup, usageError{err}
	}
	if err := a.dockerfileSource(&opts, f.file, stdinDockerfile); err != nil {
		return opts, cleanup, err
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return opts, cleanup, fmt.Errorf("build context %q is not a directory", ctxDir)
	}
	return opts, cleanup, nil
}

// networkMode maps --network onto the runner's network mode.
func networkMode(n string) (string, error) {
	switch n {
	case "default":
		return runc.NetworkPrivate, nil
	case "host", "none", runc.NetworkPrivate:
		return n, nil
	}
	return "", usagef("--network=%s is not supported (default, host or none)", n)
}

// buildArgs merges --build-arg-file and --build-arg (later wins); a KEY
// without a value takes it from the environment, or is left out.
func buildArgs(f buildFlags) (map[string]string, error) {
	args := map[string]string{}
	for _, file := range f.argFiles {
		kvs, err := readArgFile(file)
		if err != nil {
			return nil, err
		}
		maps.Copy(args, kvs)
	}
	maps.Copy(args, parseBuildArgs(f.buildArgs))
	return args, nil
}

// parseBuildArgs maps --build-arg KEY=VALUE values; a KEY alone takes its
// value from the environment, or is left out when it is not set there.
func parseBuildArgs(vals []string) map[string]string {
	args := map[string]string{}
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		args[k] = v
	}
	return args
}

// epochValue is the SOURCE_DATE_EPOCH of a build: --source-date-epoch, else
// the build argument, else the environment.
func epochValue(flag string, args map[string]string) string {
	if flag != "" {
		return flag
	}
	if v := args[image.EpochEnv]; v != "" {
		return v
	}
	return os.Getenv(image.EpochEnv)
}

// stdinContext reads `strata build -`: a tar on stdin is the context, a
// Dockerfile on stdin is built with an empty one. Other contexts are
// returned as they are.
func (a *app) stdinContext(ctx context.Context, ctxDir, file string) (dir string, dockerfile []byte, cleanup func(), err error) {
	cleanup = func() {}
	if ctxDir != "-" {
		return ctxDir, nil, cleanup, nil
	}
	if file == "-" {
		return "", nil, cleanup, usagef("the Dockerfile and the context cannot both come from stdin")
	}
	dir, df, err := a.contextFromStdin(ctx)
	if err != nil {
		return "", nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if df != nil && file != "" {
		return "", nil, cleanup, usagef("stdin holds a Dockerfile, so -f cannot name another one")
	}
	return dir, df, cleanup, nil
}

// cacheSpecs parses --cache-from and --cache-to.
func cacheSpecs(f buildFlags) (from, to []builder.CacheSpec, err error) {
	for _, v := range f.cacheFrom {
		c, err := parseCacheSpec(v)
		if err != nil {
			return nil, nil, usagef("--cache-from: %v", err)
		}
		if c.Type == "inline" {
			return nil, nil, usagef("--cache-from type=inline: give the image as type=registry,ref=IMAGE")
		}
		from = append(from, c)
	}
	for _, v := range f.cacheTo {
		c, err := parseCacheSpec(v)
		if err != nil {
			return nil, nil, usagef("--cache-to: %v", err)
		}
		to = append(to, c)
	}
	return from, to, nil
}

// buildPlatforms parses --platform (none: not given): one platform or a
// comma-separated list, the host's or others (a RUN for another needs an
// emulator, see binfmt).
func buildPlatforms(s string) ([]v1.Platform, error) {
	if s == "" {
		return nil, nil
	}
	ps, err := platform.ParseList(s)
	if err != nil {
		return nil, usagef("--platform=%s: %v", s, err)
	}
	return ps, nil
}

// dockerfileSource sets where opts reads the Dockerfile from: stdin (with
// the context, or -f -), -f FILE, or the context's own Dockerfile.
func (a *app) dockerfileSource(opts *builder.Options, file string, stdinDockerfile []byte) error {
	switch {
	case stdinDockerfile != nil:
		opts.Dockerfile, opts.DockerfileName = stdinDockerfile, "Dockerfile"
	case file == "-":
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return fmt.Errorf("read Dockerfile from stdin: %w", err)
		}
		opts.Dockerfile, opts.DockerfileName = b, "Dockerfile"
	case file == "":
		// The context's own Dockerfile is resolved inside the context: a
		// symlink cannot make strata read a file outside it.
		p, err := securejoin.SecureJoin(opts.ContextDir, "Dockerfile")
		if err != nil {
			return err
		}
		opts.DockerfilePath = p
	default:
		opts.DockerfilePath = file
	}
	if opts.DockerfilePath != "" {
		if _, err := os.Stat(opts.DockerfilePath); err != nil {
			return fmt.Errorf("cannot read Dockerfile %s: %w", opts.DockerfilePath, errNotExistPlain(err))
		}
	}
	return nil
}

// reportFailure shows a failed build's error as an event (with the
// Dockerfile lines around it) and returns it marked as reported.
func reportFailure(pr *progress.Printer, err error) error {
	if err == nil {
		return nil
	}
	code := ExitFail
	var ue usageError
	if errors.As(err, &ue) {
		code = ExitUsage
	}
	var source string
	var de *dockerfile.Error
	if errors.As(err, &de) {
		source = de.Excerpt()
	}
	pr.Fail(err, source)
	return reportedError{err: err, code: code}
}

func errNotExistPlain(err error) error {
	if os.IsNotExist(err) {
		return fmt.Errorf("no such file")
	}
	return err
}

// export runs do with the exporter of each output and the names its
// image gets (the output's, else the build's tags).
func (a *app) export(ctx context.Context, b *builder.Builder, outs []export.Output, tags []string, pr *progress.Printer,
	do func(e export.Exporter, o export.Output, names []string) error) error {
	exporters := export.Exporters(export.Env{Store: b.Store, Registry: b.Registry, Rootfs: b.ExportRootfs, Logf: pr.Logf})
	for _, o := range outs {
		names := o.Names
		if len(names) == 0 {
			names = tags
		}
		if err := do(exporters[o.Type], o, names); err != nil {
			return err
		}
	}
	return nil
}

// finishBuild is the output step: it names the image in the store and
// hands it to the exporter of each output, then to --load, --metadata-file
// and --iidfile.
func (a *app) finishBuild(ctx context.Context, b *builder.Builder, img *image.Image, f buildFlags, outs []export.Output, pr *progress.Printer) error {
	if export.StoresImage(outs) {
		if err := b.Store.AddImage(img.Descriptor); err != nil {
			return err
		}
	}
	for _, t := range f.tags {
		if err := b.Store.Tag(t, img.Descriptor); err != nil {
			return err
		}
	}
	if err := a.export(ctx, b, outs, f.tags, pr, func(e export.Exporter, o export.Output, names []string) error {
		return e.Export(ctx, img, o, names)
	}); err != nil {
		return err
	}
	if f.load {
		if err := export.LoadIntoDocker(ctx, b.Store, img, f.tags); err != nil {
			return err
		}
	}
	if f.metadata != "" {
		if err := export.WriteMetadataFile(f.metadata, img, f.tags); err != nil {
			return err
		}
	}
	if f.iidfile != "" {
		if err := export.WriteIDFile(f.iidfile, digest.Digest(img.Manifest.Config.Digest.String())); err != nil {
			return err
		}
	}
	id := img.Manifest.Config.Digest.String()
	if f.quiet {
		fmt.Fprintln(a.stdout, id)
	} else {
		pr.Logf("writing image %s (manifest %s) done", id, img.Descriptor.Digest)
		for _, t := range f.tags {
			pr.Logf("naming to %s done", t)
		}
	}
	return nil
}

// checkLevel checks --compression-level for the compression comp (0 is
// always the default).
func checkLevel(comp layer.Compression, level int) error {
	lo, hi := 0, 0
	switch comp {
	case layer.Gzip:
		lo, hi = 1, 9
	case layer.Zstd:
		lo, hi = 1, 22
	}
	if level != 0 && (level < lo || level > hi) {
		if hi == 0 {
			return usagef("--compression-level=%d: %s layers have no level", level, comp)
		}
		return usagef("--compression-level=%d: %s levels are %d to %d", level, comp, lo, hi)
	}
	return nil
}
