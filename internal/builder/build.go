// Package build runs a Dockerfile build: it plans the stages the target
// needs, runs independent stages concurrently, executes each instruction
// (COPY/ADD into a snapshot, RUN in runc on one, the rest into the image
// config) and writes the resulting image into the store.
package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/util/entitlements"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/binfmt"
	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/remote"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/store"
)

// Options describe one build.
type Options struct {
	ContextDir     string
	DockerfilePath string // path of the Dockerfile (read unless Dockerfile is set)
	DockerfileName string // name in messages; defaults to the base name of DockerfilePath
	Dockerfile     []byte // content, when given directly (e.g. -f -)
	Target         string
	BuildArgs      map[string]string
	Network        string      // default network for RUN: "private" (default; see executor.NetworkPrivate), "host" or "none"
	Platform       v1.Platform // the target platform (default: the host's)
	// showPlatform prefixes step names with the platform (BuildIndex's
	// builds: "[linux/arm64 build 2/3]").
	showPlatform bool
	// cacheRecords, when set, collects the records of each CacheTo
	// export instead of writing it (BuildIndex writes them).
	cacheRecords *cacheRecords
	// BinfmtDir is where binfmt_misc is mounted (default binfmt.Dir): a
	// RUN for a foreign platform needs an emulator registered there.
	BinfmtDir   string
	Jobs        int
	Pull        bool // re-resolve base images from their registry
	Compression layer.Compression
	// Entitlements are those granted with --allow (BuildKit's): a RUN
	// --security=insecure needs security.insecure, a RUN --network=host
	// network.host (unless the whole build uses the host's network).
	Entitlements entitlements.Set
	// CompressionLevel is the layer compression level; 0: the default.
	CompressionLevel int
	Progress         *progress.Printer
	// Secrets are the --secret values by id; never written to a layer, the
	// config, the history or the log.
	Secrets map[string]Secret
	// SSH maps --ssh ids to agent socket paths forwarded to RUN --mount=type=ssh.
	SSH map[string]string
	// Contexts are the --build-context values by lower-case name: a directory,
	// docker-image://REF or oci-layout://PATH[:TAG|@DIGEST].
	Contexts map[string]string
	// CacheFrom are extra cache sources (registry, local); CacheTo the
	// exports written after the build (registry, local, inline).
	CacheFrom []CacheSpec
	CacheTo   []CacheSpec
	// NoCache rebuilds every step; NoCacheFilter only the named stages.
	NoCache       bool
	NoCacheFilter []string
	// DebugCache explains every cache miss (which input changed).
	DebugCache bool
	// SourceDateEpoch, when set, is the time of every history entry and of
	// the image, and file times in new layers are clamped to it.
	SourceDateEpoch *time.Time
	// precheck marks the check run that "# check=error=true" makes before a
	// build: it prints findings but no summary.
	precheck bool
	// CheckOnly runs BuildKit's build checks (a dry run through every stage:
	// no image is pulled, nothing runs) instead of building.
	CheckOnly bool
}

// ErrCheckFailed is returned by a check or build of a Dockerfile whose
// "# check=error=true" directive makes check findings errors.
var ErrCheckFailed = errors.New("build checks found problems (# check=error=true)")

// Secret is where a --secret value comes from: a file or an environment variable.
type Secret struct {
	File string
	Env  string
}

// value reads the secret.
func (s Secret) value() ([]byte, error) {
	if s.File != "" {
		return os.ReadFile(s.File)
	}
	v, ok := os.LookupEnv(s.Env)
	if !ok {
		return nil, fmt.Errorf("environment variable %s is not set", s.Env)
	}
	return []byte(v), nil
}

// Builder holds what builds share: the store, registry client and runtime.
type Builder struct {
	Store    *store.Store
	Registry *registry.Client
	// MaxLayerEntries bounds the entries of one layer tar that is unpacked
	// (a tar bomb guard); 0 means DefaultMaxLayerEntries.
	MaxLayerEntries int
	// MaxLayerBytes bounds what the files of one unpacked layer add up to
	// (holes of sparse files included), and as well what one ADD archive
	// extracts, one ADD URL downloads and one committed layer's files add
	// up to; 0 means DefaultMaxLayerBytes.
	MaxLayerBytes int64
	// HTTPTimeout is how long an ADD URL may go without a byte (connect,
	// response headers, each read of the body); 0 means DefaultHTTPTimeout.
	HTTPTimeout time.Duration
	Runner      executor.Executor // runs RUN steps (runc.Runner)
	Session     *store.Session
	// Snapshots makes the filesystems steps change and the views they read
	// (NewSnapshotter); nil: overlay snapshots below Session.Dir.
	Snapshots snapshot.Snapshotter

	pulls pullGroup // pulls under way, shared by concurrent builds
	bases baseBlobs // layers of base images resolved but not downloaded
	steps stepLocks // steps under way, by cache key, shared likewise
}

// DefaultJobs is how many stages run at once by default: the number of CPUs,
// but at least 4. Stages often wait (network, sleeps, I/O) rather than
// compute, and a compiling RUN uses every CPU on its own; BuildKit does not
// bound stages at all. With 2 CPUs a bound of 2 doubled the time of four
// independent waiting stages.
func DefaultJobs() int { return max(runtime.NumCPU(), 4) }

// DefaultMaxLayerEntries is the default bound on the entries of one layer
// (the largest common base images have a few hundred thousand).
const DefaultMaxLayerEntries = 4 << 20

// DefaultMaxLayerBytes is the default bound on what the files of one layer
// add up to: far above real layers, far below what a gzip or sparse-file
// bomb expands to. Sparse files are written sparse, so their holes count
// here but take no disk.
const DefaultMaxLayerBytes = 1 << 40

// MaxLayerBytesEnv is the environment variable the CLI reads MaxLayerBytes
// from; bound errors name it.
const MaxLayerBytesEnv = "STRATA_MAX_LAYER_BYTES"

// HTTPTimeoutEnv is the environment variable the CLI reads HTTPTimeout from.
const HTTPTimeoutEnv = "STRATA_HTTP_TIMEOUT"

// DefaultHTTPTimeout is the default HTTPTimeout.
const DefaultHTTPTimeout = 30 * time.Second

func (b *Builder) applyOptions() layer.ApplyOptions {
	o := layer.ApplyOptions{MaxEntries: b.MaxLayerEntries, MaxBytes: b.MaxLayerBytes, BoundHint: "the layer byte bound; raise it with " + MaxLayerBytesEnv}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxLayerEntries
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxLayerBytes
	}
	return o
}

// Build runs the build described by opts and returns the image written to the store.
func (b *Builder) Build(ctx context.Context, opts Options) (*image.Image, error) {
	opts.setDefaults()
	out := opts.Progress // warnings and the check summary
	if opts.CheckOnly {
		opts.Progress = progress.New(nil, true)
	}
	src, name, err := opts.readDockerfile()
	if err != nil {
		return nil, err
	}
	df, err := dockerfile.Parse(name, src)
	if err != nil {
		return nil, err
	}
	if df.CheckErrors && !opts.CheckOnly {
		// "# check=error=true": the checks run first, as in BuildKit, so a
		// finding fails the build before any step runs.
		co := opts
		co.CheckOnly, co.precheck, co.Dockerfile, co.Progress = true, true, src, out
		if _, err := b.Build(ctx, co); err != nil {
			return nil, err
		}
	}
	if note := syntaxNotice(df.Syntax); note != "" {
		opts.Progress.Logf("%s", note)
	}
	r, err := b.newRun(&opts, df, src, out)
	if err != nil {
		return nil, err
	}
	if err := r.importCaches(ctx); err != nil {
		return nil, err
	}
	if err := r.buildStages(ctx); err != nil {
		printWarnings(df, out)
		if errors.Is(err, errDependencyFailed) && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	warnings := printWarnings(df, out)
	if df.CheckErrors && len(warnings) > 0 {
		return nil, ErrCheckFailed
	}
	if opts.CheckOnly {
		switch {
		case opts.precheck:
		case len(warnings) == 0:
			out.Logf("Check complete, no warnings found.")
		default:
			out.Logf("Check complete, %d warnings have been found!", len(warnings))
		}
		return nil, nil
	}
	r.warnUnusedArgs()
	if err := r.sums.Save(); err != nil {
		opts.Progress.Logf("warning: saving the context stat cache: %v", err)
	}
	img, err := r.writeImage(ctx, r.results[r.plan.Target])
	if err != nil {
		return nil, err
	}
	if err := b.bases.settle(b.Store); err != nil {
		return nil, err
	}
	return img, nil
}

// setDefaults fills in the options left zero.
func (opts *Options) setDefaults() {
	if opts.Progress == nil {
		opts.Progress = progress.New(os.Stderr, false)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs()
	}
	if opts.Network == "" {
		opts.Network = executor.NetworkPrivate
	}
	if opts.Compression == "" {
		opts.Compression = layer.Gzip
	}
	if opts.Platform.OS == "" {
		opts.Platform = platform.Host()
	}
	opts.Platform = platform.Normalize(opts.Platform)
	if opts.BinfmtDir == "" {
		opts.BinfmtDir = binfmt.Dir
	}
}

// readDockerfile returns the Dockerfile's content and its name in messages.
func (opts *Options) readDockerfile() (src []byte, name string, err error) {
	src, name = opts.Dockerfile, opts.DockerfileName
	if name == "" {
		name = filepath.Base(opts.DockerfilePath)
	}
	if src == nil {
		src, err = os.ReadFile(opts.DockerfilePath)
		if err != nil {
			return nil, "", fmt.Errorf("read Dockerfile: %w", err)
		}
	}
	return src, name, nil
}

// newRun opens the context and the cache and plans the stages of df.
func (b *Builder) newRun(opts *Options, df *dockerfile.Dockerfile, src []byte, out *progress.Printer) (*run, error) {
	bctx, err := buildctx.Open(opts.ContextDir, opts.DockerfilePath)
	if err != nil {
		return nil, err
	}
	globals, err := globalArgs(df, *opts)
	if err != nil {
		return nil, err
	}
	noArgs := *opts
	noArgs.BuildArgs = nil
	defaults, err := globalArgs(df, noArgs)
	if err != nil {
		return nil, err
	}
	checkStages(df, globals, defaults)
	var names []string
	for n := range opts.Contexts {
		names = append(names, n)
	}
	p, err := plan.New(df, opts.Target, globals, plan.WithNamedContexts(names))
	if err != nil {
		printWarnings(df, out)
		return nil, err
	}
	cix, err := cache.Open(b.Store.Path("cache"))
	if err != nil {
		return nil, err
	}
	dfID := "stdin:" + string(src)
	if opts.DockerfilePath != "" {
		if abs, err := filepath.Abs(opts.DockerfilePath); err == nil {
			dfID = abs
		}
	}
	sum := sha256.Sum256([]byte(bctx.Dir))
	r := &run{b: b, opts: opts, df: df, plan: p, bctx: bctx, globals: globals, cache: cix, imported: remote.NewImported(cix), dockerfileID: dfID,
		sums: buildctx.OpenSums(b.Store.Path("cache", "stat", hex.EncodeToString(sum[:16])+".v2")), start: time.Now().UTC().Truncate(time.Second),
		results: make([]*stageResult, len(p.All)), done: make([]chan struct{}, len(p.All)),
		usedArgs: map[string]bool{}, pulls: &pullGroup{keep: true}, eager: eagerStages(p.All, p.Target, opts.CacheTo)}
	r.svc = b.services(opts)
	for i := range r.done {
		r.done[i] = make(chan struct{})
	}
	for _, a := range df.MetaArgs {
		for _, kv := range a.Args {
			if _, ok := opts.BuildArgs[kv.Key]; ok {
				r.useArg(kv.Key)
			}
		}
	}
	return r, nil
}

// buildStages builds the stages the target needs (every stage for a check
// without --target), each once its dependencies are built, at most
// opts.Jobs at a time.
func (r *run) buildStages(ctx context.Context) error {
	p := r.plan
	sem := make(chan struct{}, r.opts.Jobs)
	g, gctx := errgroup.WithContext(ctx)
	needed := p.Needed
	if r.opts.CheckOnly && r.opts.Target == "" {
		needed = nil // checks cover every stage, as BuildKit's do without --target
		for i := range p.All {
			needed = append(needed, i)
		}
	}
	// Each stage's error, set before its done channel closes: a stage
	// waiting for it may fail (errDependencyFailed) before errgroup has
	// seen the error that caused it.
	stageErrs := make([]error, len(p.All))
	for _, i := range needed {
		g.Go(func() (err error) {
			defer close(r.done[i])
			defer func() { stageErrs[i] = err }()
			for _, d := range p.All[i].Deps {
				select {
				case <-r.done[d]:
				case <-gctx.Done():
					return gctx.Err()
				}
				if r.results[d] == nil {
					return errDependencyFailed
				}
			}
			select {
			case sem <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-sem }()
			res, err := r.buildStage(gctx, p.All[i])
			if err != nil {
				return err
			}
			r.results[i] = res
			return nil
		})
	}
	err := g.Wait()
	if errors.Is(err, errDependencyFailed) {
		for _, e := range stageErrs {
			if e != nil && !errors.Is(e, errDependencyFailed) && !errors.Is(e, context.Canceled) {
				return e // the cause, not a stage that waited for it
			}
		}
	}
	return err
}

// writeImage writes the target stage's result as an image (and the cache
// exports asked for).
func (r *run) writeImage(ctx context.Context, res *stageResult) (*image.Image, error) {
	if err := r.layerBlobs(ctx, res.layers); err != nil {
		return nil, err
	}
	image.FillHistoryTimes(res.cfg.History)
	res.cfg.Created = imageCreated(res.cfg)
	if lbl, ok, err := r.inlineLabel(res.layers); err != nil {
		return nil, err
	} else if ok {
		if res.cfg.Config.Labels == nil {
			res.cfg.Config.Labels = map[string]string{}
		}
		res.cfg.Config.Labels[cache.InlineLabel] = lbl
	}
	if err := r.exportCaches(ctx, res.layers); err != nil {
		return nil, err
	}
	return image.Write(r.b.Store, res.cfg, res.layers)
}

var errDependencyFailed = errors.New("a stage this one needs failed")

// officialSyntaxTag matches the tags of the official Dockerfile syntax
// images: 1, 1.7, 1.7.1, latest, each optionally -labs.
var officialSyntaxTag = regexp.MustCompile(`^(1(\.[0-9]+){0,2}|latest)(-labs)?$`)

// syntaxNotice is what to say about a "# syntax=" directive. The official
// Dockerfile syntax images (docker/dockerfile:1, 1.x, 1.x.y, with or
// without a digest) are the syntax strata implements: nothing to say; their
// -labs variants get a note; any other frontend cannot run here.
func syntaxNotice(syntax string) string {
	if syntax == "" {
		return ""
	}
	ref, _, _ := strings.Cut(syntax, "@") // a digest pins one of the tags
	tag := "latest"
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref, tag = ref[:i], ref[i+1:]
	}
	switch strings.TrimPrefix(strings.TrimPrefix(ref, "docker.io/"), "index.docker.io/") {
	case "docker/dockerfile", "docker/dockerfile-upstream":
		switch {
		case !officialSyntaxTag.MatchString(tag):
		case strings.HasSuffix(tag, "-labs"):
			return fmt.Sprintf("notice: # syntax=%s: strata implements the stable Dockerfile syntax; labs-only features are not available", syntax)
		default:
			return ""
		}
	}
	return fmt.Sprintf("notice: # syntax=%s: custom frontends cannot run here; using the built-in Dockerfile syntax", syntax)
}

// run is the state of one Build call.
type run struct {
	b       *Builder
	opts    *Options
	svc     services // what every stage's steps use
	df      *dockerfile.Dockerfile
	plan    *plan.Plan
	bctx    *buildctx.Context
	globals mapGetter
	results []*stageResult
	done    []chan struct{}

	mu       sync.Mutex
	usedArgs map[string]bool

	pulls *pullGroup // the pulls of this build, one per reference

	cache        *cache.Index
	imported     *remote.Imported // the --cache-from records
	used         remote.Used      // records each stage used or made, for --cache-to
	sums         *buildctx.Sums
	dockerfileID string // identifies the Dockerfile for cache miss explanations
	// filterOnce makes the .dockerignore-filtered context for RUN binds.
	filterOnce sync.Once
	filterDir  string
	filterErr  error
	start      time.Time // when the build started

	// eager are the stages whose layers get their blob when committed; the
	// others' are made by layerBlob when needed (see lazy.go).
	eager     map[int]bool
	blobMu    sync.Mutex
	madeBlobs map[digest.Digest]image.Layer // blobs layerBlob made, by diffID
}

// now is the time recorded for new layers: SOURCE_DATE_EPOCH or the clock.
func (s *services) now() time.Time {
	if e := s.opts.SourceDateEpoch; e != nil {
		return e.UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

func (r *run) epochString() string {
	if e := r.opts.SourceDateEpoch; e != nil {
		return strconv.FormatInt(e.Unix(), 10)
	}
	return ""
}

// imageCreated is the image's creation time: the time of its last history
// entry (BuildKit's rule), else the base image's.
func imageCreated(cfg v1.ConfigFile) v1.Time {
	if t := image.LastHistoryTime(cfg.History); !t.IsZero() {
		return t
	}
	return cfg.Created
}

func (r *run) useArg(k string) {
	r.mu.Lock()
	r.usedArgs[k] = true
	r.mu.Unlock()
}

func (r *run) warnUnusedArgs() {
	var unused []string
	for k := range r.opts.BuildArgs {
		if !r.usedArgs[k] {
			unused = append(unused, k)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		r.opts.Progress.Logf("warning: build-arg(s) not consumed by the Dockerfile: %s", strings.Join(unused, ", "))
	}
}

// globalArgs evaluates the ARGs before the first FROM, with --build-arg
// overrides, plus BuildKit's automatic platform args.
func globalArgs(df *dockerfile.Dockerfile, opts Options) (mapGetter, error) {
	g := mapGetter(platform.Args(platform.Host(), opts.Platform))
	lex := df.Lexer()
	for _, a := range df.MetaArgs {
		for _, kv := range a.Args {
			if v, ok := opts.BuildArgs[kv.Key]; ok {
				g[kv.Key] = v
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, _, err := lex.ProcessWord(*kv.Value, g)
			if err == nil {
				err = dockerfile.CheckWord(v)
			}
			if err != nil {
				return nil, df.Wrap(a.Location(), err)
			}
			g[kv.Key] = v
		}
	}
	return g, nil
}

var _ shell.EnvGetter = mapGetter{}

// printWarnings prints the parser warnings and build-check findings as
// BuildKit does, and returns them.
func printWarnings(df *dockerfile.Dockerfile, pr *progress.Printer) []dockerfile.Warning {
	warnings := df.Warnings()
	for _, w := range warnings {
		if w.Rule != "" {
			pr.Logf("WARNING: %s - %s:%d - %s", w.Rule, df.File, w.Line, w.Message)
		} else {
			pr.Logf("WARNING: %s:%d: %s", df.File, w.Line, w.Message)
		}
	}
	return warnings
}
