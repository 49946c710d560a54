package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
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

// output is one parsed --output.
type output struct {
	typ   string
	dest  string
	names []string
	push  bool
}

func parseOutput(s string) (output, error) {
	if !strings.Contains(s, "=") {
		// `-o DIR` is short for type=local,dest=DIR, as in docker buildx.
		if s == "-" {
			return output{}, usagef("--output -: writing a tar to stdout is not supported yet; use dest=FILE")
		}
		return output{typ: "local", dest: s}, nil
	}
	var o output
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.TrimSpace(k) {
		case "type":
			o.typ = v
		case "dest":
			o.dest = v
		case "name":
			o.names = append(o.names, strings.Split(v, ";")...)
		case "push":
			o.push = v == "true" || v == "1"
		case "compression", "oci-mediatypes", "compression-level", "force-compression":
			// accepted; layers are gzip OCI layers
		default:
			return o, usagef("--output %q: unknown key %q", s, k)
		}
	}
	switch o.typ {
	case "docker", "oci", "tar":
		if o.dest == "" {
			return o, usagef("--output type=%s needs dest=FILE", o.typ)
		}
	case "local":
		if o.dest == "" {
			return o, usagef("--output type=local needs dest=DIR")
		}
	case "registry":
		o.push = true
	case "image":
	case "":
		return o, usagef("--output %q: type= is required", s)
	default:
		return o, usagef("--output type=%s is not supported (docker, oci, local, registry, image)", o.typ)
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
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, "output destination (type=docker|oci|local|registry,dest=...,name=...)")
	fl.BoolVar(&f.push, "push", false, "push the -t names to their registries (shorthand for --output=type=registry)")
	fl.StringVar(&f.iidfile, "iidfile", "", "write the image ID (config digest) to the file")
	fl.StringVar(&f.metadata, "metadata-file", "", "write the build result metadata (buildx format: image digest, config digest, names) to the file")
	fl.BoolVar(&f.load, "load", false, "load the image into the running Docker daemon (DOCKER_HOST or /var/run/docker.sock)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "suppress the build output and print the image ID on success")
	fl.StringVar(&f.progress, "progress", "auto", "progress output: auto (tty in a terminal, else plain), tty, plain, json (one event a line) or quiet")
	fl.StringVar(&f.report, "report", "", "write a self-contained HTML build report (timeline, cache hits and misses, layers, config) to this file")
	fl.StringVar(&f.network, "network", "default", "networking mode for RUN: default (own network namespace, outbound through slirp4netns, no host loopback), host or none")
	fl.StringArrayVar(&f.allow, "allow", nil, "allow extra privileged entitlement: security.insecure (for RUN --security=insecure) or network.host")
	fl.StringVar(&f.platform, "platform", "", "target platform (only the host platform can be built)")
	fl.IntVar(&f.jobs, "jobs", 0, "how many stages to build at once (default: number of CPUs, at least 4)")
	fl.BoolVar(&f.pull, "pull", false, "always attempt to pull a newer version of the base images")
	fl.BoolVar(&f.noCache, "no-cache", false, "do not use the build cache: run every step")
	fl.StringArrayVar(&f.noCacheF, "no-cache-filter", nil, "do not use the build cache for these stages")
	fl.StringArrayVar(&f.cacheFrom, "cache-from", nil, "import build cache: type=registry,ref=REF | type=local,src=DIR | REF")
	fl.StringArrayVar(&f.cacheTo, "cache-to", nil, "export build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR[,mode=…] | type=inline")
	fl.BoolVar(&f.debugCache, "debug-cache", os.Getenv("STRATA_DEBUG_CACHE") == "1", "explain every cache miss: which input changed (env STRATA_DEBUG_CACHE=1)")
	fl.StringVar(&f.epoch, "source-date-epoch", "", "timestamp (Unix seconds) for reproducible images: history times and file times in new layers (env or build-arg SOURCE_DATE_EPOCH)")
	fl.StringVar(&f.compression, "compression", "gzip", "layer compression: gzip, zstd or uncompressed")
	fl.IntVar(&f.compLevel, "compression-level", 0, "layer compression level (gzip 1-9, zstd 1-22; 0: default)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR]")
	fl.StringArrayVar(&f.ssh, "ssh", nil, "SSH agent socket for RUN --mount=type=ssh: default|ID[=SOCKET]")
	fl.StringArrayVar(&f.argFiles, "build-arg-file", nil, "read build arguments from a file of KEY=VALUE lines")
	fl.BoolVar(&f.check, "check", false, "run BuildKit's build checks and print their warnings, without building")
	fl.StringArrayVar(&f.contexts, "build-context", nil, "additional named context: NAME=DIR|docker-image://REF|oci-layout://PATH[:TAG|@DIGEST]")
	return cmd
}

func (a *app) runBuild(cmd *cobra.Command, ctxDir string, f buildFlags) (err error) {
	ctx := cmd.Context()
	mode := progress.Mode(f.progress)
	switch mode {
	case "auto":
		mode = progress.Plain
		if isTerminal(a.stderr) {
			mode = progress.TTY
		}
	case progress.TTY, progress.Plain, progress.JSON, progress.Quiet:
	default:
		return usagef("--progress=%s: use auto, tty, plain, json or quiet", f.progress)
	}
	if f.quiet {
		mode = progress.Quiet
	}
	printer := progress.NewMode(a.stderr, mode)
	defer printer.Close()
	if mode == progress.JSON {
		// Every line is an event: the error too.
		defer func() { err = reportFailure(printer, err) }()
	}
	var outs []output
	for _, s := range f.outputs {
		o, err := parseOutput(s)
		if err != nil {
			return err
		}
		outs = append(outs, o)
	}
	if f.push {
		outs = append(outs, output{typ: "registry", push: true})
	}
	// Names are checked before anything is built: a bad one fails now,
	// not after the build.
	if err := checkNames(f.tags, outs); err != nil {
		return err
	}
	if err := checkFileDests(outs, map[string]string{"--iidfile": f.iidfile, "--metadata-file": f.metadata, "--report": f.report}); err != nil {
		return err
	}
	switch f.network {
	case "host", "none", "default", runc.NetworkPrivate:
	default:
		return usagef("--network=%s is not supported (default, host or none)", f.network)
	}
	if f.network == "default" {
		f.network = runc.NetworkPrivate
	}
	if f.report != "" {
		printer.Record()
	}
	comp := layer.Compression(f.compression)
	switch comp {
	case layer.Gzip, layer.Zstd, layer.Uncompressed:
	default:
		return usagef("--compression=%s: use gzip, zstd or uncompressed", f.compression)
	}
	args := map[string]string{}
	for _, file := range f.argFiles {
		kvs, err := readArgFile(file)
		if err != nil {
			return err
		}
		for k, v := range kvs {
			args[k] = v
		}
	}
	for _, kv := range f.buildArgs {
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
	secrets, err := parseSecrets(f.secrets)
	if err != nil {
		return err
	}
	ssh, err := parseSSH(f.ssh)
	if err != nil {
		return err
	}
	ents, err := parseAllow(f.allow)
	if err != nil {
		return err
	}
	named, err := parseContexts(f.contexts)
	if err != nil {
		return err
	}
	var stdinDockerfile []byte
	if ctxDir == "-" {
		if f.file == "-" {
			return usagef("the Dockerfile and the context cannot both come from stdin")
		}
		dir, df, err := a.contextFromStdin(ctx)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		ctxDir = dir
		if df != nil {
			if f.file != "" {
				return usagef("stdin holds a Dockerfile, so -f cannot name another one")
			}
			stdinDockerfile = df
		}
	}
	var cacheFrom, cacheTo []build.CacheSpec
	for _, v := range f.cacheFrom {
		c, err := parseCacheSpec(v)
		if err != nil {
			return usagef("--cache-from: %v", err)
		}
		if c.Type == "inline" {
			return usagef("--cache-from type=inline: give the image as type=registry,ref=IMAGE")
		}
		cacheFrom = append(cacheFrom, c)
	}
	for _, v := range f.cacheTo {
		c, err := parseCacheSpec(v)
		if err != nil {
			return usagef("--cache-to: %v", err)
		}
		cacheTo = append(cacheTo, c)
	}
	opts := build.Options{
		CacheFrom:     cacheFrom,
		CacheTo:       cacheTo,
		CheckOnly:     f.check,
		NoCache:       f.noCache,
		NoCacheFilter: f.noCacheF,
		DebugCache:    f.debugCache,
		Secrets:       secrets,
		SSH:           ssh,
		Contexts:      named,
		ContextDir:    ctxDir,
		Target:        f.target,
		BuildArgs:     args,
		Network:       f.network,
		Entitlements:  ents,
		Jobs:          f.jobs,
		Pull:          f.pull,
		Compression:   comp,
		Progress:      printer,
	}
	epoch := f.epoch
	if epoch == "" {
		epoch = args[image.EpochEnv]
	}
	if epoch == "" {
		epoch = os.Getenv(image.EpochEnv)
	}
	if opts.SourceDateEpoch, err = image.ParseEpoch(epoch); err != nil {
		return usageError{err}
	}
	if f.platform != "" {
		p, err := v1.ParsePlatform(f.platform)
		if err != nil {
			return usagef("--platform=%s: %v", f.platform, err)
		}
		host := build.HostPlatform()
		if p.OS != host.OS || p.Architecture != host.Architecture {
			return usagef("--platform=%s: only the host platform (%s/%s) can be built here (no binfmt emulation)", f.platform, host.OS, host.Architecture)
		}
		opts.Platform = *p
	}
	switch {
	case stdinDockerfile != nil:
		opts.Dockerfile, opts.DockerfileName = stdinDockerfile, "Dockerfile"
	case f.file == "-":
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return fmt.Errorf("read Dockerfile from stdin: %w", err)
		}
		opts.Dockerfile, opts.DockerfileName = b, "Dockerfile"
	case f.file == "":
		// The context's own Dockerfile is resolved inside the context: a
		// symlink cannot make strata read a file outside it.
		p, err := securejoin.SecureJoin(ctxDir, "Dockerfile")
		if err != nil {
			return err
		}
		opts.DockerfilePath = p
	default:
		opts.DockerfilePath = f.file
	}
	if opts.DockerfilePath != "" {
		if _, err := os.Stat(opts.DockerfilePath); err != nil {
			return fmt.Errorf("cannot read Dockerfile %s: %w", opts.DockerfilePath, errNotExistPlain(err))
		}
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("build context %q is not a directory", ctxDir)
	}
	b, err := a.open(ctx)
	if err != nil {
		return err
	}
	started := time.Now()
	img, err := b.Build(ctx, opts)
	if f.report != "" {
		if rerr := writeReport(f.report, ctxDir, started, printer, img, err); rerr != nil {
			printer.Logf("warning: build report: %v", rerr)
		}
	}
	if err != nil {
		return err
	}
	if f.check {
		return nil
	}
	return a.finishBuild(cmd, b, img, f, outs, printer)
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

func (a *app) finishBuild(cmd *cobra.Command, b *build.Builder, img *image.Image, f buildFlags, outs []output, pr *progress.Printer) error {
	ctx := cmd.Context()
	if storesImage(outs) {
		if err := b.Store.AddImage(img.Descriptor); err != nil {
			return err
		}
	}
	for _, t := range f.tags {
		if err := b.Store.Tag(t, img.Descriptor); err != nil {
			return err
		}
	}
	for _, o := range outs {
		names := o.names
		if len(names) == 0 {
			names = f.tags
		}
		switch o.typ {
		case "docker", "oci", "tar":
			if err := writeArchive(o, b, img, names); err != nil {
				return err
			}
		case "local":
			if err := b.ExportRootfs(ctx, img, o.dest); err != nil {
				return err
			}
		case "image", "registry":
			for _, n := range names {
				if err := b.Store.Tag(n, img.Descriptor); err != nil {
					return err
				}
			}
			if o.push {
				for _, n := range names {
					if err := a.push(ctx, b, img, n, pr.Logf); err != nil {
						return err
					}
				}
			}
		}
	}
	id := img.Manifest.Config.Digest.String()
	if f.load {
		if err := loadIntoDocker(ctx, b, img, f.tags); err != nil {
			return err
		}
	}
	if f.metadata != "" {
		md := map[string]any{
			"containerimage.digest":        img.Descriptor.Digest.String(),
			"containerimage.config.digest": id,
			"containerimage.descriptor":    img.Descriptor,
		}
		if len(f.tags) > 0 {
			md["image.name"] = strings.Join(f.tags, ",")
		}
		bts, _ := json.MarshalIndent(md, "", "  ")
		if err := os.WriteFile(f.metadata, append(bts, '\n'), 0o644); err != nil {
			return fmt.Errorf("write metadata file: %w", err)
		}
	}
	if f.iidfile != "" {
		if err := os.WriteFile(f.iidfile, []byte(id), 0o644); err != nil {
			return fmt.Errorf("write iidfile: %w", err)
		}
	}
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

func writeArchive(o output, b *build.Builder, img *image.Image, names []string) error {
	tmp := o.dest + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("output %s: %w", o.dest, err)
	}
	defer os.Remove(tmp)
	if o.typ == "docker" {
		err = export.Docker(fh, b.Store, img, names)
	} else {
		err = export.OCI(fh, b.Store, img, names)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, o.dest)
}

// writeReport writes the HTML build report.
func writeReport(path, title string, started time.Time, pr *progress.Printer, img *image.Image, buildErr error) error {
	d := report.Data{Title: title, Started: started, Finished: time.Now(), Events: pr.Events(), Image: img}
	if buildErr != nil {
		d.Error = buildErr.Error()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := report.Write(f, d); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
